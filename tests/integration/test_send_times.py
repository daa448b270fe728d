"""The scheduler's rules on a controlled clock, on SQLite and PostgreSQL: catch-up
inside and outside the grace time, approval, preparing ahead, waves at each
reader's local time, two schedulers on one database, and APScheduler's own
job store and misfire event."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.events import EVENT_JOB_MISSED
from sqlalchemy import func, select, update

from digest import db, demo
from digest.capture import CaptureServer
from digest.config import parse_smtp_url
from digest.errors import EditionError, OldEdition
from digest.models import Delivery, Edition, EditionStatus, Subscriber, SubscriberStatus
from digest.schedule.runner import Fired
from digest.send import SmtpConnection, run_async
from digest.wiring import Services
from tests.support.common import FIXED_NOW
from tests.support.demo_data import load_demo_articles
from tests.support.mail import with_cron_hours_ago

DAY = date(2026, 11, 25)
SEND_AT = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)  # 07:00 Moscow
READERS = 12


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


def with_send(services: Services, tmp_path: Path, send: str) -> Services:
    """The project's daily.toml with its [send] table replaced by ``send``."""
    source = (services.settings.schedules_dir / "daily.toml").read_text(encoding="utf-8")
    folder = tmp_path / "schedules"
    folder.mkdir(exist_ok=True)
    (folder / "daily.toml").write_text(source.split("[send]")[0] + "[send]\n" + send, "utf-8")
    cfg = services.settings.model_copy(update={"schedules_dir": folder})
    return Services(cfg, services.factory, clock=services.clock)


@pytest.fixture
def clock() -> Clock:
    return Clock(FIXED_NOW)


@pytest.fixture
def loaded(services: Services, clock: Clock) -> Services:
    services = Services(services.settings, services.factory, clock=clock)
    load_demo_articles(services.factory, services.schedule("daily"), DAY)
    demo.add_subscribers(services.factory, READERS, now=FIXED_NOW)
    return services


def deliveries(services: Services) -> int:
    with services.factory() as session:
        return int(session.scalar(select(func.count()).select_from(Delivery)) or 0)


def edition_status(services: Services, day: date = DAY) -> EditionStatus | None:
    with services.factory() as session:
        found = session.scalar(select(Edition).where(Edition.edition_date == day))
        return found.status if found is not None else None


def test_back_within_the_grace_time_the_edition_goes_once(loaded: Services, clock: Clock) -> None:
    clock.now = SEND_AT + timedelta(minutes=90)  # down at 07:00, back at 08:30 Moscow
    report = loaded.runner.fire("daily")
    assert (report.outcome, report.edition_date, report.due_at) == (Fired.QUEUED, DAY, SEND_AT)
    assert report.deliveries == READERS and deliveries(loaded) == READERS
    clock.now += timedelta(minutes=10)
    again = loaded.runner.fire("daily")
    assert again.outcome is Fired.ALREADY and deliveries(loaded) == READERS


def test_after_the_grace_time_the_edition_is_missed_until_ops_run_it(
    loaded: Services, clock: Clock
) -> None:
    clock.now = SEND_AT + timedelta(minutes=121)
    report = loaded.runner.fire("daily")
    assert report.outcome is Fired.MISSED and "digest run daily --date 2026-11-25" in report.note
    assert edition_status(loaded) is EditionStatus.MISSED and deliveries(loaded) == 0
    # Not sent later by itself, and still said to be missed (issue 14: it said "already").
    assert loaded.runner.fire("daily").outcome is Fired.MISSED and deliveries(loaded) == 0
    by_hand = loaded.runner.fire("daily", edition_date=DAY)
    assert by_hand.outcome is Fired.QUEUED and deliveries(loaded) == READERS
    assert edition_status(loaded) is EditionStatus.SENDING


def test_the_grace_time_comes_from_the_file(loaded: Services, clock: Clock, tmp_path: Path) -> None:
    services = with_send(loaded, tmp_path, "grace_minutes = 300\n")
    clock.now = SEND_AT + timedelta(minutes=299)
    assert services.runner.fire("daily").outcome is Fired.QUEUED


