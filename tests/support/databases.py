"""The databases of the tests: PostgreSQL on 127.0.0.1:5432 and SQLite files.

Migrating a database for every test was a large share of the suite (issue 26):
each process migrates one template per backend once, and a test gets a copy
(``CREATE DATABASE … TEMPLATE`` on PostgreSQL, a copied file on SQLite).
``empty_database_url`` is a database nobody migrated, for the tests of the
migrations themselves (tests/integration/test_schema_and_migrations.py runs the
chain from empty).

The tests' databases on the shared server commit without waiting for the disk
(``synchronous_commit = off``, set on each database, so the ``digest`` processes
a test starts have it too): a backend's commit took 175 µs of system time
waiting for the flush, 70 µs without (2 000 commits, measured), and the suite
commits a great deal on both cores. Only a crash of the
server itself could lose the last commits, which no test does (the outage tests
stop their own private server cleanly)."""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker

from digest import db
from tests.support.common import IN_CI

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
# Each pytest-xdist worker has its own template: a template must have no other
# session while it is copied.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")


def _postgres_available() -> str | None:
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return str(exc).strip()


def _admin(statement: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(statement)  # names are ours: digest_test_<hex>, never a test's input


def _migrated(url: str) -> None:
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()  # no session left: PostgreSQL copies a template nobody is in


@pytest.fixture(scope="session")
def postgres_server() -> str:
    problem = _postgres_available()
    if problem:
        message = f"PostgreSQL on 127.0.0.1:5432 is not reachable: {problem}"
        if IN_CI:
            pytest.fail(message + " (CI=true: a missing part is an error)")
        pytest.skip(message)
    return PG_ADMIN


@pytest.fixture(scope="session")
def postgres_template(postgres_server: str) -> Iterator[str]:
    """A database migrated to the head once, copied for each test."""
    name = f"digest_template_{WORKER}_{secrets.token_hex(4)}"
    _create(name)
    try:
        _migrated(PG_URL.format(name=name))
        yield name
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# Each copy of a template is a database of its own, as each migrated one is: the
# outcomes journal tells databases apart by this identity (issue 32).
NEW_IDENTITY = "UPDATE database_identity SET identity = '{}' WHERE id = 1"


def _create(name: str, template: str | None = None) -> None:
    _admin(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    _admin(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    if template:
        with psycopg.connect(PG_ADMIN, dbname=name) as conn:
            conn.execute(NEW_IDENTITY.format(uuid.uuid4()))


_sqlite_template: list[Path] = []  # this process's, made at the first ask


def migrated_sqlite_file() -> Path:
    """A SQLite file migrated to the head, made once per process."""
    if not _sqlite_template:
        path = Path(tempfile.mkdtemp(prefix="digest-template-")) / "digest.sqlite3"
        _migrated(f"sqlite:///{path}")
        _sqlite_template.append(path)
    return _sqlite_template[0]


def new_migrated_sqlite(url: str) -> bool:
    """Put a copy of the migrated template where ``url`` (a SQLite file's URL) points,
    if nothing is there yet; whether it did."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return False
    path = Path(parsed.database)
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(migrated_sqlite_file(), path)
    path.chmod(0o600)  # as digest makes it: addresses and tokens live here
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(NEW_IDENTITY.format(uuid.uuid4()))
    return True


@pytest.fixture(scope="session")
def sqlite_template() -> Path:
    return migrated_sqlite_file()


@pytest.fixture
def postgres_databases(postgres_server: str) -> Iterator[Callable[..., str]]:
    """Makes new databases for one test (empty, or copies of ``template``), dropped
    afterwards."""
    names: list[str] = []

    def create(template: str | None = None) -> str:
        name = f"digest_test_{secrets.token_hex(6)}"
        names.append(name)
        _create(name, template)
        return PG_URL.format(name=name)

    try:
        yield create
    finally:
        for name in names:
            _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_databases: Callable[..., str]) -> str:
    """A new, empty database for one test, dropped afterwards."""
    return postgres_databases()


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def migrated_copy(request: pytest.FixtureRequest, backend: str, path: Path) -> str:
    """A new database migrated to the head on ``backend`` (a copy of the template):
    a SQLite file at ``path``, or a PostgreSQL database dropped after the test."""
    if backend == "sqlite":
        url = f"sqlite:///{path}"
        new_migrated_sqlite(url)
        return url
    make = request.getfixturevalue("postgres_databases")
    return str(make(template=request.getfixturevalue("postgres_template")))


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Both backends, migrated to the head: the same code must run on SQLite and
    PostgreSQL."""
    return migrated_copy(request, request.param, tmp_path / "store.sqlite3")


@pytest.fixture(params=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Both backends, nothing migrated."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite3'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = db.make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return db.session_factory(engine)


def count_commits(engine: Engine) -> Callable[[], int]:
    """How many transactions an engine committed from now on."""
    seen = {"n": 0}

    def on_commit(_conn: Any) -> None:
        seen["n"] += 1

    event.listen(engine, "commit", on_commit)
    return lambda: seen["n"]
