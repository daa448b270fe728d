"""Engagement at a glance (issue 28 §5): with tracking on, an edition's delivery
page shows its opens, its clicks per article (by title, most clicked first), a
sent/total bar and the per-minute chart in the schedule's zone; the list's
growth and churn per week is a chart and a table. Real readers' messages from
a real SMTP server, their links followed over real HTTP, the pages in Chromium
at 375 and 1280 px, on SQLite and PostgreSQL."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from digest.capture import CaptureServer
from digest.models import Article, EditionLink, Event, EventKind, Subscriber, SubscriberStatus
from digest.wiring import Services
from tests.support.web import fetch, log_in

if TYPE_CHECKING:
    from playwright.sync_api import Browser

TRACKED = {"track_clicks": True, "track_opens": True, "individual_tracking": True}


def tracked_links(
    server: CaptureServer, who: str, kind: str = "href", mark: str = "c"
) -> list[str]:
    """The tracked links (or with ``src``/``o``, the open pixel) in ``who``'s letter,
    the lead's first, as paths."""
    for captured in server.handler.messages:
        if who in captured.rcpt_to:
            message = email.message_from_bytes(captured.data, policy=email.policy.default)
            body = message.get_body(("html",))
            assert body is not None
            found = re.findall(
                rf'{kind}="(http://127\.0\.0\.1:\d+/{mark}/[^"]+)"', str(body.get_content())
            )
            return [urlsplit(link).path for link in found]
    raise AssertionError(f"no letter to {who}")


def article_links(services: Services, paths: list[str]) -> list[str]:
    """Of a letter's tracked links, those that lead to an article (not the site's
    masthead or footer): read from the signed token, without clicking."""
    signer = services.tools.link_signer(services.tools.mailing_list(services.schedule("daily")))
    with services.factory() as session:
        urls = {i: u for i, u in session.execute(select(EditionLink.id, EditionLink.url))}
        articles = set(session.scalars(select(Article.url)))
    seen: dict[str, str] = {}  # an article linked twice (picture, title): its first link
    for path in paths:
        url = urls[signer.click.verify(path.split("/")[2])]
        if url in articles:
            seen.setdefault(url, path)
    return list(seen.values())


def redirect_target(base: str, path: str) -> str:
    status, location, _ = fetch(base + path)
    assert status == 302, (path, status)
    return location


def article_title(services: Services, url: str) -> str:
    with services.factory() as session:
        title = session.scalar(select(Article.title).where(Article.url == url))
    assert title, url
    return title


@pytest.mark.parametrize("list_settings", [TRACKED])
@pytest.mark.parametrize("width", [375, 1280])
def test_the_delivery_page_shows_clicks_per_article_the_sent_bar_and_local_minutes(
    browser: Browser,
    desk: tuple[Services, str],
    smtp_server: CaptureServer,
    list_settings: dict[str, Any],
    width: int,
) -> None:
    services, base = desk
    readers = sorted({r for m in smtp_server.handler.messages for r in m.rcpt_to})
    first, second = readers[0], readers[1]
    # Two readers click the same article, one of them a second one too, once more
    # on the first: 4 clicks, the first article read by two.
    links_a = article_links(services, tracked_links(smtp_server, first))
    links_b = article_links(services, tracked_links(smtp_server, second))
    top = redirect_target(base, links_a[0])
    assert redirect_target(base, links_b[0]) == top
    redirect_target(base, links_a[0])
    other = redirect_target(base, links_a[1])
    assert other != top
    [pixel] = tracked_links(smtp_server, second, "src", "o")
    assert fetch(base + pixel)[0] == 200

    page = browser.new_page(viewport={"width": width, "height": 900})
    log_in(page, base)
    page.wait_for_url(re.compile(r"/desk/$"))
    with services.factory() as session:
        edition_id = session.scalar(select(Event.edition_id).where(Event.kind == EventKind.CLICK))
    page.goto(f"{base}/desk/editions/{edition_id}/delivery")
    rows = page.locator("#clicks tr").all_inner_texts()[1:]
    cells = [re.split(r"\t", row) for row in rows]
    assert cells[0] == [article_title(services, top), "3", "2"], cells
    assert cells[1] == [article_title(services, other), "1", "1"], cells
    said = page.locator("#engagement").inner_text()
    assert "Открытий: 1 (читателей: 1)" in said and "Кликов: 4 (читателей: 2)" in said
    # Six readers, one refused by its server: five of six sent, 83 %.
    assert page.locator("#sent-words").inner_text() == "Отправлено 5 из 6"
    assert page.locator(".bar").get_attribute("aria-valuenow") == "83"
    # The chart's minutes in Moscow (FIXED_NOW is 08:00 UTC: 11:00 there).
    minutes = page.locator("#chart rect title").all_text_contents()
    assert minutes and all(m.startswith("11:") for m in minutes), minutes
    assert "Europe/Moscow" in page.locator("h2", has_text="Писем в минуту").inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.close()


