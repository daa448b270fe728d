"""The demo's articles and comments in a test's database, loaded once per process.

Loading them (40 articles, 11 661 comments, validated one by one) was the largest
single share of the suite's own time (issue 26): some forty fixtures and tests
need the same rows for the same day. The first load of each (backend, schedule,
day) in a process runs ``demo.load`` for real and keeps a copy of the rows it
wrote; the next one inserts that copy into the new database, which holds exactly
what a real load would have written (the ids too: every test's database is a
fresh copy of the same migrated template)."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Integer, Table, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from digest import demo
from digest.models.tables import Base
from digest.schedule.files import Schedule

# Each table's rows as the database stores them: PostgreSQL's COPY text, SQLite's
# tuples. Written back the same way, no ORM or type conversion on the way: through
# SQLAlchemy, a row at a time, the copies were 2.24 million INSERTs a run on
# PostgreSQL alone and several per cent of the suite's Python CPU (4 December).
Rows = dict[str, Any]
_kept: dict[tuple[str, str, date], Rows] = {}


def load_demo_articles(factory: sessionmaker[Session], schedule: Schedule, day: date) -> bool:
    """What ``demo.load(factory, demo.build(schedule, day))`` leaves in the database;
    whether it came from the copy."""
    with factory() as session:
        backend = session.get_bind().dialect.name
        key = (backend, schedule.model_dump_json(), day)
        kept = _kept.get(key)
        before = _counts(session, [t for t in _tables() if kept is None or t.name in kept])
    if kept is not None and not any(before.values()):
        _insert(factory, kept)
        return True
    demo.load(factory, demo.build(schedule, day))
    if kept is None:
        written = _rows(factory, before)
        if all(before[name] == 0 for name in written):  # not added to rows already there
            _kept[key] = written
    return False


def _tables() -> list[Table]:
    return list(Base.metadata.sorted_tables)


def _counts(session: Session, tables: list[Table]) -> dict[str, int]:
    return {t.name: int(session.scalar(select(func.count()).select_from(t)) or 0) for t in tables}


def _raw(session: Session) -> Any:
    return session.connection().connection.driver_connection


def _rows(factory: sessionmaker[Session], before: dict[str, int]) -> Rows:
    with factory() as session:
        after = _counts(session, _tables())
        changed = [t.name for t in _tables() if after[t.name] != before[t.name]]
        cursor = _raw(session).cursor()
        if session.get_bind().dialect.name == "postgresql":
            kept: Rows = {}
            for name in changed:  # the model's own table names
                with cursor.copy(f'COPY "{name}" TO STDOUT') as copy:
                    kept[name] = b"".join(bytes(block) for block in copy)
            return kept
        return {name: cursor.execute(f'SELECT * FROM "{name}"').fetchall() for name in changed}


def _insert(factory: sessionmaker[Session], kept: Rows) -> None:
    with factory() as session, session.begin():
        postgres = session.get_bind().dialect.name == "postgresql"
        cursor = _raw(session).cursor()
        for table in (t for t in _tables() if kept.get(t.name)):
            if postgres:
                with cursor.copy(f'COPY "{table.name}" FROM STDIN') as copy:
                    copy.write(kept[table.name])
            else:
                marks = ", ".join("?" for _ in kept[table.name][0])  # as the table stores them
                cursor.executemany(f'INSERT INTO "{table.name}" VALUES ({marks})', kept[table.name])
        if postgres:
            _advance_sequences(session, [t for t in _tables() if t.name in kept])


def _advance_sequences(session: Session, tables: list[Table]) -> None:
    """Rows inserted with their ids leave PostgreSQL's sequences behind: move each
    to its table's largest id, as the real load would have."""
    for table in tables:
        for column in (c for c in table.primary_key.columns if isinstance(c.type, Integer)):
            # An integer id with no sequence gets NULL from pg_get_serial_sequence,
            # and setval(NULL, …) does nothing.
            session.execute(
                text(
                    "SELECT setval(pg_get_serial_sequence(:t, :c),"
                    f' (SELECT max("{column.name}") FROM "{table.name}"))'
                ),
                {"t": f'"{table.name}"', "c": column.name},
            )
