"""A private MariaDB for the tests (issue 29): Debian's server with its own data
directory, port and socket in a temporary folder (``digest.demo.site.LocalMariaDB``,
the one `make demo-site` and the benchmark start), like the suite's private
Postfix; the machine's own database is never touched. It plays a site's database:
each test gets a fresh database in it (``site_mariadb``).

Under ``CI=true`` a missing server is an error, never a skip."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from digest.capture import free_port
from digest.demo.site import LocalMariaDB
from tests.support.common import IN_CI


class PrivateMariaDB(LocalMariaDB):
    def connect(self, database: str | None = None) -> pymysql.connections.Connection:
        return pymysql.connect(
            host="127.0.0.1", port=self.port, user="root", password="",
            database=database, charset="utf8mb4", autocommit=True,
        )  # fmt: skip


@pytest.fixture(scope="session")
def mariadb_installed() -> None:
    if not (shutil.which("mariadb-install-db") and shutil.which("mariadb-admin")):
        message = "MariaDB is not installed (make test installs Debian's mariadb-server)"
        if IN_CI:
            pytest.fail(message + " (CI=true: a missing part is an error)")
        pytest.skip(message)


@pytest.fixture(scope="session")
def mariadb_server(mariadb_installed: None) -> Iterator[PrivateMariaDB]:
    root = Path(tempfile.mkdtemp(prefix="digest-mariadb-"))
    server = PrivateMariaDB(root, free_port())
    server.start("mysql")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def site_mariadb(mariadb_server: PrivateMariaDB) -> Iterator[tuple[PrivateMariaDB, str]]:
    """A fresh, empty database in the private server: (server, its name)."""
    name = f"site_{secrets.token_hex(4)}"
    with mariadb_server.connect() as conn, conn.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")  # our own name
    try:
        yield mariadb_server, name
    finally:
        with mariadb_server.connect() as conn, conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
