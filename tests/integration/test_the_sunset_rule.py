"""The sunset rule (issue 28 §5): off by default; with DIGEST_SUNSET_AFTER a reader
who was sent mail and clicked nothing for that long gets one «still reading?»
letter (through a real SMTP server), and is paused if it goes unanswered past the
grace days; the letter's button (real HTTP) keeps them or brings them back, and
never brings back one who left. It refuses to run where silence means nothing:
no per-reader clicks, or too short a history of them. SQLite and PostgreSQL."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from digest import demo
from digest.audience.sunset import SunsetRefused
from digest.capture import CaptureServer
from digest.models import Delivery, Event, EventKind, Subscriber, SubscriberStatus
from digest.send import run_async
from digest.web.app import WebContext, create_app
from digest.wiring import Services
from tests.support.common import FIXED_NOW
from tests.support.demo_data import load_demo_articles
from tests.support.serving import reserved_port, serving
from tests.support.smtp import send_through
from tests.support.web import Clock, fetch

TRACKED = {"track_clicks": True, "individual_tracking": True}
T0 = FIXED_NOW  # the edition went out then
LONG_AGO = T0 - timedelta(days=300)


def reader(n: int) -> str:
    return demo.reader_address(n)


@pytest.fixture
def sunset(
    web_pipeline: Services, smtp_server: CaptureServer, fixed_date: Any
) -> Iterator[tuple[Services, Clock, str]]:
    """Six readers who joined 300 days ago and were sent the edition at T0; the
    rule at six months with a 14-day grace; the app served; the clock a day on."""
    services = web_pipeline
    load_demo_articles(services.factory, services.schedule("daily"), fixed_date)
    demo.add_subscribers(services.factory, 6, now=T0)
    send_through(
        services, services.editions.build(services.schedule("daily"), fixed_date), smtp_server.url
    )
    smtp_server.handler.messages.clear()
    with services.factory() as session:
        session.execute(update(Subscriber).values(created_at=LONG_AGO, confirmed_at=LONG_AGO))
        session.commit()
    clock = Clock()
    clock.now = T0 + timedelta(days=1)
    port = reserved_port()
    cfg = services.settings.model_copy(
        update={
            "smtp_url": smtp_server.url,
            "sunset_after": 6,
            "sunset_grace_days": 14,
            "base_url": f"http://127.0.0.1:{port}",
        }
    )
    app = create_app(WebContext(cfg, services.factory, clock=clock))
    with serving(app, port) as base:
        yield Services(cfg, services.factory, clock=clock), clock, base


def ids(services: Services) -> dict[str, int]:
    with services.factory() as session:
        return {e: i for i, e in session.execute(select(Subscriber.id, Subscriber.email))}


def add_event(services: Services, who: str, kind: EventKind, days_before_t0: int) -> None:
    with services.factory() as session:
        session.add(
            Event(
                subscriber_id=ids(services)[who], kind=kind, at=T0 - timedelta(days=days_before_t0)
            )
        )
        session.commit()


def status(services: Services, who: str) -> SubscriberStatus:
    with services.factory() as session:
        found = session.scalar(select(Subscriber.status).where(Subscriber.email == who))
    assert found is not None
    return found


def letters(server: CaptureServer) -> dict[str, email.message.EmailMessage]:
    out = {}
    for captured in server.handler.messages:
        message = email.message_from_bytes(captured.data, policy=email.policy.default)
        out[captured.rcpt_to[0]] = message  # type: ignore[assignment]
    return out


def keep_link(message: email.message.EmailMessage) -> str:
    text = message.get_body(("plain",))
    assert text is not None
    found = re.search(r"https?://\S+/keep/\S+", str(text.get_content()))
    assert found, "no keep link in the letter"
    return found.group(0)


@pytest.mark.parametrize("list_settings", [TRACKED])
def test_silent_readers_are_asked_once_then_paused_and_the_button_brings_them_back(
    sunset: tuple[Services, Clock, str], smtp_server: CaptureServer, list_settings: dict[str, Any]
) -> None:
    services, clock, base = sunset
    clicker, asked_silent, asked_answered, never_mailed = reader(2), reader(3), reader(4), reader(5)
    add_event(services, clicker, EventKind.CLICK, 250)  # clicks told apart since 250 days
    add_event(services, clicker, EventKind.CLICK, 20)
    add_event(services, asked_silent, EventKind.REENGAGE, 20)
    add_event(services, asked_answered, EventKind.REENGAGE, 20)
    add_event(services, asked_answered, EventKind.CLICK, 10)
    with services.factory() as session:
        session.execute(
            update(Delivery)
            .where(Delivery.subscriber_id == ids(services)[never_mailed])
            .values(sent_at=LONG_AGO)
        )
        session.commit()

    dry = run_async(services.sunset.run("daily", dry_run=True))
    assert (
        not smtp_server.handler.messages
        and status(services, asked_silent) is SubscriberStatus.ACTIVE
    )
    report = run_async(services.sunset.run("daily"))
    assert (dry.asked, dry.paused) == (report.asked, report.paused)
    silent = sorted({reader(1), reader(6)})
    assert sorted(report.asked) == silent and report.paused == [asked_silent]
    assert status(services, asked_silent) is SubscriberStatus.PAUSED
    sent = letters(smtp_server)
    assert sorted(sent) == silent
    assert sent[reader(1)]["Subject"] == "Вы ещё читаете рассылку «Новости ВПК»?"
    assert sent[reader(1)]["List-Unsubscribe"]  # leaving stays one click away

    # Asked once: a second run the next day asks nobody again and pauses nobody.
    clock.now += timedelta(days=1)
    again = run_async(services.sunset.run("daily"))
    assert (again.asked, again.paused) == ([], [])
    # The button: a GET (a mail scanner) changes nothing; the POST keeps reader 1.
    link = keep_link(sent[reader(1)])
    path = link.split("://", 1)[1].split("/", 1)[1]
    status_code, _, body = fetch(f"{base}/{path}")
    assert status_code == 200 and "Да, присылайте" in body
    assert (
        fetch(f"{base}/{path}", data=b"keep=1", headers={"Origin": "https://evil.example"})[0]
        == 400
    )
    assert fetch(f"{base}/{path}", data=b"keep=1")[0] == 200
    # Past the grace days reader 6, who never answered, is paused; reader 1 is not.
    clock.now += timedelta(days=14)
    late = run_async(services.sunset.run("daily"))
    assert late.paused == [reader(6)] and status(services, reader(1)) is SubscriberStatus.ACTIVE
    # A paused reader is left out of the next edition, and comes back by the button.
    next_day = clock.now.date()
    load_demo_articles(services.factory, services.schedule("daily"), next_day)
    tomorrow = services.editions.build(services.schedule("daily"), next_day)
    services.lifecycle.start_sending(services.schedule("daily"), tomorrow)
    with services.factory() as session:
        queued = set(
            session.scalars(
                select(Delivery.subscriber_id).where(Delivery.edition_id == tomorrow.id)
            )
        )
    assert ids(services)[reader(6)] not in queued and ids(services)[reader(1)] in queued
    six = keep_link(sent[reader(6)]).split("://", 1)[1].split("/", 1)[1]
    assert fetch(f"{base}/{six}", data=b"keep=1")[0] == 200
    assert status(services, reader(6)) is SubscriberStatus.ACTIVE
    with services.factory() as session:
        kept = session.scalars(select(Event.detail).where(Event.kind == EventKind.KEEP)).all()
    assert [k["was"] for k in kept if k] == ["active", "paused"]


@pytest.mark.parametrize("list_settings", [TRACKED])
def test_the_button_never_brings_back_a_reader_who_left_and_a_forged_one_does_nothing(
    sunset: tuple[Services, Clock, str], smtp_server: CaptureServer, list_settings: dict[str, Any]
) -> None:
    services, _, base = sunset
    add_event(services, reader(2), EventKind.CLICK, 250)
    run_async(services.sunset.run("daily"))
    link = keep_link(letters(smtp_server)[reader(1)]).split("://", 1)[1].split("/", 1)[1]
    assert services.support("daily").book().remove(reader(1))
    assert fetch(f"{base}/{link}", data=b"keep=1")[0] == 410
    assert status(services, reader(1)) is SubscriberStatus.UNSUBSCRIBED
    assert fetch(f"{base}/{link}x", data=b"keep=1")[0] == 400


@pytest.mark.parametrize(
    ("list_settings", "history_days", "said"),
    [
        ({"track_clicks": True}, 250, "does not tell readers' clicks apart"),
        (TRACKED, 30, "counted only since"),
        (TRACKED, None, "counted not yet"),
    ],
)
def test_the_rule_refuses_where_silence_means_nothing(
    sunset: tuple[Services, Clock, str],
    smtp_server: CaptureServer,
    list_settings: dict[str, Any],
    history_days: int | None,
    said: str,
) -> None:
    services, _, _ = sunset
    if history_days is not None:
        add_event(services, reader(2), EventKind.CLICK, history_days)
    with pytest.raises(SunsetRefused, match=said):
        run_async(services.sunset.run("daily"))
    assert not smtp_server.handler.messages
    assert {status(services, reader(n)) for n in range(1, 7)} == {SubscriberStatus.ACTIVE}


def test_the_rule_is_off_by_default(services: Services) -> None:
    assert not services.sunset.on
    with pytest.raises(SunsetRefused, match="off"):
        run_async(services.sunset.run("daily"))


@pytest.mark.parametrize("months", [0, 6])
def test_the_scheduler_runs_the_rule_daily_only_when_it_is_on(
    services: Services, months: int
) -> None:
    from digest.schedule.files import load_schedules

    cfg = services.settings.model_copy(update={"sunset_after": months})
    wired = Services(cfg, services.factory, clock=services.clock)
    scheduler = wired.scheduling.build(load_schedules(cfg.schedules_dir, cfg.timezone))
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert ("sunset:daily" in jobs) is bool(months)
    assert {"send:daily", "prepare:daily", "send:weekly"} <= set(jobs)
    if months:
        assert "hour='10'" in str(jobs["sunset:daily"].trigger)
