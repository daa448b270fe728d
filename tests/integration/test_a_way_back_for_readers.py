"""A way back for a reader who unsubscribed by mistake (issue 28 §2), over real
HTTP and a real SMTP server: the goodbye page's undo, bound to that unsubscribe
and good for a week; the subscription box again, with a fresh double opt-in and
the consent recorded anew; and what stays shut (an old confirmation link, an
undo replayed later, a hard bounce or a complaint)."""

from __future__ import annotations

import email
import email.policy
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from urllib.parse import urlencode, urlsplit

import pytest
from sqlalchemy import select, update

from digest import demo
from digest.audience.signup import CONSENT_VERSION
from digest.capture import CaptureServer
from digest.models import Event, Subscriber, SubscriberStatus
from digest.web.app import WebContext, create_app
from digest.wiring import Services
from tests.support.common import FIXED_NOW
from tests.support.demo_data import load_demo_articles
from tests.support.serving import reserved_port, serving
from tests.support.web import confirm_link, fetch

PAGE = "https://vpk.example.ru/news/2026/11/25/7.html"
SITE = {"Origin": "https://vpk.example.ru", "Referer": PAGE}


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Site:
    services: Services
    base: str
    clock: Clock
    relay: CaptureServer


@pytest.fixture
def site(services: Services, fixed_date: date, smtp_server: CaptureServer) -> Iterator[Site]:
    clock = Clock(FIXED_NOW)
    port = reserved_port()
    base = f"http://127.0.0.1:{port}"
    cfg = services.settings.model_copy(update={"smtp_url": smtp_server.url, "base_url": base})
    services = Services(cfg, services.factory, clock=clock)
    load_demo_articles(services.factory, services.schedule("daily"), fixed_date)
    demo.add_subscribers(services.factory, 3, now=FIXED_NOW)
    with serving(create_app(WebContext(cfg, services.factory, clock=clock)), port):
        yield Site(services, base, clock, smtp_server)


def reader(site: Site, address: str) -> Subscriber:
    with site.services.factory() as session:
        found = session.scalar(select(Subscriber).where(Subscriber.email == address))
        assert found is not None
        return found


def events(site: Site, address: str, kind: str) -> list[dict[str, object]]:
    with site.services.factory() as session:
        rows = session.scalars(
            select(Event).where(Event.subscriber_id == reader(site, address).id, Event.kind == kind)
        )
        return [e.detail or {} for e in rows]


def unsubscribe_path(site: Site, address: str) -> str:
    signer = site.services.tools.keyring().for_list("daily")
    return "/u/" + signer.unsubscribe.sign(reader(site, address).token_key)


def leave(site: Site, path: str) -> str:
    """The reader presses «Отписаться» on the page: the goodbye page."""
    status, _, page = fetch(site.base + path, b"via=page", own(site))
    assert status == 200 and "Вы отписаны" in page
    return page


def undo_of(page: str) -> str | None:
    found = re.search(r'name="undo" value="([^"]+)"', page)
    return found.group(1) if found else None


def own(site: Site) -> dict[str, str]:
    """A browser's headers on our own pages (the Origin is this server)."""
    return {"Origin": site.base}


