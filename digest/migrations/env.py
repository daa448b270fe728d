"""Alembic environment: the engine is handed in by ``digest.db.upgrade``."""

from __future__ import annotations

from alembic import context

from digest.models import Base

target_metadata = Base.metadata
# APScheduler's job store shares the database but is APScheduler's own.
FOREIGN_TABLES = {"apscheduler_jobs"}


def include_object(obj: object, name: str | None, kind: str, *_args: object) -> bool:
    return not (kind == "table" and name in FOREIGN_TABLES)


engine = context.config.attributes["engine"]

with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # Batch mode rebuilds a table by dropping it; with foreign keys enforced, a
        # table others point at (edition_variant, from delivery) cannot be dropped
        # while it has rows. Off for the migration (a PRAGMA outside any
        # transaction: on the driver's connection), checked after; the connection is
        # then dropped.
        connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: batch mode rebuilds the table.
        render_as_batch=sqlite,
        compare_type=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()
        if sqlite:
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"the migration left rows pointing nowhere: {broken[:5]}")
    if sqlite:
        # Not back to the pool with foreign keys off: the next connection is a new
        # one, and db's connect hook turns them on.
        connection.invalidate()
