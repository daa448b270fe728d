"""Double opt-in, formats and privacy-first tracking, end to end: confirmation
mail through a real SMTP server, its link opened over real HTTP, tracked links
followed through the running app."""

from __future__ import annotations

import email
import email.policy
import re
import time
from datetime import date
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from digest import store
from digest.audience.confirm import Invitations
from digest.audience.rows import Row
from digest.audience.subscribers import SubscriberBook
from digest.capture import CaptureServer
from digest.config import parse_smtp_url
from digest.models import (
    Delivery,
    EditionLink,
    Event,
    EventKind,
    Subscriber,
    SubscriberStatus,
)
from digest.send import SmtpConnection, run_async
from digest.tokens import LinkSigner
from digest.wiring import Services
from tests.support.web import confirm_link, fetch, html_of

NEWCOMER = "novichok@example.ru"


def book(services: Services) -> SubscriberBook:
    return SubscriberBook(services.factory, double_opt_in=True)


def invite(services: Services, server: CaptureServer) -> list[str]:
    mailing_list = services.tools.mailing_list(services.schedule("daily"))
    subscribers = book(services).to_invite(mailing_list.confirm_days, again=False)
    connection = SmtpConnection(parse_smtp_url(server.url), 10)
    report = run_async(
        services.tools.letter(Invitations, mailing_list).send(
            book(services), subscribers, connection, None
        )
    )
    assert not report.failed
    return report.sent