def test_an_unapproved_draft_is_held_or_sent_as_the_file_says(
    loaded: Services, clock: Clock, tmp_path: Path
) -> None:
    clock.now = SEND_AT + timedelta(minutes=1)
    held = with_send(loaded, tmp_path, 'approval = true\nunapproved = "hold"\n')
    report = held.runner.fire("daily")
    assert report.outcome is Fired.HELD and "digest approve daily/2026-11-25" in report.note
    assert edition_status(held) is EditionStatus.DRAFT and deliveries(held) == 0
    with held.factory() as session:
        edition = session.scalar(select(Edition))
        assert edition is not None
    held.lifecycle.approve(edition)
    assert held.runner.fire("daily").outcome is Fired.QUEUED

    sent = with_send(loaded, tmp_path, 'approval = true\nunapproved = "send"\n')
    clock.now = SEND_AT + timedelta(days=1, minutes=1)
    demo.load(sent.factory, demo.build(sent.schedule("daily"), DAY + timedelta(days=1)))
    report = sent.runner.fire("daily")
    assert report.outcome is Fired.QUEUED and "sent anyway" in report.note


def test_one_approval_rule_for_every_path_that_sends(
    loaded: Services, clock: Clock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 28 §1: `digest run daily --date D` sent a never-approved draft to 22
    readers with no warning, where `digest send` refused it. By hand as at the
    send time, a draft its schedule wants approved is held; --force sends it, said."""
    clock.now = SEND_AT + timedelta(hours=5)
    services = with_send(loaded, tmp_path, 'approval = true\nunapproved = "hold"\n')
    held = services.runner.fire("daily", edition_date=DAY)
    assert held.outcome is Fired.HELD and deliveries(services) == 0, held
    assert "--force" in held.note and "digest approve daily/2026-11-25" in held.note
    assert edition_status(services) is EditionStatus.DRAFT
    schedule = services.schedule("daily")
    with services.factory() as session:
        draft = session.scalar(select(Edition))
        assert draft is not None
    with pytest.raises(EditionError, match="not approved"):
        services.lifecycle.start_sending(schedule, draft)  # the sender's and worker's door too
    with caplog.at_level(logging.WARNING):
        forced = services.runner.fire("daily", edition_date=DAY, force=True)
    assert forced.outcome is Fired.QUEUED and deliveries(services) == READERS
    assert "sent anyway (--force)" in forced.note
    assert "not approved; sent anyway (--force)" in caplog.text


def test_a_resumed_or_retried_edition_never_reaches_a_reader_who_joined_after_it_started(
    loaded: Services, clock: Clock
) -> None:
    """Issue 28 §1: `digest retry daily/2026-11-25 --failed` then `digest resume`
    on a week-old edition mailed it to 17 readers who had joined since. An edition
    is for the readers subscribed when its send first started."""
    clock.now = SEND_AT + timedelta(minutes=1)
    assert loaded.runner.fire("daily").outcome is Fired.QUEUED
    schedule = loaded.schedule("daily")
    clock.now += timedelta(days=7)
    with loaded.factory.begin() as session:
        session.add(
            Subscriber(
                email="newcomer@example.ru",
                token_key="n" * 32,
                status=SubscriberStatus.ACTIVE,
                created_at=clock.now,
                confirmed_at=clock.now,
            )
        )
        edition = session.scalar(select(Edition))
        assert edition is not None
    # What resume and retry do, once asked (--yes: it is a week old).
    added = loaded.lifecycle.start_sending(schedule, edition, old_ok=True)
    assert added == 0 and deliveries(loaded) == READERS
    with loaded.factory() as session:
        started = session.scalar(select(Edition.audience_at))
    assert started == SEND_AT + timedelta(minutes=1)


def test_an_edition_older_than_its_period_is_sent_resumed_or_retried_only_when_asked(
    loaded: Services, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 28 §1: `digest retry daily/2026-11-25 --failed` and `digest resume` on
    a week-old edition went without a word. Once the schedule's next edition is
    due, each way out refuses and says how many readers it would reach."""
    schedule = loaded.schedule("daily")
    edition = loaded.editions.build(schedule, DAY)
    clock.now = SEND_AT + timedelta(days=1)  # the next edition is due now
    with pytest.raises(OldEdition, match=rf"would reach {READERS} reader\(s\)") as caught:
        loaded.runner.fire("daily", edition_date=DAY)  # `digest run --date`
    assert caught.value.readers == READERS and "26.11.2026 07:00" in str(caught.value)
    with pytest.raises(OldEdition):
        loaded.lifecycle.start_sending(schedule, edition)  # `digest send`, a worker's too
    assert deliveries(loaded) == 0 and edition_status(loaded) is EditionStatus.DRAFT
    with caplog.at_level(logging.WARNING):
        assert loaded.lifecycle.start_sending(schedule, edition, old_ok=True) == READERS
    assert f"would reach {READERS} reader(s) now; sent anyway (--yes)" in caplog.text
    loaded.lifecycle.pause(edition)
    with pytest.raises(OldEdition, match=rf"would reach {READERS} reader\(s\)"):
        loaded.lifecycle.resume(edition)
    loaded.lifecycle.resume(edition, old_ok=True)
    with loaded.factory.begin() as session:
        session.execute(update(Delivery).values(status="failed"))
    assert loaded.lifecycle.retry(edition) == 0  # no deferred ones: nobody reached, not asked
    with pytest.raises(OldEdition, match=rf"would reach {READERS} reader\(s\)"):
        loaded.lifecycle.retry(edition, failed=True)
    with loaded.factory() as session:
        assert set(session.scalars(select(Delivery.status))) == {"failed"}  # nothing moved
    assert loaded.lifecycle.retry(edition, failed=True, old_ok=True) == READERS
    clock.now = SEND_AT + timedelta(hours=23)  # within its own day nobody is asked
    loaded.lifecycle.pause(edition)
    loaded.lifecycle.resume(edition)


def test_the_draft_is_prepared_ahead_of_send_time(
    loaded: Services, clock: Clock, tmp_path: Path
) -> None:
    services = with_send(loaded, tmp_path, "approval = true\nprepare_minutes = 60\n")
    clock.now = SEND_AT - timedelta(minutes=61)
    assert services.runner.prepare("daily").outcome is Fired.IDLE
    clock.now = SEND_AT - timedelta(minutes=59)
    report = services.runner.prepare("daily")
    assert report.outcome is Fired.PREPARED and report.edition_date == DAY
    assert edition_status(services) is EditionStatus.DRAFT and deliveries(services) == 0


ZONES = ("Europe/Moscow", "Asia/Vladivostok", "Europe/Kaliningrad")


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[CaptureServer]:
    with CaptureServer() as server:
        yield server


def test_local_time_sends_each_zone_at_its_own_seven_oclock(
    loaded: Services, clock: Clock, tmp_path: Path, smtp: CaptureServer
) -> None:
    services = with_send(loaded, tmp_path, "local_time = true\n")
    services = Services(
        services.settings.model_copy(update={"smtp_url": smtp.url}), services.factory, clock=clock
    )
    with services.factory.begin() as session:
        ids = sorted(session.scalars(select(Subscriber.id)))
        for i, sid in enumerate(ids):
            session.execute(
                update(Subscriber).where(Subscriber.id == sid).values(timezone=ZONES[i % 3])
            )
    zone_of = {}
    with services.factory() as session:
        for email, zone in session.execute(select(Subscriber.email, Subscriber.timezone)):
            zone_of[email] = zone

    def send_due() -> Counter[str]:
        before = len(smtp.messages)
        connect = lambda target: SmtpConnection(parse_smtp_url(smtp.url), 10)  # noqa: E731
        run_async(services.sender.work(connect, worker="t", once=True, stop=asyncio.Event()))
        return Counter(zone_of[m.rcpt_to[0]] for m in smtp.messages[before:])

    # 07:00 in Vladivostok is 21:00 UTC the day before: the first wave.
    clock.now = datetime(2026, 11, 24, 21, 0, tzinfo=UTC)
    report = services.runner.fire("daily")
    assert (report.edition_date, report.due_at) == (DAY, clock.now)
    assert report.outcome in (Fired.QUEUED, Fired.ALREADY)
    assert send_due() == Counter({"Asia/Vladivostok": READERS // 3})
    clock.now = datetime(2026, 11, 25, 3, 59, tzinfo=UTC)
    assert send_due() == Counter()  # Moscow is still asleep
    clock.now = SEND_AT
    assert send_due() == Counter({"Europe/Moscow": READERS // 3})
    clock.now = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)
    assert send_due() == Counter({"Europe/Kaliningrad": READERS // 3})
    assert edition_status(services) is EditionStatus.SENT


@pytest.mark.postgres
def test_two_schedulers_on_one_postgresql_database_make_one_edition(
    postgres_url: str, settings: object, tmp_path: Path
) -> None:
    clock = Clock(SEND_AT + timedelta(minutes=5))
    engines = [db.make_engine(postgres_url) for _ in range(2)]
    db.upgrade(engines[0])
    pipes = [
        Services(settings, db.session_factory(e), clock=clock)  # type: ignore[arg-type]
        for e in engines
    ]
    load_demo_articles(pipes[0].factory, pipes[0].schedule("daily"), DAY)
    demo.add_subscribers(pipes[0].factory, 200, now=FIXED_NOW)
    start = threading.Barrier(2)
    reports = []

    def fire(services: Services) -> None:
        start.wait()
        reports.append(services.runner.fire("daily"))

    threads = [threading.Thread(target=fire, args=(p,)) for p in pipes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(reports) == 2
    with pipes[0].factory() as session:
        assert session.scalar(select(func.count()).select_from(Edition)) == 1
        per_reader = session.execute(
            select(Delivery.subscriber_id, func.count()).group_by(Delivery.subscriber_id)
        ).all()
    assert len(per_reader) == 200 and {n for _, n in per_reader} == {1}
    assert sum(r.deliveries for r in reports) == 200
    for e in engines:
        e.dispose()


def test_jobs_live_in_the_database_and_a_missed_run_marks_the_edition(
    loaded: Services, tmp_path: Path
) -> None:
    # Down at the send time, back 4 hours later: past the 2-hour grace.
    services, send_at = with_cron_hours_ago(loaded, tmp_path, hours=4)
    day = send_at.astimezone(services.settings.zone).date()
    schedules = {"daily": services.schedule("daily")}
    scheduler = services.scheduling.build(schedules)
    missed: list[str] = []

    async def go() -> None:
        scheduler.start(paused=True)
        jobs = {job.id: job for job in scheduler.get_jobs()}
        assert set(jobs) == {"send:daily", "prepare:daily", "history:delivery"}
        send = jobs["send:daily"]
        assert (send.coalesce, send.max_instances, send.misfire_grace_time) == (True, 1, 7200)
        scheduler.add_listener(lambda e: missed.append(e.job_id), EVENT_JOB_MISSED)
        scheduler.modify_job("send:daily", next_run_time=send_at)
        scheduler.resume()
        for _ in range(100):
            if missed:
                break
            await asyncio.sleep(0.05)
        scheduler.shutdown(wait=False)

    asyncio.run(go())
    assert missed == ["send:daily"]
    assert edition_status(services, day) is EditionStatus.MISSED and deliveries(services) == 0
    # The store is a table of the configured database: a restart finds the jobs.
    engine = db.make_engine(services.settings.database)
    with engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT id FROM apscheduler_jobs ORDER BY id").all()
    engine.dispose()
    assert [row[0] for row in stored] == ["history:delivery", "prepare:daily", "send:daily"]
