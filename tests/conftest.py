"""Shared fixtures: isolated settings, real SQLite files, a real PostgreSQL
database per session, and a real SMTP server (aiosmtpd on 127.0.0.1) whose
replies can be scripted per recipient."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from digest import db
from digest.capture import CaptureHandler, CaptureServer
from digest.config import PROJECT_ROOT, Settings, load_settings
from digest.wiring import Services

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
IN_CI = os.environ.get("CI") == "true"
FIXED_NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)  # 11:00 in Moscow


# -- settings -----------------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A clean DIGEST_* environment pointing at this test's own folder."""
    for key in list(os.environ):
        if key.startswith("DIGEST_"):
            monkeypatch.delenv(key)
    values = {
        "DIGEST_VAR_DIR": str(tmp_path / "var"),
        "DIGEST_DATABASE_URL": f"sqlite:///{tmp_path / 'digest.sqlite3'}",
        "DIGEST_SECRET_KEY": secrets.token_urlsafe(32),
        "DIGEST_BASE_URL": "https://digest.vpk.example.ru",
        "DIGEST_CONFIG": str(tmp_path / "digest.toml"),
        # Sender processes run on the wall clock, not a test's fixed one.
        "DIGEST_SENDERS": "1",
    }
    (tmp_path / "digest.toml").write_text("", encoding="utf-8")
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    return values


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return load_settings()


# -- databases ----------------------------------------------------------------------


def _postgres_available() -> str | None:
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return str(exc).strip()


@pytest.fixture(scope="session")
def postgres_server() -> str:
    problem = _postgres_available()
    if problem:
        message = f"PostgreSQL on 127.0.0.1:5432 is not reachable: {problem}"
        if IN_CI:
            pytest.fail(message + " (CI=true: a missing part is an error)")
        pytest.skip(message)
    return PG_ADMIN


@pytest.fixture
def postgres_databases(postgres_server: str) -> Iterator[Callable[[], str]]:
    """Makes new, empty databases for one test (as many as it asks for), dropped
    afterwards."""
    names: list[str] = []

    def create() -> str:
        name = f"digest_test_{secrets.token_hex(6)}"
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        names.append(name)
        return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"

    try:
        yield create
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_databases: Callable[[], str]) -> str:
    """A new, empty database for one test, dropped afterwards."""
    return postgres_databases()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Both backends: the same code must run on SQLite and PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite3'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return db.session_factory(engine)


@pytest.fixture
def pipeline(
    env: dict[str, str], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Services]:
    """A pipeline on either backend, with the clock fixed to FIXED_NOW."""
    monkeypatch.setenv("DIGEST_DATABASE_URL", database_url)
    cfg = load_settings()
    engine = db.make_engine(cfg.database)
    db.upgrade(engine)
    yield Services(cfg, db.session_factory(engine), clock=lambda: FIXED_NOW)
    engine.dispose()


# -- SMTP -----------------------------------------------------------------------------


class ScriptedHandler(CaptureHandler):
    """Accepts everything unless a rule for the recipient says otherwise.

    A rule maps a recipient address to a reply line (``"550 5.1.1 no such user"``)
    or to ``"drop"`` (close the connection during DATA, no reply at all)."""

    def __init__(self, outbox: Path | None = None) -> None:
        super().__init__(outbox)
        self.rules: dict[str, str] = {}
        self.attempts: dict[str, int] = {}
        self.on_data: Callable[[Any], None] | None = None  # a look at the world at DATA

    def verdict(self, envelope: Any) -> str | None:
        if self.on_data is not None:
            self.on_data(envelope)
        rcpt = envelope.rcpt_tos[0]
        self.attempts[rcpt] = self.attempts.get(rcpt, 0) + 1
        return self.rules.get(rcpt)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.rules.get(envelope.rcpt_tos[0]) == "drop":
            self.attempts[envelope.rcpt_tos[0]] = self.attempts.get(envelope.rcpt_tos[0], 0) + 1
            server.transport.close()
            return "421 4.4.2 dropped"  # never reaches the client: the line is gone
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[CaptureServer]:
    with CaptureServer(ScriptedHandler(tmp_path / "outbox")) as server:
        yield server


@pytest.fixture
def fixed_date() -> date:
    return date(2026, 11, 25)


@pytest.fixture
def project_root() -> Path:
    return PROJECT_ROOT


def count_commits(engine: Engine) -> Callable[[], int]:
    """How many transactions an engine committed from now on."""
    from sqlalchemy import event

    seen = {"n": 0}

    def on_commit(_conn: Any) -> None:
        seen["n"] += 1

    event.listen(engine, "commit", on_commit)
    return lambda: seen["n"]
