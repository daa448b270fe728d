"""A site's own database, read (issue 29): one connection, read-only at the
database, every statement under a timeout the database itself enforces, rows
streamed from a server-side cursor in small batches.

What a source may not do to the site is the database's to refuse, not ours to
promise: PostgreSQL opens with ``default_transaction_read_only`` and
``statement_timeout`` and each read is a ``READ ONLY`` transaction; MariaDB/MySQL
set ``SESSION TRANSACTION READ ONLY`` and ``max_statement_time`` (MariaDB) or
``max_execution_time`` (MySQL) as the connection opens. A write is refused by the
server, a slow statement cancelled by it, and both are reported by the source's
and the query's names."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from digest.config.values import mask_url_in
from digest.errors import SourceError

DRIVERS = {"postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql", "mariadb": "mysql+pymysql"}
# What each server answers a cancelled statement and a refused write with.
TIMEOUT_CODES = {"57014", 1969, 3024}  # PostgreSQL; MariaDB max_statement_time; MySQL
READ_ONLY_CODES = {"25006", 1792, 1290}  # read-only transaction; server --read-only


def _url(name: str, raw: str) -> URL:
    try:
        url = make_url(raw)
    except ArgumentError:
        raise SourceError(f"source {name}: the database URL cannot be read") from None
    backend = url.get_backend_name()
    if backend not in DRIVERS:
        raise SourceError(
            f"source {name}: {backend} is not supported (PostgreSQL, MariaDB or MySQL)"
        )
    url = url.set(drivername=DRIVERS[backend])
    if backend != "postgresql":
        # Text arrives as UTF-8 whatever the table's charset (cp1251, latin1): the
        # server converts, so Cyrillic is intact.
        url = url.update_query_dict({"charset": "utf8mb4"})
    return url


class SiteDatabase:
    """``with SiteDatabase(name, url, timeout) as site: site.stream(…)``."""

    def __init__(self, name: str, raw_url: str, timeout: float) -> None:
        self.name = name
        self.timeout = timeout
        self.url = url = _url(name, raw_url)
        self.postgres = url.get_backend_name() == "postgresql"
        args: dict[str, Any] = {"connect_timeout": max(1, int(timeout))}
        if self.postgres:
            millis = int(timeout * 1000)
            args["options"] = f"-c default_transaction_read_only=on -c statement_timeout={millis}"
        else:
            args["read_timeout"] = int(timeout) + 30  # the socket's backstop, never first
        self.engine = create_engine(url, poolclass=NullPool, connect_args=args)
        if not self.postgres:
            event.listen(self.engine, "connect", self._mysql_session)
        self.connection: Connection | None = None
        self.mariadb = False

    def _mysql_session(self, dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT VERSION()")
            self.mariadb = "mariadb" in str(cursor.fetchone()[0]).lower()
            cursor.execute("SET SESSION TRANSACTION READ ONLY")
            if self.mariadb:
                cursor.execute("SET SESSION max_statement_time = %s", (self.timeout,))
            else:
                cursor.execute("SET SESSION max_execution_time = %s", (int(self.timeout * 1000),))
        finally:
            cursor.close()

    def __enter__(self) -> SiteDatabase:
        try:
            self.connection = self.engine.connect()
        except SQLAlchemyError as exc:
            self.engine.dispose()
            raise SourceError(
                f"source {self.name}: cannot connect: {_said(exc, self.url)}"
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.connection is not None:
            self.connection.close()
        self.engine.dispose()

    def _conn(self) -> Connection:
        if self.connection is None:
            raise SourceError(f"source {self.name}: not connected")
        return self.connection

    @contextmanager
    def _result(
        self, query: str, sql: str, params: dict[str, Any], batch: int | None
    ) -> Iterator[Any]:
        conn = self._conn()
        bound = {k: v for k, v in params.items() if re.search(rf":{k}\b", sql)}
        try:
            with conn.begin():
                if self.postgres:
                    conn.execute(text("SET TRANSACTION READ ONLY"))
                # A server-side cursor for this statement only (PostgreSQL's named
                # cursor, PyMySQL's SSCursor): rows come a batch at a time.
                statement = text(sql)
                if batch is not None:
                    statement = statement.execution_options(
                        stream_results=True, max_row_buffer=batch
                    )
                result = conn.execute(statement, bound)
                if not result.returns_rows:
                    raise SourceError(f"source {self.name}, query {query}: returns no rows")
                yield result
        except SQLAlchemyError as exc:
            raise self._error(query, exc) from None

    def stream(
        self, query: str, sql: str, params: dict[str, Any], batch: int
    ) -> Iterator[list[dict[str, Any]]]:
        """The rows a batch at a time, read from a server-side cursor in one
        read-only transaction; an error names the source and ``query``."""
        with self._result(query, sql, params, batch) as result:
            try:
                for part in result.partitions(batch):
                    yield [dict(row._mapping) for row in part]
            except GeneratorExit:
                result.close()  # PyMySQL reads what is left before the rollback
                raise

    def columns(self, query: str, sql: str, params: dict[str, Any]) -> list[str]:
        """The columns ``sql`` returns (run on an empty range: no rows are read), as
        a plain statement: PostgreSQL's cursors take only a SELECT, so this is where
        a query that writes meets the read-only transaction."""
        with self._result(query, sql, params, None) as result:
            columns = list(result.keys())
            result.close()
            return columns

    def settings(self) -> tuple[bool, float]:
        """(read-only, the statement timeout in seconds) as the database says them."""
        conn = self._conn()
        try:
            with conn.begin():
                if self.postgres:
                    read_only = conn.execute(text("SHOW transaction_read_only")).scalar()
                    millis = conn.execute(
                        text("SELECT setting FROM pg_settings WHERE name = 'statement_timeout'")
                    ).scalar()
                    return read_only == "on", float(millis or 0) / 1000
                # MariaDB 10 names them tx_read_only and max_statement_time (s);
                # MySQL 8, transaction_read_only and max_execution_time (ms).
                asked = (
                    "SELECT @@session.tx_read_only, @@session.max_statement_time"
                    if self.mariadb
                    else "SELECT @@session.transaction_read_only, "
                    "@@session.max_execution_time / 1000"
                )
                row = conn.execute(text(asked)).one()
                return bool(int(row[0])), float(row[1] or 0)
        except SQLAlchemyError as exc:
            raise self._error("settings", exc) from None

    def _error(self, query: str, exc: SQLAlchemyError) -> SourceError:
        where = f"source {self.name}, query {query}"
        code = _code(exc)
        if code in TIMEOUT_CODES:
            return SourceError(
                f"{where}: cancelled by the database after {self.timeout:g} s "
                "(the source's timeout; make the query cheaper or raise `timeout`)"
            )
        if code in READ_ONLY_CODES:
            return SourceError(f"{where}: the database refused a write (read-only connection)")
        return SourceError(f"{where}: {_said(exc, self.url)}")


def _code(exc: SQLAlchemyError) -> object:
    """MariaDB/MySQL's error number (PyMySQL's first argument), else PostgreSQL's
    SQLSTATE (psycopg's ``sqlstate``)."""
    if not isinstance(exc, DBAPIError) or exc.orig is None:
        return None
    args = getattr(exc.orig, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    return getattr(exc.orig, "sqlstate", None)


def _said(exc: SQLAlchemyError, url: URL) -> str:
    """The server's own words, first line, the URL and its password masked."""
    orig = getattr(exc, "orig", None) or exc
    words = str(orig).strip().splitlines()
    said = mask_url_in(words[0] if words else type(orig).__name__, url.render_as_string(False))
    if url.password:
        said = said.replace(str(url.password), "***")
    return said[:300]
