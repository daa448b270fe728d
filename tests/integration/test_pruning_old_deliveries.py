"""`digest db prune` (issue 31 §4, in part): an old edition's delivery rows become
a summary and go, in batches, on both backends; what `digest status` and the
desk show of it does not change; an edition still sending is never touched."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from digest import demo
from digest.capture import CaptureServer
from digest.models import Delivery
from digest.track.retention import Retention, RetentionError
from digest.wiring import Services
from tests.support.common import FIXED_NOW
from tests.support.mail import READERS, send
from tests.support.smtp import ScriptedHandler

LATER = FIXED_NOW + timedelta(days=40)


def _rows(services: Services, edition_id: int) -> int:
    with services.factory() as session:
        query = select(func.count()).select_from(Delivery).where(Delivery.edition_id == edition_id)
        return int(session.scalar(query) or 0)


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
        demo.load(services.factory, demo.build(schedule, day))
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

    retention = Retention(services.factory, lambda: LATER, soft_bounce_days=15, batch=3)
    dry = retention.prune(30, dry_run=True)
    assert dry.editions == [(old.label, READERS)] and _rows(services, old.id) == READERS

    done = retention.prune(30)
    assert done.editions == [(old.label, READERS)] and done.rows == READERS
    assert _rows(services, old.id) == 0
    assert _rows(services, busy.id) == in_flight

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


def test_fewer_days_than_the_soft_bounce_rule_reads_are_refused(services: Services) -> None:
    retention = Retention(services.factory, lambda: LATER, soft_bounce_days=15)
    with pytest.raises(RetentionError, match="shorter than DIGEST_SOFT_BOUNCE_DAYS"):
        retention.prune(14)
