"""The site's subscription box (issue 14 §1) over real HTTP, its confirmation mail
through a real SMTP server: double opt-in with the consent evidence, the same
answer whatever the address's state, the honeypot, the limits, the JSON door."""

from __future__ import annotations

import email
import email.policy
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import date
from email.message import EmailMessage
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from digest import demo
from digest.audience.rows import Row
from digest.audience.signup import CONSENT_VERSION, PER_IP_PER_HOUR
from digest.audience.subscribers import SubscriberBook
from digest.capture import CaptureServer, free_port
from digest.models import Subscriber, SubscriberStatus
from digest.web.app import WebContext, create_app
from digest.wiring import Services
from tests.conftest import FIXED_NOW
from tests.integration.test_browser import browser  # noqa: F401 (the fixture)
from tests.integration.test_optin import confirm_link
from tests.serving import serving

if TYPE_CHECKING:
    from playwright.sync_api import Browser

ARTICLE_PAGE = "https://vpk.example.ru/news/2026/11/25/1.html"
DONE = "Мы отправили письмо для подтверждения"


@pytest.fixture
def box(
    pipeline: Services, fixed_date: date, smtp_server: CaptureServer
) -> Iterator[tuple[Services, str]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cfg = pipeline.settings.model_copy(update={"smtp_url": smtp_server.url, "base_url": base})
    pipe = Services(cfg, pipeline.factory, clock=lambda: FIXED_NOW)
    demo.load(pipe.factory, demo.build(pipe.schedule("daily"), fixed_date))
    demo.add_subscribers(pipe.factory, 3, now=FIXED_NOW)
    with serving(create_app(WebContext(cfg, pipe.factory, clock=pipe.clock)), port):
        yield pipe, base


def post(
    base: str, fields: dict[str, str], *, json_body: object = None, referer: str = ARTICLE_PAGE
) -> tuple[int, str]:
    if json_body is not None:
        data = json.dumps(json_body).encode() if not isinstance(json_body, bytes) else json_body
        kind = "application/json"
    else:
        data, kind = urlencode(fields).encode(), "application/x-www-form-urlencoded"
    request = urllib.request.Request(
        f"{base}/subscribe",
        data=data,
        headers={"Content-Type": kind, "Referer": referer, "Origin": "https://vpk.example.ru"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def mails_to(server: CaptureServer, address: str) -> list[EmailMessage]:
    return [
        email.message_from_bytes(m.data, policy=email.policy.default)  # type: ignore[misc]
        for m in server.messages
        if m.rcpt_to == (address,)
    ]


def subscriber(pipe: Services, address: str) -> Subscriber | None:
    with pipe.factory() as session:
        return session.scalar(select(Subscriber).where(Subscriber.email == address))


def test_the_box_subscribes_by_double_opt_in_and_keeps_what_was_agreed_to(
    box: tuple[Services, str], smtp_server: CaptureServer
) -> None:
    pipe, base = box
    status, page = post(base, {"email": " Novaya@Example.RU ", "website": "", "list": "daily"})
    assert status == 200 and DONE in page
    (mail,) = mails_to(smtp_server, "novaya@example.ru")
    link = confirm_link(mail)
    with urllib.request.urlopen(link, timeout=10) as answer:  # a GET confirms nothing
        assert answer.status == 200 and "Подтвердить подписку" in answer.read().decode()
    found = subscriber(pipe, "novaya@example.ru")
    assert found is not None and found.status is SubscriberStatus.PENDING
    confirm = urllib.request.Request(link, data=b"confirm=1")
    with urllib.request.urlopen(confirm, timeout=10) as answer:
        assert answer.status == 200
    found = subscriber(pipe, "novaya@example.ru")
    assert found is not None and found.status is SubscriberStatus.ACTIVE
    assert (found.consent_source, found.consent_version, found.consent_page) == (
        "web form",
        CONSENT_VERSION,
        ARTICLE_PAGE,
    )
    assert found.confirmed_at == FIXED_NOW


def test_the_same_answer_whatever_the_state_and_mail_only_to_who_may_get_it(
    box: tuple[Services, str], smtp_server: CaptureServer
) -> None:
    pipe, base = box
    book = SubscriberBook(pipe.factory, double_opt_in=True, clock=pipe.clock)
    book.add(Row.parse({"email": "ushla@example.ru", "consent_at": FIXED_NOW.isoformat()}))
    book.remove("ushla@example.ru")
    book.add(Row.parse({"email": "zabyt@example.ru"}))
    book.forget("zabyt@example.ru")
    active = "reader00001@" + demo.DOMAINS[1]
    with pipe.factory() as session:
        sections_before = session.scalar(
            select(Subscriber.sections).where(Subscriber.email == active)
        )
    answers = {
        who: post(base, {"email": who, "section": "космос"})
        for who in (active, "ushla@example.ru", "zabyt@example.ru", "nova@example.ru")
    }
    again = post(base, {"email": "nova@example.ru"})  # within the hour: no second mail
    assert {status for status, _ in [*answers.values(), again]} == {200}
    assert all(DONE in page for _, page in [*answers.values(), again])
    assert [m.rcpt_to for m in smtp_server.messages] == [("nova@example.ru",)]
    with pipe.factory() as session:
        unchanged = session.scalar(select(Subscriber.sections).where(Subscriber.email == active))
    assert unchanged == sections_before  # nobody changes another reader's choice
    assert subscriber(pipe, "zabyt@example.ru") is None  # forgotten stays forgotten


def test_a_bot_filling_the_honeypot_gets_the_same_answer_and_nothing_happens(
    box: tuple[Services, str], smtp_server: CaptureServer
) -> None:
    pipe, base = box
    status, page = post(base, {"email": "bot@example.ru", "website": "http://spam.example"})
    assert status == 200 and DONE in page
    assert not smtp_server.messages and subscriber(pipe, "bot@example.ru") is None


def test_one_asker_is_limited_per_hour(box: tuple[Services, str]) -> None:
    _, base = box
    for n in range(PER_IP_PER_HOUR):
        assert post(base, {"email": f"r{n}@example.ru"})[0] == 200
    status, page = post(base, {"email": "one-more@example.ru"})
    assert status == 429 and "Попробуйте через час" in page


def test_the_json_door_and_hostile_bodies(
    box: tuple[Services, str], smtp_server: CaptureServer
) -> None:
    _, base = box
    status, body = post(base, {}, json_body={"email": "json@example.ru", "sections": ["флот"]})
    assert status == 202 and json.loads(body)["status"] == "accepted"
    assert [m.rcpt_to for m in smtp_server.messages] == [("json@example.ru",)]
    for bad in ({"email": "not an address"}, {"email": "x@example.ru", "list": "nope"}, [1, 2]):
        status, body = post(base, {}, json_body=bad)
        assert status == 422 and json.loads(body)["status"] == "bad_address", bad
    status, body = post(base, {}, json_body=b"{not json")
    assert status == 422
    status, page = post(base, {"email": "<script>@x"})
    assert status == 422 and "<script>" not in page


def test_the_standalone_page_has_the_form_the_site_embeds(box: tuple[Services, str]) -> None:
    _, base = box
    with urllib.request.urlopen(f"{base}/subscribe", timeout=10) as answer:
        page = answer.read().decode()
    assert 'action="/subscribe"' in page and 'name="email"' in page and 'type="email"' in page
    assert 'name="website"' in page and 'tabindex="-1"' in page  # the honeypot
    assert "Ежедневная рассылка новостей ВПК на электронный почтовый ящик" in page


def test_a_reader_subscribes_in_chromium_and_confirms_from_the_mail(
    browser: Browser,  # noqa: F811
    box: tuple[Services, str],
    smtp_server: CaptureServer,
) -> None:
    """Fill the box in a real browser, the mail arrives, its link opens, the button
    confirms: the reader is active with the evidence stored."""
    pipe, base = box
    page = browser.new_page()
    page.goto(f"{base}/subscribe")
    page.get_by_label("Ежедневная рассылка новостей ВПК на электронный почтовый ящик").fill(
        "chitatel@example.ru"
    )
    page.get_by_role("button", name="Подписаться").click()
    page.wait_for_selector(f"text={DONE}")
    (mail,) = mails_to(smtp_server, "chitatel@example.ru")
    page.goto(confirm_link(mail))
    page.get_by_role("button", name="Подтвердить подписку").click()
    page.wait_for_selector("text=Подписка подтверждена")
    page.close()
    found = subscriber(pipe, "chitatel@example.ru")
    assert found is not None and found.status is SubscriberStatus.ACTIVE
    assert found.consent_version == CONSENT_VERSION and found.consent_page == f"{base}/subscribe"
