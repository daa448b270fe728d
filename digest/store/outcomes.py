"""A send's outcomes written (issue 31): the hottest statement of a send, a
batch of deliveries' replies at a time, written past SQLAlchemy's per-row type
processing; on PostgreSQL one statement a batch."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy.orm import Session

from digest.models import stored_utc

# The columns an outcome sets, with PostgreSQL's type of each (the arrays below).
_RECORD_COLUMNS = (
    ("status", "text"),
    ("attempts", "int"),
    ("smtp_code", "int"),
    ("smtp_reply", "text"),
    ("message_id", "text"),
    ("sent_at", "timestamptz"),
    ("next_attempt_at", "timestamptz"),
    ("updated_at", "timestamptz"),
)


def record_outcomes(
    session: Session, rows: Sequence[Sequence[Any]], day: date | None = None
) -> None:
    """Write a batch of outcomes: on PostgreSQL one statement a batch, on SQLite
    (and for a batch naming a delivery twice) one executemany.

    Each row holds the values of ``_RECORD_COLUMNS``, the first attempt's time, 1
    if the line dropped after the end of data (an ambiguous delivery, counted on
    the row), and then the delivery id.
    This is the hottest statement of a send, so it goes to the driver directly:
    SQLAlchemy's per-row type processing cost more than SQLite's own work;
    datetimes are converted by ``stored_utc``, the same rule ``UTCDateTime`` uses.
    ``day``: the edition's date, when every row is of one edition (a send's):
    PostgreSQL then reads that day's partition alone, not each day's index."""
    if not rows:
        return
    connection = session.connection()
    dialect = connection.dialect
    if dialect.name == "postgresql":
        # Like SQLite's WAL with synchronous=NORMAL: the commit survives our process
        # dying at any moment (what the kill window counts on) without waiting for
        # the disk; only a crash of the database host could lose the last instant,
        # and its messages would go again with the same Message-ID.
        connection.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
        if len({row[10] for row in rows}) == len(rows):  # each delivery once
            connection.exec_driver_sql(*_as_one_statement(rows, day))
            return
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    assignments = ", ".join(f"{column} = {mark}" for column, _ in _RECORD_COLUMNS)
    sql = (
        f"UPDATE delivery SET {assignments}, claimed_by = NULL, claimed_until = NULL, "  # nosec B608  # constant column names, bound values
        f"first_attempt_at = COALESCE(first_attempt_at, {mark}), "
        f"ambiguous = ambiguous + {mark} WHERE id = {mark}"
        + (f" AND edition_date = {mark}" if day is not None else "")
    )
    name = dialect.name
    # SQLite keeps a date as its ISO text (what SQLAlchemy's Date writes there).
    on_day = () if day is None else (day if name == "postgresql" else day.isoformat(),)
    params = [
        (*row[:5], *(stored_utc(t, name) for t in row[5:9]), row[9], row[10], *on_day)
        for row in rows
    ]  # status, attempts, code, reply, message id; four times; ambiguous; delivery id; day
    connection.exec_driver_sql(sql, params)


# The batch's rows as arrays, one a column, unnested into the table the UPDATE
# joins: PostgreSQL runs one statement a batch where an executemany ran one a
# row, and the statement trigger that keeps the counts (``delivery_count``) fires
# once a batch, not once a message (issue 31: 8 % of two senders' rate).
_UNNESTED = (
    *_RECORD_COLUMNS,
    ("first_at", "timestamptz"),
    ("dropped", "int"),
    ("id", "int"),
)
_ONE_STATEMENT = (
    "UPDATE delivery SET "  # nosec B608  # constant column names and types, bound values
    + ", ".join(f"{column} = v.{column}" for column, _ in _RECORD_COLUMNS)
    + ", claimed_by = NULL, claimed_until = NULL, "
    "first_attempt_at = COALESCE(delivery.first_attempt_at, v.first_at), "
    "ambiguous = delivery.ambiguous + v.dropped FROM unnest("
    + ", ".join(f"%s::{kind}[]" for _, kind in _UNNESTED)
    + f") AS v({', '.join(name for name, _ in _UNNESTED)}) WHERE delivery.id = v.id"
)


def _as_one_statement(
    rows: Sequence[Sequence[Any]], day: date | None
) -> tuple[str, tuple[Any, ...]]:
    columns = [list(values) for values in zip(*rows, strict=True)]
    columns[0] = [str(status) for status in columns[0]]  # the value, not the enum
    columns[5:9] = [[stored_utc(t, "postgresql") for t in times] for times in columns[5:9]]
    if day is None:
        return _ONE_STATEMENT, tuple(columns)
    return _ONE_STATEMENT + " AND delivery.edition_date = %s", (*columns, day)
