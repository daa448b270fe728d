"""``delivery`` by edition day (issue 31 §4): migration 0025 moves a database
holding a sent edition and one still being sent across (and back) without losing
a row; on PostgreSQL each day is its own partition, made ahead, the claim index
holds only the work left, and a send reads its own day's partition alone."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from digest import db, demo, store
from digest.capture import CaptureServer
from digest.models import Delivery, DeliveryStatus, Edition, EditionStatus
from digest.track.retention import Retention
from digest.wiring import Services
from tests.support.cli import wait_until
from tests.support.common import FIXED_NOW
from tests.support.demo_data import load_demo_articles
from tests.support.mail import READERS, send

ROWS = (
    "SELECT id, edition_id, subscriber_id, status, attempts, message_id FROM delivery ORDER BY id"
)


def _postgres(services: Services) -> bool:
    with services.factory() as session:
        return store.partitioned(session)


def _engine(services: Services) -> Engine:
    with services.factory() as session:
        engine = session.get_bind()
    assert isinstance(engine, Engine)
    engine.dispose()  # no pooled connection in the way of the migration's locks
    return engine


def _rows(engine: Engine, sql: str = ROWS) -> Sequence[Any]:
    with engine.connect() as conn:
        return conn.execute(text(sql)).all()


def _kind(engine: Engine) -> str | None:
    """pg_class.relkind of delivery: 'p' partitioned, 'r' a plain table."""
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT relkind FROM pg_class WHERE relname = 'delivery'")
        ).scalar()


def test_a_database_with_sent_and_in_flight_editions_crosses_without_losing_a_row(
    services: Services, fixed_date: date, smtp_server: CaptureServer
) -> None:
    schedule = services.schedule("daily")
    second_day = fixed_date + timedelta(days=1)
    for day in (fixed_date, second_day, second_day + timedelta(days=1)):
        load_demo_articles(services.factory, schedule, day)
    demo.add_subscribers(services.factory, READERS, now=FIXED_NOW)
    sent = services.editions.build(schedule, fixed_date)
    send(services, schedule, sent, smtp_server)
    in_flight = services.editions.build(schedule, second_day)
    send(services, schedule, in_flight, smtp_server, limit=7)  # stopped after 7 messages
    engine = _engine(services)
    before = _rows(engine)
    statuses = {r.status for r in before if r.edition_id == in_flight.id}
    assert {"sent", "queued"} <= statuses and len(before) == 2 * READERS

    command.downgrade(db._alembic_config(engine), "0024")
    assert _rows(engine) == before and _kind(engine) in (None, "r")
    db.upgrade(engine)
    assert _rows(engine) == before and _kind(engine) in (None, "p")
    with services.factory() as session:
        dates = session.execute(select(Delivery.edition_id, Delivery.edition_date).distinct())
        assert sorted(dates) == [(sent.id, fixed_date), (in_flight.id, second_day)]
        days = store.partition_days(session)
    if engine.dialect.name == "postgresql":
        assert {fixed_date, second_day} <= set(days)

    # The send goes on where it stopped, and new rows take ids after the old ones.
    send(services, schedule, in_flight, smtp_server)
    after = _rows(engine)
    assert [r.status for r in after if r.edition_id == in_flight.id].count("sent") == READERS
    assert len(smtp_server.messages) == 2 * READERS
    third = services.editions.build(schedule, second_day + timedelta(days=1))
    services.lifecycle.start_sending(schedule, third, force=True, old_ok=True)
    newest = _rows(engine, f"SELECT min(id) FROM delivery WHERE edition_id = {third.id}")
    assert newest[0][0] > max(r.id for r in before)


def test_each_edition_day_is_a_partition_made_ahead_and_a_send_reads_its_own(
    services: Services, fixed_date: date, smtp_server: CaptureServer
) -> None:
    schedule = services.schedule("daily")
    retention = Retention(services.factory, lambda: FIXED_NOW, soft_bounce_days=15)
    made = retention.make_room()
    engine = _engine(services)
    with services.factory() as session:
        days = store.partition_days(session)
    if engine.dialect.name != "postgresql":
        assert made == [] and days == []
        return
    week = [fixed_date + timedelta(days=n) for n in range(-1, 8)]
    assert set(week) <= set(days) and retention.make_room() == []  # made once
    load_demo_articles(services.factory, schedule, fixed_date)
    demo.add_subscribers(services.factory, READERS, now=FIXED_NOW)
    edition = services.editions.build(schedule, fixed_date)
    services.lifecycle.start_sending(schedule, edition)
    with engine.connect() as conn:
        where = {
            str(r[0]): r[1]
            for r in conn.execute(
                text(
                    "SELECT tableoid::regclass, count(*) FROM delivery WHERE edition_id = :id "
                    "GROUP BY 1"
                ),
                {"id": edition.id},
            )
        }
        name = store.partition_name(fixed_date)
        options = conn.execute(
            text("SELECT reloptions FROM pg_class WHERE relname = :name"), {"name": name}
        ).scalar()
        indexes = conn.execute(
            text("SELECT indexdef FROM pg_indexes WHERE tablename = :name"), {"name": name}
        ).scalars()
        conn.execute(text("ANALYZE delivery"))
        plan = _explain(conn, edition.id)
    assert where == {name: READERS}
    assert "autovacuum_vacuum_scale_factor=0.01" in options
    # The claim index holds what is left to send, nothing else.
    partial = [i for i in indexes if "(edition_id, id) WHERE" in i]
    assert len(partial) == 1 and "'queued'" in partial[0] and "'sent'" not in partial[0]
    # The counts read the edition's day alone: every other partition is skipped.
    scans = [line for line in plan.splitlines() if " on delivery_" in line]
    assert any(name in line and "never executed" not in line for line in scans)
    assert all("never executed" in line for line in scans if name not in line)
    send(services, schedule, edition, smtp_server)
    with services.factory() as session:
        done = session.get(Edition, edition.id)
        assert done is not None and done.status is EditionStatus.SENT
        left = session.scalar(
            select(Delivery.id).where(
                Delivery.edition_id == edition.id, Delivery.status == DeliveryStatus.QUEUED
            )
        )
    assert left is None


def _explain(conn: Any, edition_id: int) -> str:
    """The plan PostgreSQL runs for the status counts of ``edition_id``."""
    from sqlalchemy.dialects import postgresql

    query = (
        select(Delivery.status, text("count(*)"))
        .where(*store.of_edition(edition_id))
        .group_by(Delivery.status)
    )
    sql = str(query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    return "\n".join(r[0] for r in conn.execute(text("EXPLAIN (ANALYZE, COSTS OFF) " + sql)))


def test_the_scheduler_makes_the_weeks_partitions_and_prunes_nightly_when_asked(
    services: Services, fixed_date: date, smtp_server: CaptureServer
) -> None:
    from digest.schedule import jobs
    from digest.schedule.files import load_schedules

    schedule = services.schedule("daily")
    load_demo_articles(services.factory, schedule, fixed_date)
    demo.add_subscribers(services.factory, READERS, now=FIXED_NOW)
    old = services.editions.build(schedule, fixed_date)
    send(services, schedule, old, smtp_server)
    later = FIXED_NOW + timedelta(days=40)
    for keep in (0, 30):
        cfg = services.settings.model_copy(update={"keep_deliveries": keep})
        wired = Services(cfg, services.factory, clock=lambda: later)
        scheduler = wired.scheduling.build(load_schedules(cfg.schedules_dir, cfg.timezone))
        nightly = {job.id: job for job in scheduler.get_jobs()}["history:delivery"]
        assert "hour='3', minute='30'" in str(nightly.trigger)
        jobs.history_job("delivery")  # what the scheduler runs at 03:30
        with services.factory() as session:
            rows = session.scalar(select(func.count()).where(Delivery.edition_id == old.id))
            days = set(store.partition_days(session))
        assert rows == (READERS if keep == 0 else 0)  # pruned only when asked
        if _postgres(services):
            assert {later.date() + timedelta(days=n) for n in range(8)} <= days
            assert (fixed_date in days) is (keep == 0)
    report = services.reports.of(old.label)
    assert report is not None and report.counts["sent"] == READERS


def _waiting(engine: Engine, pid: int) -> bool:
    """The backend ``pid`` waits for a lock someone else holds."""
    with engine.connect() as conn:
        return bool(
            conn.execute(
                text("SELECT count(*) FROM pg_locks WHERE pid = :pid AND NOT granted"),
                {"pid": pid},
            ).scalar()
        )


@pytest.mark.postgres
def test_making_a_partition_never_deadlocks_with_a_transaction_on_the_tables_it_names(
    postgres_url: str,
) -> None:
    """Two schedulers firing one schedule at once (a full run, 4 December): one
    re-chose the edition's articles, deleting its variants, while the other made
    the day's partition for the send. The partition's foreign keys wanted the
    variants' table the first held; the first's check of those keys wanted the
    partition being made: PostgreSQL's deadlock detector killed one. Making a
    partition now waits for the tables its keys name before it makes anything, so
    a transaction that holds one of them finishes first."""
    engine = db.make_engine(postgres_url)
    db.upgrade(engine)
    holder = engine.connect()
    holder.begin()
    # The first scheduler: its edition's variants being replaced (no row yet: the lock).
    holder.execute(text("DELETE FROM edition_variant WHERE edition_id = -1"))
    maker_pid: list[int] = []
    failures: list[BaseException] = []

    def make() -> None:
        try:
            with Session(engine) as session, session.begin():
                maker_pid.append(session.execute(text("SELECT pg_backend_pid()")).scalar_one())
                store.make_partitions(session, [date(2026, 12, 30)])
        except BaseException as exc:  # noqa: BLE001 - judged by the test below
            failures.append(exc)

    maker = threading.Thread(target=make)
    maker.start()
    wait_until(lambda: bool(maker_pid) and _waiting(engine, maker_pid[0]))
    try:
        # The first scheduler's next statement reads the deliveries (its keys' check does).
        holder.execute(text("SELECT count(*) FROM delivery"))
        holder.commit()
    finally:
        holder.close()
        maker.join(timeout=30)
    assert not failures, failures
    with engine.connect() as conn:
        assert date(2026, 12, 30) in store.partition_days(conn)
    engine.dispose()
