"""`digest db prune` (issue 31 §4): an old edition's delivery rows become a
summary and go (on PostgreSQL its day's partition dropped whole; on SQLite, or
beside an edition of the same day still sending, in batches); what `digest
status` and the desk show of it does not change; an edition still sending is
never touched; the events that named a delivery keep all but that link."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from digest import demo, store
from digest.capture import CaptureServer
from digest.edition.special import SpecialOrder
from digest.models import Article, Delivery, Event, EventKind
from digest.track.retention import Retention, RetentionError
from digest.wiring import Services
from tests.support.common import FIXED_NOW
from tests.support.demo_data import load_demo_articles
from tests.support.mail import READERS, send
from tests.support.smtp import ScriptedHandler

LATER = FIXED_NOW + timedelta(days=40)


def _postgres(services: Services) -> bool:
    with services.factory() as session:
        return store.partitioned(session)


def _rows(services: Services, edition_id: int) -> int:
    with services.factory() as session:
        query = select(func.count()).select_from(Delivery).where(Delivery.edition_id == edition_id)
        return int(session.scalar(query) or 0)


def _complaint_about(services: Services, edition_id: int) -> int:
    """A complaint event naming one of the edition's deliveries; its id."""
    with services.factory() as session, session.begin():
        delivery = session.scalars(
            select(Delivery).where(Delivery.edition_id == edition_id)
        ).first()
        assert delivery is not None
        event = Event(
            delivery_id=delivery.id,
            subscriber_id=delivery.subscriber_id,
            edition_id=edition_id,
            kind=EventKind.COMPLAINT,
            at=FIXED_NOW,
        )
        session.add(event)
        session.flush()
        return event.id


def _event_link(services: Services, event_id: int) -> int | None:
    with services.factory() as session:
        event = session.get(Event, event_id)
        assert event is not None and event.kind == EventKind.COMPLAINT  # the event stays
        return event.delivery_id


def test_an_old_edition_keeps_its_figures_and_loses_its_rows(
    services: Services, fixed_date: date, smtp_server: CaptureServer
) -> None:
    schedule = services.schedule("daily")
    handler = smtp_server.handler
    assert isinstance(handler, ScriptedHandler)
    handler.rules = {
        demo.reader_address(1): f"550 5.1.1 <{demo.reader_address(1)}>: user unknown",
        demo.reader_address(2): "554 5.7.1 Message rejected as spam",
    }
    for day in (fixed_date, fixed_date + timedelta(days=1)):
        load_demo_articles(services.factory, schedule, day)
    demo.add_subscribers(services.factory, READERS, now=FIXED_NOW)
    old = services.editions.build(schedule, fixed_date)
    send(services, schedule, old, smtp_server)
    # The next day's edition is still being sent: its rows stay, however old.
    busy = services.editions.build(schedule, fixed_date + timedelta(days=1))
    services.lifecycle.start_sending(schedule, busy, force=True, old_ok=True)
    in_flight = _rows(services, busy.id)
    assert in_flight == READERS - 1  # the hard bounce is suppressed

    before = services.reports.of(old.label)
    page = services.desk.delivery(old.id)
    assert before is not None and before.failures
    assert (before.counts["bounced"], before.counts["failed"]) == (1, 1)

    complaint = _complaint_about(services, old.id)
    retention = Retention(services.factory, lambda: LATER, soft_bounce_days=15, batch=3)
    dry = retention.prune(30, dry_run=True)
    assert dry.editions == [(old.label, READERS)] and _rows(services, old.id) == READERS

    done = retention.prune(30)
    assert done.editions == [(old.label, READERS)] and done.rows == READERS
    assert _rows(services, old.id) == 0
    assert _rows(services, busy.id) == in_flight
    assert _event_link(services, complaint) is None
    with services.factory() as session:
        days = store.partition_days(session)
    if _postgres(services):
        # The old day's partition went whole; the busy day's stays.
        assert fixed_date in done.days and fixed_date not in days
        assert fixed_date + timedelta(days=1) in days
    else:
        assert done.days == [] and days == []

    after = services.reports.of(old.label)
    assert after is not None
    assert (after.counts, after.total, after.failures) == (
        before.counts,
        before.total,
        before.failures,
    )
    again = services.desk.delivery(old.id)
    assert (again.bounces, again.per_minute, again.sent) == (
        page.bounces,
        page.per_minute,
        page.sent,
    )
    assert retention.prune(30).editions == []  # nothing twice


def test_a_day_with_an_edition_still_sending_keeps_its_partition(
    services: Services, fixed_date: date, smtp_server: CaptureServer
) -> None:
    """The day's sent edition goes row by row; the special edition of the same
    day still being sent keeps its rows, and so the day keeps its partition."""
    schedule = services.schedule("daily")
    load_demo_articles(services.factory, schedule, fixed_date)
    demo.add_subscribers(services.factory, READERS, now=FIXED_NOW)
    old = services.editions.build(schedule, fixed_date)
    send(services, schedule, old, smtp_server)
    with services.factory() as session:
        ids = tuple(session.scalars(select(Article.id).limit(2)))
    special = services.specials.make(SpecialOrder("daily", ids, "Срочно"), "anna")
    assert special.edition_date == fixed_date
    services.lifecycle.approve(special, approved=True)
    in_flight = services.specials.start(special.id, "anna")
    assert in_flight == _rows(services, special.id) > 0

    retention = Retention(services.factory, lambda: LATER, soft_bounce_days=15, batch=4)
    done = retention.prune(30)
    assert done.editions == [(old.label, READERS)] and fixed_date not in done.days
    assert _rows(services, old.id) == 0 and _rows(services, special.id) == in_flight
    with services.factory() as session:
        assert (fixed_date in store.partition_days(session)) is store.partitioned(session)
    report = services.reports.of(old.label)
    assert report is not None and report.counts["sent"] == READERS


def test_fewer_days_than_the_soft_bounce_rule_reads_are_refused(services: Services) -> None:
    retention = Retention(services.factory, lambda: LATER, soft_bounce_days=15)
    with pytest.raises(RetentionError, match="shorter than DIGEST_SOFT_BOUNCE_DAYS"):
        retention.prune(14)
