"""PostgreSQL's ``delivery``, a partition a day (issue 31 §4).

The table is partitioned by range of ``edition_date``: ``delivery_20261204``
holds every delivery of every edition dated 4 December. A day's sends then read
and write one small table and its own indexes; a day whose editions are over
goes at once (``DROP TABLE``: no ten million deletes, no vacuum debt after them).

Partitions are made ahead (the scheduler's daily job, and every send for its own
day in case nobody ran it), each in its own short transaction: making one locks
the whole ``delivery`` table for an instant, never for the length of an enqueue.
Each gets its own autovacuum thresholds: a send updates every row of its day
twice, and the default (a fifth of the table dead first) would let the day
being sent swell by half before vacuum came.

SQLite has one table and no partitions: there nothing is made, listed or
dropped (`digest db prune` deletes its rows in batches instead); naming an
edition's day and clearing events' links work the same on both."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterable
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Connection, delete, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from digest.models import Delivery, DeliveryCount, Edition, Event
from digest.store.light import edition_day

_NAME = re.compile(r"delivery_(\d{8})")
# Vacuum once 1 % of a partition is dead rows, analyse at 2 %: a day's send is
# then vacuumed while it runs, not once it is over.
_AUTOVACUUM = "autovacuum_vacuum_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.02"
# One maker at a time: two schedulers (or a scheduler and a send) making the same
# day at once would both find it missing; the second waits, then finds it made.
_LOCK = 3_100_401
# Making or dropping a partition wants the tables ``delivery``'s keys name (share
# row exclusive) and ``delivery`` itself (access exclusive). Taken first, in this
# order, each waited for at most _WAIT: a transaction holding one of them and then
# reading deliveries (re-choosing an edition's articles deletes its variants, whose
# key check reads ``delivery``) would otherwise deadlock with the half-made
# partition, and PostgreSQL's detector (after deadlock_timeout, 1 s by default)
# might kill that transaction instead of this one. Shorter than the detector's
# wait, the maker gives way first and tries again.
_WAIT = "500ms"
_TRIES = 40
_LOCK_NOT_AVAILABLE = "55P03"


def partitioned(session: Session | Connection) -> bool:
    return _dialect(session) == "postgresql"


def partition_name(day: date) -> str:
    return f"delivery_{day:%Y%m%d}"


def of_edition(edition_id: int) -> tuple[Any, Any]:
    """The edition's deliveries, its date named too: PostgreSQL then reads the
    one partition that holds them (pruned when the query runs: the date is a
    sub-select of the edition's row)."""
    return Delivery.edition_id == edition_id, Delivery.edition_date == edition_day(edition_id)


def partition_days(session: Session | Connection) -> list[date]:
    """The days that have a partition, oldest first (none on SQLite)."""
    if not partitioned(session):
        return []
    names = session.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'delivery'::regclass"
        )
    ).scalars()
    found = (_NAME.fullmatch(n) for n in names)
    return sorted(date(int(m[1][:4]), int(m[1][4:6]), int(m[1][6:])) for m in found if m)


def make_partitions(session: Session | Connection, days: Iterable[date]) -> list[date]:
    """A partition for each of ``days`` that has none; returns the days made. Call
    it in a transaction of its own and commit at once (see the module's note)."""
    if not partitioned(session):
        return []
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK})
    missing = sorted(set(days) - set(partition_days(session)))
    if missing:
        _with_tables_locked(session, lambda: _create(session, missing))
    return missing


def _create(session: Session | Connection, days: list[date]) -> None:
    for day in days:
        # The name and both bounds come from a date, never from anyone's text.
        start, end = day.isoformat(), (day + timedelta(days=1)).isoformat()
        session.execute(
            text(
                f"CREATE TABLE {partition_name(day)} PARTITION OF delivery "
                f"FOR VALUES FROM ('{start}') TO ('{end}') WITH ({_AUTOVACUUM})"
            )
        )


def _with_tables_locked(session: Session | Connection, ddl: Callable[[], None]) -> None:
    """``ddl`` run with the locks a partition's DDL takes already held (see
    _WAIT); each try in a savepoint, so a try that gave way lets go of them all."""
    named = sorted({key.column.table.name for key in Delivery.__table__.foreign_keys})
    for attempt in range(_TRIES):
        try:
            with session.begin_nested():
                session.execute(text(f"SET LOCAL lock_timeout = '{_WAIT}'"))
                # Table names from our own model, never from anyone's text.
                session.execute(text(f"LOCK TABLE {', '.join(named)} IN SHARE ROW EXCLUSIVE MODE"))
                session.execute(text("LOCK TABLE delivery IN ACCESS EXCLUSIVE MODE"))
                ddl()
                session.execute(text("SET LOCAL lock_timeout TO DEFAULT"))
            return
        except OperationalError as exc:
            code = getattr(exc.orig, "sqlstate", None)
            if code != _LOCK_NOT_AVAILABLE or attempt == _TRIES - 1:
                raise
            time.sleep(random.uniform(0.05, 0.25))  # nosec B311  # a back-off


def days_around(today: date, ahead: int) -> list[date]:
    """Yesterday (an edition of a late zone), today and ``ahead`` days after."""
    return [today + timedelta(days=n) for n in range(-1, ahead + 1)]


def drop_partition(session: Session, day: date) -> None:
    """The day's partition and every delivery in it gone; the events that named
    one of them keep everything but that link. The caller has kept each edition's
    summary and made sure none of the day's editions is still sending."""
    ids = select(Delivery.id).where(Delivery.edition_date == day)
    _unlink(session, Event.delivery_id.in_(ids))

    def drop() -> None:
        session.execute(text(f"DROP TABLE {partition_name(day)}"))  # a date's name
        # A dropped table fires no trigger: the day's editions' counts go with it.
        days_editions = select(Edition.id).where(Edition.edition_date == day)
        session.execute(delete(DeliveryCount).where(DeliveryCount.edition_id.in_(days_editions)))

    _with_tables_locked(session, drop)


def unlink_events_of_edition(session: Session, edition_id: int) -> None:
    """Events of the edition's deliveries lose their link before the rows go."""
    ids = select(Delivery.id).where(Delivery.edition_id == edition_id)
    _unlink(session, Event.delivery_id.in_(ids))


def unlink_events_of_subscriber(session: Session, subscriber_id: int) -> None:
    """A forgotten reader's events lose their link to the deliveries that go with them."""
    _unlink(session, Event.subscriber_id == subscriber_id)


def _unlink(session: Session, where: object) -> None:
    session.execute(
        update(Event)
        .where(where, Event.delivery_id.is_not(None))  # type: ignore[arg-type]
        .values(delivery_id=None),
        execution_options={"synchronize_session": False},
    )


def vacuum_settings(session: Session) -> dict[str, str]:
    """PostgreSQL's ``autovacuum`` and ``track_counts`` (without which it never
    starts), as the server says them (PostgreSQL only: SQLite has no vacuum daemon)."""
    rows = session.execute(
        text(
            "SELECT name, setting FROM pg_settings "
            "WHERE name IN ('autovacuum', 'track_counts') ORDER BY name"
        )
    )
    return {name: setting for name, setting in rows}


def _dialect(session: Session | Connection) -> str:
    bind = session.get_bind() if isinstance(session, Session) else session
    return bind.dialect.name
