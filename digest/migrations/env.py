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
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: batch mode rebuilds the table.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()
