"""Many rows at once (issue 31): the statements a list of a million readers
needs, each written so that its cost grows with the rows it touches and no plan
can make it more.

- ``insert_ignoring``: an INSERT the table's unique key keeps from writing a row
  twice (ON CONFLICT DO NOTHING, on both backends), instead of an anti-join that
  reads what the statement is writing.
- ``write_rows``: new rows in one stream: PostgreSQL's ``COPY … FROM STDIN``
  (one round trip, no per-row statement), SQLite's executemany.
- ``analyse``: PostgreSQL's planner told what a bulk write changed, at once:
  autovacuum would analyse a minute later, after the send that needed it began.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Insert,
    String,
    Table,
    any_,
    bindparam,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from digest.models import Forgotten, Subscriber, SubscriberStatus
from digest.models.tables import Base


def insert_ignoring(session: Session, model: type[Base]) -> Insert:
    """INSERT … ON CONFLICT DO NOTHING on the model's table, on either backend."""
    table: Table = model.__table__  # type: ignore[assignment]
    if _dialect(session) == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


def write_rows(
    session: Session, model: type[Base], columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> int:
    """``rows`` (values in ``columns``' order) added to the model's table; returns
    how many. Values are Python's own (datetimes aware, None for NULL): COPY's
    binary-safe text encoding is psycopg's, never ours."""
    table: Table = model.__table__  # type: ignore[assignment]
    if _dialect(session) != "postgresql":
        values = [dict(zip(columns, row, strict=True)) for row in rows]
        if values:
            session.execute(insert(table), values)
        return len(values)
    import psycopg  # only here: a SQLite-only command never loads it

    cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
    written = 0
    names = ", ".join(columns)  # the model's own column names, never a caller's text
    statement = f"COPY {table.name} ({names}) FROM STDIN"
    try:
        with cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
                written += 1
    except psycopg.Error as exc:
        # Said as any other statement's refusal (an IntegrityError for a duplicate
        # key), so a caller's savepoint and its report hold for COPY too.
        raise DBAPIError.instance(statement, None, exc, psycopg.Error) from exc
    return written


def analyse(session: Session, *models: type[Base]) -> None:
    """ANALYZE the models' tables on PostgreSQL (SQLite plans by its indexes)."""
    if _dialect(session) != "postgresql":
        return
    for model in models:
        session.execute(text(f"ANALYZE {model.__tablename__}"))  # our own table names


def _among(session: Session, column: Any, values: list[str]) -> ColumnElement[bool]:
    """``column IN values``; on PostgreSQL ``= ANY(…)`` of one text parameter split
    by the server: five thousand placeholders, or an array psycopg quotes element
    by element, cost more than the query. The values (checked addresses, hex
    hashes) never hold a line break."""
    if _dialect(session) == "postgresql":
        joined = bindparam("among", "\n".join(values), type_=String)
        return column == any_(func.string_to_array(joined, "\n"))  # type: ignore[no-any-return]
    return column.in_(values)  # type: ignore[no-any-return]


def _dialect(session: Session) -> str:
    return str(session.get_bind().dialect.name)


@dataclass(frozen=True)
class ImportedReader:
    """What an import needs of a known reader to merge a line into it."""

    id: int
    status: SubscriberStatus
    name: str | None
    sections: str | None
    timezone: str | None
    format: str | None
    consent_source: str | None
    consent_at: datetime | None
    confirmed_at: datetime | None


def subscribers_for_import(session: Session, emails: list[str]) -> dict[str, ImportedReader]:
    """The known readers among ``emails`` (one statement), by address."""
    s = Subscriber
    rows = session.execute(
        select(
            s.email, s.id, s.status, s.name, s.sections, s.timezone, s.format,
            s.consent_source, s.consent_at, s.confirmed_at,
        ).where(_among(session, s.email, emails))
    )  # fmt: skip
    return {row[0]: ImportedReader(*row[1:]) for row in rows}  # type: ignore[call-arg]


def forgotten_among(session: Session, hashes: list[str]) -> set[str]:
    """The hashes among ``hashes`` that `forget` keeps (one statement)."""
    return set(
        session.scalars(select(Forgotten.hash).where(_among(session, Forgotten.hash, hashes)))
    )


def last_subscriber_id(session: Session) -> int:
    return int(session.scalar(select(func.max(Subscriber.id))) or 0)


_CHANGED = ("name", "sections", "timezone", "locale", "format", "consent_source", "consent_at",
            "status", "confirmed_at")  # fmt: skip


def update_subscribers(session: Session, rows: list[dict[str, Any]]) -> None:
    """Known readers changed by an import, one executemany: each dict holds
    ``b_id`` and every column of ``_CHANGED``."""
    if not rows:
        return
    table: Table = Subscriber.__table__  # type: ignore[assignment]
    statement = (
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values({column: bindparam(column) for column in _CHANGED})
    )
    session.connection().execute(statement, rows)
