"""Editions sent for the tests, and what comes back: the demo's readers sent one
edition through a scripted server, a Maildir of returns read, a schedule moved in
time."""

from __future__ import annotations

import email
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from digest import demo
from digest.capture import CaptureServer
from digest.config import parse_smtp_url
from digest.models import Edition
from digest.schedule.files import Schedule
from digest.send import RelayPool, RunResult, SmtpConnection, run_async
from digest.tokens import LinkSigner
from digest.track.bounces import BounceReader
from digest.track.intake import ReturnsReport, Source, process_returns
from digest.track.outcomes import SoftBouncePolicy
from digest.wiring import Services
from tests.support.common import FIXED_NOW
from tests.support.demo_data import load_demo_articles

READERS = 40


def send(
    services: Services,
    schedule: Schedule,
    edition: Edition,
    server: CaptureServer,
    limit: int | None = None,
    batch: int | None = None,
) -> RunResult:
    target = parse_smtp_url(server.url)
    services.lifecycle.start_sending(schedule, edition)
    run = services.sender.send_run(
        schedule,
        edition,
        lambda t: SmtpConnection(t, 5),
        worker="test",
        relays=RelayPool([target], cooldown=0.2, outage_limit=1.0),
        limit=limit,
    )
    if batch:
        run.claims.batch_size = run.writer.batch_size = batch
    result = run_async(run.run())
    services.lifecycle.finish(edition)
    return result


@pytest.fixture
def sent(
    services: Services, fixed_date: date, smtp_server: CaptureServer
) -> tuple[Services, Edition, dict[str, tuple[str, str]]]:
    """An edition sent to every reader: address → (VERP return path, Message-ID)."""
    schedule = services.schedule("daily")
    load_demo_articles(services.factory, schedule, fixed_date)
    demo.add_subscribers(services.factory, READERS, now=FIXED_NOW)
    edition = services.editions.build(schedule, fixed_date)
    send(services, schedule, edition, smtp_server)
    found = {}
    for m in smtp_server.messages:
        mid = str(email.message_from_bytes(m.data)["Message-ID"])
        found[m.rcpt_to[0]] = (m.mail_from, mid)
    assert len(found) == READERS
    return services, edition, found


def run(services: Services, box: Path) -> ReturnsReport:
    cfg = services.settings
    reader = BounceReader(LinkSigner(cfg.link_key(), "verp"), cfg.return_path)
    policy = SoftBouncePolicy(cfg.soft_bounce_limit, cfg.soft_bounce_days)
    return process_returns(services.factory, Source(box), reader, policy, lambda: FIXED_NOW)


def with_cron_hours_ago(
    services: Services, tmp_path: Path, hours: int
) -> tuple[Services, datetime]:
    """The daily schedule moved to fire ``hours`` before the real now (APScheduler
    reads the wall clock to find missed runs, so this test's data follows it), and
    that fire time."""
    fired = (datetime.now(UTC) - timedelta(hours=hours)).replace(second=0, microsecond=0)
    local = fired.astimezone(services.settings.zone)
    source = (services.settings.schedules_dir / "daily.toml").read_text(encoding="utf-8")
    folder = tmp_path / "schedules"
    folder.mkdir(exist_ok=True)
    cron = f'cron = "{local.minute} {local.hour} * * *"'
    (folder / "daily.toml").write_text(re.sub(r"^cron = .*$", cron, source, flags=re.M), "utf-8")
    cfg = services.settings.model_copy(update={"schedules_dir": folder})
    return Services(cfg, services.factory, clock=services.clock), fired
