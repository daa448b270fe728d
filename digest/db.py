"""Engine, sessions and schema upgrades (Alembic), the same on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)

from digest.config.values import mask_url_in
from digest.errors import ConfigError, DatabaseAway, DigestError
from digest.files import touch_private

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig
    from sqlalchemy.orm import Session, sessionmaker

    # The names the rest of the code types its sessions with: they import these,
    # not SQLAlchemy (the house rule "SQL lives in store/" is checked on imports).
    Factory = sessionmaker[Session]
else:

    def __getattr__(name: str) -> object:
        # The ORM loads when a session is first wanted: `digest status` reads
        # through a plain connection (issue 31).
        if name in ("Session", "Factory"):
            from sqlalchemy.orm import Session, sessionmaker

            return Session if name == "Session" else sessionmaker[Session]
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


DatabaseError = SQLAlchemyError
Conflict = IntegrityError  # a unique key fired: another process made the row first
__all__ = ["Conflict", "DatabaseError", "Engine", "Factory", "Session"]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

# SQLite's words for "not now": another process holds the write lock past the
# busy timeout, or the file cannot be reached. Anything else it says is a bug.
_SQLITE_AWAY = ("database is locked", "database table is locked", "unable to open", "disk i/o")


def is_unavailable(exc: BaseException) -> bool:
    """The database is away (a restart, a failover, a network cut, a lock held
    too long), not wrong: the same statement may work in a moment."""
    if not isinstance(exc, OperationalError | InterfaceError):
        return isinstance(exc, DBAPIError) and exc.connection_invalidated
    if exc.connection_invalidated or isinstance(exc, InterfaceError):
        return True
    driver = type(exc.orig).__module__ if exc.orig is not None else ""
    if driver.startswith("psycopg"):
        return True  # an OperationalError of PostgreSQL's: the connection or server
    return any(words in str(exc.orig).lower() for words in _SQLITE_AWAY)


class SchemaOutOfDate(DigestError):
    """The database schema is older than this code: run `digest db upgrade`."""


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get WAL and foreign keys, their folder is made."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:  # its text may quote the URL, password and all
        raise ConfigError(f"DIGEST_DATABASE_URL: {mask_url_in(str(exc), url)}") from None
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            # Addresses and tokens: the file is made 0600 before SQLite opens it.
            touch_private(Path(parsed.database))
        # The sender writes outcomes from a worker thread while the loop reads.
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    elif parsed.get_backend_name() == "postgresql":
        kwargs["pool_pre_ping"] = True
    try:
        engine = create_engine(parsed, **kwargs)
    except (ArgumentError, ImportError) as exc:
        raise ConfigError(f"DIGEST_DATABASE_URL: {mask_url_in(str(exc), url)}") from None
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_begin(conn: Any) -> None:
    # Every transaction takes the write lock when it begins, waiting busy_timeout for
    # it. A deferred one reads a snapshot first and, when it then writes after
    # another process committed, fails at once with "database is locked" (no wait):
    # an ingest while a send ran lost records that way. SQLAlchemy's recipe: the
    # driver's own BEGIN is off (isolation_level None), this one is ours.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # see _sqlite_begin
    cursor = dbapi_connection.cursor()
    # WAL lets `digest status` read while a send writes; NORMAL sync is safe
    # under WAL (a power cut may lose the last commits, never corrupt).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    from sqlalchemy.orm import sessionmaker

    return sessionmaker(engine, expire_on_commit=False)


def engine_of(factory: sessionmaker[Session]) -> Engine:
    """The engine a session factory was made on (the health check asks it)."""
    bind = factory.kw["bind"]
    assert isinstance(bind, Engine)
    return bind


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    with factory() as session, session.begin():
        yield session


def _alembic_config(engine: Engine) -> AlembicConfig:
    # Alembic is imported by the upgrade alone: every command checks the schema,
    # and its import is a third of a `digest status` (issue 26).
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Create or upgrade the schema; returns (revision before, revision after)."""
    from alembic import command

    before = current_revision(engine)
    try:
        command.upgrade(_alembic_config(engine), revision)
    except (SQLAlchemyError, RuntimeError) as exc:
        # One line, never a traceback: the migration's transaction was rolled back.
        reason = exc.orig if isinstance(exc, DBAPIError) else exc
        raise DigestError(f"database upgrade failed: {reason}") from None
    return before, current_revision(engine)


def current_revision(engine: Engine) -> str | None:
    """The revision Alembic recorded, or None for a database it never touched."""
    with engine.connect() as conn:
        if not engine.dialect.has_table(conn, "alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def head_revision() -> str:
    """The newest migration: revisions are numbered as their files are named
    (NNNN_what.py, one chain; tests/integration/test_schema_and_migrations.py
    holds Alembic to it)."""
    return max(p.name[:4] for p in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))


def check_schema(engine: Engine) -> None:
    """Refuse to work on a database the migrations have not brought up to date."""
    try:
        current = current_revision(engine)
    except OperationalError as exc:
        if is_unavailable(exc):  # down or locked: a later run may find it (exit 75)
            raise DatabaseAway(f"cannot reach the database: {exc.orig}") from None
        raise DigestError(f"cannot open the database: {exc.orig}") from None
    if current != head_revision():
        raise SchemaOutOfDate(
            f"the database is at revision {current or 'none'}, the code needs "
            f"{head_revision()}: run `digest db upgrade`"
        )