def parsed(server: CaptureServer, index: int = -1) -> EmailMessage:
    message = email.message_from_bytes(server.messages[index].data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def subscriber(services: Services, address: str) -> Subscriber:
    with services.factory() as session:
        found = session.scalar(select(Subscriber).where(Subscriber.email == address))
        assert found is not None
        return found


def test_a_pending_subscriber_confirms_by_the_link_in_their_mail(
    served: tuple[Services, str], smtp_server: CaptureServer
) -> None:
    services, base = served
    assert book(services).add(Row.parse({"email": NEWCOMER, "name": "Новичок"})) == "added"
    assert subscriber(services, NEWCOMER).status is SubscriberStatus.PENDING
    # Pending: no delivery row when an edition starts sending.
    schedule = services.schedule("daily")
    edition = services.editions.build(schedule, date(2026, 11, 25))
    services.lifecycle.start_sending(schedule, edition)
    with services.factory() as session:
        pending_id = subscriber(services, NEWCOMER).id
        assert not session.scalar(select(func.count()).where(Delivery.subscriber_id == pending_id))

    assert invite(services, smtp_server) == [NEWCOMER]
    assert invite(services, smtp_server) == []  # not twice while the link works
    message = parsed(smtp_server)
    assert "Подтвердите подписку" in str(message["Subject"])
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html_part = message.get_body(("html",))
    assert html_part is not None and "/confirm/" in str(html_part.get_content())
    link = confirm_link(message)
    # The link carries the random key, its time and a signature: no id, no address.
    payload = urlsplit(link).path.rsplit("/", 1)[1].split(".")[0]
    assert NEWCOMER not in link and payload == subscriber(services, NEWCOMER).token_key

    # Link scanners (Safe Links and the like) fetch every link with GET and HEAD:
    # neither confirms, and the scanner's IP and UA are never the proof of consent.
    path = base + urlsplit(link).path
    scanner = {"User-Agent": "SafeLinksScanner/2.0"}
    assert fetch(path, headers=scanner, method="HEAD")[0] == 200
    status, _, page = fetch(path, headers=scanner)
    assert status == 200 and "<button" in page and 'method="post"' in page
    assert subscriber(services, NEWCOMER).status is SubscriberStatus.PENDING
    # The reader presses the button: the POST confirms.
    status, _, page = fetch(path, b"confirm=1", headers={"User-Agent": "TestBrowser/1.0"})
    assert status == 200 and "Подписка подтверждена" in page
    confirmed = subscriber(services, NEWCOMER)
    assert confirmed.status is SubscriberStatus.ACTIVE and confirmed.confirmed_at is not None
    with services.factory() as session:
        proof = session.scalars(select(Event).where(Event.kind == EventKind.CONFIRM)).one()
    assert proof.detail == {"ip": "127.0.0.1", "user_agent": "TestBrowser/1.0"}
    # Confirming again changes nothing and still answers kindly.
    assert fetch(path, b"confirm=1")[0] == 200
    # Now active: the next start of the send gives them their delivery.
    assert services.lifecycle.start_sending(schedule, edition) == 1


def test_an_expired_or_forged_confirmation_link_gets_a_clear_page(
    served: tuple[Services, str],
) -> None:
    services, base = served
    book(services).add(Row.parse({"email": NEWCOMER}))
    key = subscriber(services, NEWCOMER).token_key
    signer = LinkSigner(services.settings.link_key(), "daily")
    days = services.tools.mailing_list(services.schedule("daily")).confirm_days
    # A link signed confirm_days and a minute ago (the signer's clock, moved back).
    signer.confirm._signer.get_timestamp = lambda: int(time.time()) - days * 86400 - 60  # type: ignore[method-assign]
    old = signer.confirm.sign(key)
    status, _, page = fetch(f"{base}/confirm/{old}")
    assert status == 410 and "устарела" in page
    for bad in (old[:-2] + "xx", "nonsense", "a" * 400):
        status, _, page = fetch(f"{base}/confirm/{bad}")
        assert status == 400 and "Ссылка не работает" in page
    assert subscriber(services, NEWCOMER).status is SubscriberStatus.PENDING


def test_text_only_readers_get_a_text_plain_message_from_a_shared_variant(
    served: tuple[Services, str],
) -> None:
    services, _ = served
    reader = "reader00002@mail.example.ru"
    key = subscriber(services, reader).token_key
    assert book(services).set_preferences(key, [], "daily", "", "text")
    schedule = services.schedule("daily")
    edition = services.editions.build(schedule, date(2026, 11, 25))
    message = email.message_from_bytes(
        services.previews.preview(schedule, edition, reader).data, policy=email.policy.default
    )
    assert message.get_content_type() == "text/plain"
    assert "Отписаться" in message.get_content()
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    with services.factory() as session:
        keys = [v.key for v in store.variants(session, edition.id)]
    assert keys.count("|text") == 1  # one variant for every text-only reader


TRACKED = {"track_clicks": True, "track_opens": True}


def events(services: Services, kind: EventKind) -> list[Event]:
    with services.factory() as session:
        return list(session.scalars(select(Event).where(Event.kind == kind)))


def test_tracking_is_off_unless_the_list_turns_it_on(served: tuple[Services, str]) -> None:
    services, _ = served
    body = html_of(services, "reader00001@example.com")
    assert "/c/" not in body and "/o/" not in body


@pytest.mark.parametrize("list_settings", [TRACKED])
def test_clicks_redirect_only_to_links_of_the_edition_and_count_per_edition(
    served: tuple[Services, str], list_settings: dict[str, Any]
) -> None:
    services, base = served
    body = html_of(services, "reader00001@example.com")
    tracked = re.findall(r'href="(https://digest[^"]+/c/[^"]+)"', body)
    assert tracked, "no tracked links"
    assert services.tools.placeholders.stem not in body
    assert tracked == [t for t in tracked if t.count("/") == 4]
    with services.factory() as session:
        links = {row.url for row in session.scalars(select(EditionLink))}
    status, location, _ = fetch(base + urlsplit(tracked[0]).path)
    assert status == 302 and location in links
    clicks = events(services, EventKind.CLICK)
    assert len(clicks) == 1 and clicks[0].subscriber_id is None  # per edition only
    assert clicks[0].edition_id is not None and clicks[0].detail == {"url": location}
    # A forged token, or a real one with another URL glued on, redirects nowhere.
    for bad in ("/c/1.forged", urlsplit(tracked[0]).path + "x", "/c/https%3A%2F%2Fevil.example"):
        status, location, _ = fetch(base + bad)
        assert status in (400, 404) and location == base + bad  # no Location anywhere
    pixel = re.search(r'src="https://digest[^"]+(/o/[^"]+)"', body)
    assert pixel is not None
    assert fetch(base + pixel.group(1))[0] == 200
    assert len(events(services, EventKind.OPEN)) == 1
    with services.factory() as session:
        counts = store.engagement(session, clicks[0].edition_id)
    assert counts == {"opens": 1, "clicks": 1, "readers_opened": 0, "readers_clicked": 0}


@pytest.mark.parametrize("list_settings", [{**TRACKED, "individual_tracking": True}])
def test_individual_tracking_names_the_reader_with_a_signed_token(
    served: tuple[Services, str], list_settings: dict[str, Any]
) -> None:
    services, base = served
    who = "reader00004@example.org"
    body = html_of(services, who)
    tracked = re.findall(r'href="https://digest[^"]+(/c/[^"/]+/[^"/]+)"', body)
    assert tracked and services.tools.placeholders.stem not in body
    assert fetch(base + tracked[0])[0] == 302
    # A reader token that does not check out still redirects, counted anonymously.
    assert fetch(base + tracked[0] + "x")[0] == 302
    clicks = events(services, EventKind.CLICK)
    assert [c.subscriber_id for c in clicks] == [subscriber(services, who).id, None]


def test_a_new_subscriber_gets_the_lists_default_sections(services: Services) -> None:
    defaults = SubscriberBook(services.factory, double_opt_in=False, default_sections=["Флот"])
    assert defaults.add(Row.parse({"email": "a@example.ru"})) == "added"
    assert defaults.add(Row.parse({"email": "b@example.ru", "sections": "армия"})) == "added"
    assert subscriber(services, "a@example.ru").sections == "флот"
    assert subscriber(services, "b@example.ru").sections == "армия"  # their own choice wins