def test_without_tracking_the_page_says_so(browser: Browser, desk: tuple[Services, str]) -> None:
    _, base = desk
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(page, base)
    page.wait_for_url(re.compile(r"/desk/$"))
    page.goto(f"{base}/desk/")
    page.get_by_role("link", name="Доставка").first.click()
    said = page.locator("#engagement").inner_text()
    assert "не считает открытия и клики" in said
    assert page.locator("#clicks").count() == 0
    page.close()


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


def add_history(services: Services) -> None:
    """Three weeks before the fixture's own (Monday 23.11.2026): sign-ups on the 10th
    (two confirmed on the 11th), an unsubscribe on the 17th, a bounce and a
    complaint on the 18th, and a Sunday-night unsubscribe that belongs to the 16th's week."""
    with services.factory() as session:
        people = [
            Subscriber(
                email=f"old{n}@example.ru",
                token_key=f"growth-token-{n}",
                status=SubscriberStatus.ACTIVE if n < 2 else SubscriberStatus.PENDING,
                created_at=at(10),
                confirmed_at=at(11) if n < 2 else None,
            )
            for n in range(3)
        ]
        session.add_all(people)
        session.flush()
        session.add_all(
            [
                Event(kind=EventKind.UNSUBSCRIBE, subscriber_id=people[0].id, at=at(17)),
                Event(kind=EventKind.BOUNCE, subscriber_id=people[1].id, at=at(18)),
                Event(kind=EventKind.COMPLAINT, subscriber_id=people[1].id, at=at(18)),
                Event(kind=EventKind.UNSUBSCRIBE, subscriber_id=people[2].id, at=at(22, 23)),
            ]
        )
        session.commit()


@pytest.mark.parametrize("width", [375, 1280])
def test_growth_and_churn_per_week_as_a_chart_and_a_table(
    browser: Browser, desk: tuple[Services, str], width: int
) -> None:
    services, base = desk
    add_history(services)
    page = browser.new_page(viewport={"width": width, "height": 900})
    log_in(page, base)
    page.wait_for_url(re.compile(r"/desk/$"))
    page.get_by_role("link", name="Рост").click()
    page.wait_for_url(re.compile(r"/desk/growth$"))

    def week(monday: str) -> list[str]:
        row = page.locator(f'#growth tr[data-week="{monday}"] td')
        return row.all_inner_texts()[1:]

    # sign-ups, confirmed, unsubscribed, bounces, complaints
    assert week("2026-11-09") == ["3", "2", "0", "0", "0"]
    assert week("2026-11-16") == ["0", "0", "2", "1", "1"]
    with services.factory() as session:
        fixture_readers = len(session.scalars(select(Subscriber.id)).all()) - 3
    assert week("2026-11-23")[0] == str(fixture_readers)
    assert page.locator("#growth tbody tr").count() == 12
    bars = page.locator("#growth-chart rect title").all_text_contents()
    assert "16.11: ушли 4" in bars and "09.11: пришли 2" in bars
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.close()