def undo(
    site: Site, path: str, token: str, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    data = urlencode({"undo": token}).encode()
    status, _, page = fetch(site.base + path + "/undo", data, headers or own(site))
    return status, page


def ask(site: Site, address: str) -> None:
    """The subscription box, as the site's page posts it."""
    fields = urlencode({"email": address, "website": "", "list": "daily"}).encode()
    status, _, page = fetch(site.base + "/subscribe", fields, SITE)
    assert status == 200 and "Мы отправили письмо для подтверждения" in page


def mails(site: Site, address: str, count: int) -> list[EmailMessage]:
    """The confirmations to ``address``, once ``count`` of them came (the drain sends
    them after the answer)."""
    deadline = time.monotonic() + 15
    while True:
        found = [
            email.message_from_bytes(m.data, policy=email.policy.default)
            for m in site.relay.messages
            if m.rcpt_to == (address,)
        ]
        if len(found) >= count:
            return found  # type: ignore[return-value]
        assert time.monotonic() < deadline, f"{len(found)} of {count} mails came"
        time.sleep(0.02)


def confirm(site: Site, link: str) -> tuple[int, str]:
    status, _, page = fetch(link, b"confirm=1", own(site))
    return status, page


def test_the_goodbye_page_undoes_that_unsubscribe_for_a_week_and_no_other(site: Site) -> None:
    who = "reader00001@" + demo.DOMAINS[1]
    path = unsubscribe_path(site, who)
    token = undo_of(leave(site, path))
    assert token is not None, "the goodbye page offers no way back"
    assert undo(site, path, token, {"Origin": "https://evil.example"})[0] == 400  # cross-site
    assert reader(site, who).status is SubscriberStatus.UNSUBSCRIBED
    status, page = undo(site, path, token)
    assert status == 200 and "Подписка возвращена" in page
    assert reader(site, who).status is SubscriberStatus.ACTIVE
    assert events(site, who, "resubscribe")[0]["how"] == "undo"
    assert undo(site, path, token)[0] == 200  # a second press: still back, nothing new
    # That undo was for that unsubscribe: after the next one it brings nobody back.
    site.clock.now += timedelta(minutes=5)
    later = undo_of(leave(site, path))
    assert later is not None and undo(site, path, token)[0] == 410
    assert reader(site, who).status is SubscriberStatus.UNSUBSCRIBED
    # Whoever posts the letter's link again later is offered no undo.
    site.clock.now += timedelta(minutes=2)
    assert undo_of(leave(site, path)) is None
    # A week on, the page's own undo is spent.
    site.clock.now += timedelta(days=7)
    status, page = undo(site, path, later)
    assert status == 410 and "подпишитесь на сайте" in page
    assert reader(site, who).status is SubscriberStatus.UNSUBSCRIBED
    assert undo(site, path, "forged.token")[0] == 410
    assert undo(site, "/u/not-a-token", later)[0] == 400


def test_a_reader_who_left_comes_back_through_the_box_with_a_fresh_opt_in(site: Site) -> None:
    """Issue 28 §2: a reader who unsubscribed minutes after confirming got "accepted"
    from the box and no mail (the once-an-hour rule met them)."""
    who = "vernus@example.ru"
    ask(site, who)
    (first,) = mails(site, who, 1)
    assert confirm(site, confirm_link(first))[0] == 200
    assert reader(site, who).status is SubscriberStatus.ACTIVE
    site.clock.now += timedelta(minutes=3)
    leave(site, unsubscribe_path(site, who))
    assert confirm(site, confirm_link(first))[0] == 400  # the old link never brings them back
    assert reader(site, who).status is SubscriberStatus.UNSUBSCRIBED
    site.clock.now += timedelta(minutes=2)
    ask(site, "Vernus@Example.RU")
    _, again = mails(site, who, 2)
    link = confirm_link(again)
    assert fetch(link)[0] == 200  # a GET (a mail scanner) confirms nothing
    assert reader(site, who).status is SubscriberStatus.UNSUBSCRIBED
    site.clock.now += timedelta(minutes=1)
    assert confirm(site, link)[0] == 200
    back = reader(site, who)
    assert back.status is SubscriberStatus.ACTIVE and back.unsubscribed_at is None
    assert back.consent_at == back.confirmed_at == site.clock.now  # consent recorded anew
    assert (back.consent_version, back.consent_page) == (CONSENT_VERSION, PAGE)
    (returned,) = events(site, who, "resubscribe")
    assert returned["how"] == "confirmed" and returned["before"]["at"] == FIXED_NOW.isoformat()  # type: ignore[index]
    assert events(site, who, "asked_again")[0]["page"] == PAGE
    # Left again: the last confirmation is spent with the unsubscribe it answered.
    site.clock.now += timedelta(minutes=1)
    leave(site, unsubscribe_path(site, who))
    assert confirm(site, link)[0] == 400


@pytest.mark.parametrize("closed", [SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED])
def test_a_hard_bounce_or_a_complaint_stays_shut_to_the_box(
    site: Site, closed: SubscriberStatus
) -> None:
    who = "reader00002@" + demo.DOMAINS[2]
    with site.services.factory.begin() as session:
        session.execute(update(Subscriber).where(Subscriber.email == who).values(status=closed))
    ask(site, who)
    ask(site, "marker@example.ru")  # drained in order: once its mail came, all were
    mails(site, "marker@example.ru", 1)
    assert not [m for m in site.relay.messages if m.rcpt_to == (who,)]
    assert reader(site, who).status is closed
    assert urlsplit(unsubscribe_path(site, who)).path  # the reader is still there, unchanged
