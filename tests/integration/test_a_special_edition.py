"""A special edition (issue 28 §6): an editor makes breaking news from chosen
articles in the desk (Chromium), for every reader of the list or one section's;
it is a draft like any (preview, approval), leaves only approved, and goes
through the same lifecycle and ledger to a real SMTP server. SQLite and
PostgreSQL."""

from __future__ import annotations

import email
import email.policy
import re
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import func, select

from digest.capture import CaptureServer
from digest.config import parse_smtp_url
from digest.edition.special import SpecialOrder
from digest.errors import EditionError
from digest.models import Article, Delivery, Edition, Subscriber, SubscriberStatus
from digest.send import RelayPool, SmtpConnection, run_async
from digest.wiring import Services
from tests.support.common import in_thread
from tests.support.demo_data import load_demo_articles
from tests.support.web import READER, Client, log_in

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

SUBJECT = "Срочно: испытания завершены"


def send_due(services: Services, edition_id: int, url: str) -> None:
    """What a `digest worker` does for the queued edition: send its due deliveries."""
    with services.factory() as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None
        session.expunge(edition)
    run = services.sender.send_run(
        services.schedule(edition.schedule),
        edition,
        lambda t: SmtpConnection(t, 10),
        worker="test",
        relays=RelayPool([parse_smtp_url(url)]),
    )
    in_thread(lambda: run_async(run.run()))


def readers_of(services: Services, section: str | None) -> set[str]:
    """The oracle, in plain Python: active readers who read ``section`` (or all)."""
    with services.factory() as session:
        rows = session.execute(
            select(Subscriber.email, Subscriber.sections).where(
                Subscriber.status == SubscriberStatus.ACTIVE
            )
        ).all()
    return {e for e, s in rows if section is None or not s or section in s.split(",")}


def make_in_the_desk(page: Page, base: str, count: int, section_label: str) -> list[str]:
    """The first ``count`` articles the form offers (the newest), chosen: their titles."""
    page.goto(f"{base}/desk/")
    page.get_by_role("link", name="Срочный выпуск…").click()
    page.wait_for_url(re.compile(r"/desk/special$"))
    boxes = page.locator('input[name="article"]')
    titles = []
    for n in range(count):
        boxes.nth(n).check()
        titles.append(page.locator(f'label[for="{boxes.nth(n).get_attribute("id")}"]').inner_text())
    page.get_by_label("Тема письма").fill(SUBJECT)
    page.get_by_label("Читателям").select_option(label=section_label)
    page.get_by_role("button", name="Составить черновик").click()
    page.wait_for_url(re.compile(r"/desk/editions/\d+$"))
    return titles


@pytest.mark.parametrize("width", [375, 1280])
def test_an_editor_makes_approves_and_sends_breaking_news_to_every_reader(
    browser: Browser, desk: tuple[Services, str], smtp_server: CaptureServer, width: int
) -> None:
    services, base = desk
    page = browser.new_page(viewport={"width": width, "height": 900})
    log_in(page, base)
    page.wait_for_url(re.compile(r"/desk/$"))
    titles = make_in_the_desk(page, base, 2, "всем читателям списка (и ежедневным, и еженедельным)")
    assert "special-1" in page.locator("h1").inner_text()
    assert "всем читателям списка" in page.locator("#special-note").inner_text()
    # The letter is the chosen articles, the first leading, under «Срочный выпуск».
    frame = page.frame_locator("#preview")
    assert "Срочный выпуск" in frame.locator(".masthead").inner_text()
    assert titles[0] in frame.locator(".lead-title").inner_text()
    # A draft has no «Отправить сейчас»: it leaves only approved.
    assert page.get_by_role("button", name="Отправить сейчас").count() == 0
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.get_by_role("button", name="Утвердить", exact=True).click()
    page.get_by_role("button", name="Отправить сейчас").click()
    page.wait_for_url(re.compile(r"/delivery$"))
    edition_id = int(page.url.split("/")[-2])
    expected = readers_of(services, None)
    assert page.locator('[data-count="total"]').inner_text() == str(len(expected))

    before = len(smtp_server.handler.messages)
    send_due(services, edition_id, smtp_server.url)
    letters = smtp_server.handler.messages[before:]
    # The fixture's server refuses READER's mailbox: every other reader has the letter.
    assert {m.rcpt_to[0] for m in letters} == expected - {READER}
    message = email.message_from_bytes(letters[0].data, policy=email.policy.default)
    assert message["Subject"] == SUBJECT
    report = services.reports.of(str(edition_id))
    assert report is not None and report.counts["sent"] == len(expected) - 1
    page.close()


def test_a_section_edition_reaches_only_that_sections_readers_and_a_draft_never_leaves(
    desk: tuple[Services, str], smtp_server: CaptureServer
) -> None:
    services, base = desk
    with services.factory() as session:
        # A reader of «флот» only, and one of other sections: the oracle must tell.
        session.execute(
            Subscriber.__table__.update()
            .where(Subscriber.email.in_(["reader00002@mail.example.ru"]))
            .values(sections="космос")
        )
        session.execute(
            Subscriber.__table__.update()
            .where(Subscriber.email.in_(["reader00003@yandex.example.ru"]))
            .values(sections="армия,флот")
        )
        session.commit()
        ids = list(session.scalars(select(Article.id).limit(2)))
        slugs = ["флот"]
    order = SpecialOrder("daily", tuple(ids), SUBJECT, section=slugs[0])
    edition = services.specials.make(order, "anna")
    assert edition.label.endswith("/special-1")
    second = services.specials.make(SpecialOrder("daily", tuple(ids[:1]), "Ещё"), "anna")
    assert second.label.endswith("/special-2")
    # A draft never leaves, by the desk's POST or the lifecycle.
    client = Client(base)
    assert client.login() == 303
    token = client.csrf(f"/desk/editions/{edition.id}")
    client.request(f"/desk/editions/{edition.id}/send", {"csrf": token})
    with services.factory() as session:
        assert (
            session.scalar(
                select(func.count()).select_from(Delivery).where(Delivery.edition_id == edition.id)
            )
            == 0
        )
    with pytest.raises(EditionError, match=r"wants approval|not approved"):
        services.specials.start(edition.id, "anna")
    services.lifecycle.approve(edition, approved=True)
    added = services.specials.start(edition.id, "anna")
    expected = readers_of(services, "флот")
    assert "reader00002@mail.example.ru" not in expected
    assert "reader00003@yandex.example.ru" in expected
    assert added == len(expected)
    before = len(smtp_server.handler.messages)
    send_due(services, edition.id, smtp_server.url)
    assert {m.rcpt_to[0] for m in smtp_server.handler.messages[before:]} == expected - {READER}


@pytest.mark.parametrize(
    ("ids", "subject", "section", "said"),
    [
        ((), SUBJECT, None, "от одной до"),
        ((10**9,), SUBJECT, None, "нет"),
        (None, "  ", None, "тему"),
        (None, SUBJECT, "нет-такого", "Раздела"),
    ],
)
def test_a_bad_order_is_refused_in_words_and_makes_nothing(
    services: Services, ids: tuple[int, ...] | None, subject: str, section: str | None, said: str
) -> None:
    from datetime import date

    load_demo_articles(services.factory, services.schedule("daily"), date(2026, 11, 25))
    with services.factory() as session:
        real = tuple(session.scalars(select(Article.id).limit(1)))
    order = SpecialOrder("daily", real if ids is None else ids, subject, section=section)
    with pytest.raises(EditionError, match=said):
        services.specials.make(order, "anna")
    with services.factory() as session:
        assert session.scalar(select(func.count()).select_from(Edition)) == 0
