"""The editors' desk in real Chromium (Debian's package, driven by Playwright),
against the app served by uvicorn on 127.0.0.1, sending its test copy through
a real SMTP server. A screenshot of the preview page is kept under var/."""

from __future__ import annotations

import asyncio
import email
import email.policy
import html
import json
import re
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from digest import demo
from digest.capture import CaptureServer
from digest.config import parse_smtp_url
from digest.edition.desk import split_message
from digest.ingest import Ingester, read_jsonl
from digest.models import Article, Delivery, DeliveryStatus, Edition, EditionChange, EditionStatus
from digest.send import SmtpConnection, run_async
from digest.web.app import WebContext, create_app
from digest.wiring import Services
from tests.support.common import FIXED_NOW, PROJECT_ROOT, in_thread
from tests.support.demo_data import load_demo_articles
from tests.support.serving import reserved_port, serving
from tests.support.web import PASSWORD, Client, fetch, log_in

if TYPE_CHECKING:
    from playwright.sync_api import Browser, FrameLocator

TOMORROW = date(2026, 11, 26)


@pytest.fixture
def desk(
    services: Services, smtp_server: CaptureServer, tmp_path: Path
) -> Iterator[tuple[Services, str]]:
    """Tomorrow's draft with demo articles, the app with editors, a real relay."""
    port = reserved_port()
    base = f"http://127.0.0.1:{port}"
    cfg = services.settings.model_copy(
        update={
            "base_url": base,
            "smtp_url": smtp_server.url,
            "editors": SecretStr(f"anna:{PASSWORD}"),
        }
    )
    services = Services(cfg, services.factory, clock=lambda: FIXED_NOW)
    load_demo_articles(services.factory, services.schedule("daily"), TOMORROW)
    demo.add_subscribers(services.factory, 5, now=FIXED_NOW)
    with serving(
        create_app(WebContext(cfg, services.factory, clock=services.clock)), port
    ) as served_base:
        assert served_base == base
        yield services, base


def lead_title(frame: FrameLocator) -> str:
    return frame.locator(".lead-title").inner_text().strip()


def day_titles(frame: FrameLocator) -> list[str]:
    return [t.strip() for t in frame.locator(".item-title").all_inner_texts()]


def test_an_anonymous_visitor_is_sent_to_the_login_page(
    browser: Browser,
    desk: tuple[Services, str],
) -> None:
    _, base = desk
    page = browser.new_page()
    page.goto(f"{base}/desk/")
    assert page.url.startswith(f"{base}/desk/login")
    assert page.get_by_role("button", name="Войти").is_visible()
    # Over plain HTTP too: every desk address asks for a login, and no form works without one.
    for path in ("/desk/editions/1", "/desk/editions/1/frame"):
        status, location, _ = fetch(base + path)
        assert status == 303 and location.startswith("/desk/login")
    assert fetch(base + "/desk/editions/1/approve", b"approved=1")[0] == 303
    page.close()


def test_a_wrong_password_is_refused(browser: Browser, desk: tuple[Services, str]) -> None:
    _, base = desk
    page = browser.new_page()
    log_in(page, base, password="неправильный")
    assert page.get_by_role("alert").inner_text() == "Неверное имя или пароль."
    page.goto(f"{base}/desk/")
    assert page.url.startswith(f"{base}/desk/login")
    page.close()


def test_an_editor_shapes_approves_and_tests_tomorrows_draft(
    browser: Browser,
    desk: tuple[Services, str],
    smtp_server: CaptureServer,
) -> None:
    services, base = desk
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    log_in(page, base)
    assert page.url == f"{base}/desk/"
    page.get_by_role("button", name=re.compile("Подготовить следующий: Ежедневная")).click()
    page.wait_for_url(re.compile(r"/desk/editions/\d+$"))
    assert "daily/2026-11-26" in page.locator("h1").inner_text()
    frame = page.frame_locator("#preview")

    # Desktop and phone.
    iframe = page.locator("#preview")
    assert iframe.evaluate("f => f.clientWidth") == 600
    page.get_by_role("button", name="Телефон (375 px)").click()
    # Polled from here: the desk's policy allows no eval, which wait_for_function uses.
    from playwright.sync_api import expect

    expect(page.locator("#preview")).to_have_attribute("style", "width: 375px;")
    for _ in range(100):  # its width eases to the new one
        if iframe.evaluate("f => f.clientWidth") == 375:
            break
        page.wait_for_timeout(50)
    assert iframe.evaluate("f => f.clientWidth") == 375
    page.get_by_role("button", name="Компьютер (600 px)").click()

    # Pin the last article of the day: it leads the preview.
    before_lead = lead_title(frame)
    rows = page.locator("#items tr[data-article]")
    last = rows.nth(rows.count() - 1)
    pinned_title = last.locator("a").first.inner_text().strip()
    with page.expect_navigation():
        last.get_by_role("button", name="Наверх").click()
    frame = page.frame_locator("#preview")
    assert lead_title(frame) == pinned_title != before_lead
    assert before_lead in day_titles(frame)

    # Drop one: it is gone from the preview.
    dropped_row = page.locator("#items tr[data-article]").nth(2)
    dropped_title = dropped_row.locator("a").first.inner_text().strip()
    with page.expect_navigation():
        dropped_row.get_by_role("button", name="Убрать").click()
    frame = page.frame_locator("#preview")
    assert dropped_title not in day_titles(frame) and lead_title(frame) == pinned_title

    # The intro line, shown in the letter.
    page.get_by_label("Вступление").fill("Главное за день — в одном письме.")
    page.get_by_role("button", name="Сохранить").click()
    page.wait_for_selector("text=Сохранено.")
    assert "Главное за день" in page.frame_locator("#preview").locator(".intro").inner_text()

    screenshot = PROJECT_ROOT / "var" / "desk-preview.png"
    screenshot.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(screenshot))
    assert screenshot.stat().st_size > 10_000

    # Approve, then send a test.
    page.get_by_role("button", name="Утвердить", exact=True).click()
    page.wait_for_selector("text=Утверждено.")
    page.get_by_label("Тестовое письмо на").fill("redaktor@example.ru")
    page.get_by_role("button", name="Отправить тест").click()
    page.wait_for_selector("text=Тестовое письмо отправлено на redaktor@example.ru")
    page.close()

    assert [m.rcpt_to[0] for m in smtp_server.messages] == ["redaktor@example.ru"]
    sent = email.message_from_bytes(smtp_server.messages[0].data, policy=email.policy.default)
    assert str(sent["Subject"]).startswith("[ТЕСТ] ")
    html_part = sent.get_body(("html",))
    assert html_part is not None and pinned_title in str(html_part.get_content())
    with services.factory() as session:
        edition = session.scalar(select(Edition).where(Edition.edition_date == TOMORROW))
        assert edition is not None and edition.status is EditionStatus.APPROVED
        changes = session.scalars(select(EditionChange).order_by(EditionChange.id)).all()
    assert [(c.editor, c.action) for c in changes] == [
        ("anna", "pin"),
        ("anna", "drop"),
        ("anna", "text"),
        ("anna", "approve"),
        ("anna", "test"),
    ]
    # A test copy is not a delivery: no subscriber's counts moved.
    assert services.desk.delivery(edition.id).edition.total == 0


def test_the_archive_shows_a_sent_edition_without_anyones_links(
    desk: tuple[Services, str],
) -> None:
    services, base = desk
    schedule = services.schedule("daily")
    edition = services.editions.build(schedule, TOMORROW)
    html, text, _ = split_message(services.previews.preview(schedule, edition).data)
    link = f"{base}/archive/daily/2026-11-26"
    assert f'href="{link}"' in html and f"Открыть в браузере: {link}" in text
    assert fetch(f"{base}/archive/daily/2026-11-26")[0] == 404  # not sent yet
    with services.factory.begin() as session:
        stored = session.get(Edition, edition.id)
        assert stored is not None
        stored.status = EditionStatus.SENT
    status, _, page = fetch(f"{base}/archive/daily/2026-11-26")
    assert status == 200 and "__" not in page and "/u/" not in page and "/p/" not in page
    assert "Отписаться" not in page and "Выпуск рассылки" in page
    status, _, index = fetch(f"{base}/archive/")
    assert status == 200 and "/archive/daily/2026-11-26" in index
    assert fetch(f"{base}/archive/daily/{TOMORROW + timedelta(days=9)}")[0] == 404


def test_the_delivery_view_counts_live_and_charts_the_send(
    browser: Browser,
    desk: tuple[Services, str],
    smtp_server: CaptureServer,
) -> None:
    services, base = desk
    schedule = services.schedule("daily")
    edition = services.editions.build(schedule, TOMORROW)
    services.lifecycle.start_sending(schedule, edition)
    connect = lambda target: SmtpConnection(parse_smtp_url(smtp_server.url), 10)  # noqa: E731
    # In a thread of its own: Playwright's sync API keeps an event loop in this one.
    in_thread(
        lambda: run_async(
            services.sender.work(connect, worker="t", once=True, stop=asyncio.Event())
        )
    )
    assert len(smtp_server.messages) == 5

    page = browser.new_page()
    log_in(page, base)
    page.goto(f"{base}/desk/editions/{edition.id}/delivery")
    assert page.locator('[data-count="sent"]').inner_text() == "5"
    # Issue 28 §4: the desk's words are Russian (the chips said draft, sent, missed).
    assert page.locator("#status").inner_text() == "отправлен"
    counts = page.locator("#counts").inner_text()
    assert "отправлен\t5" in counts and "sent" not in counts
    assert (
        "писем/с" in page.locator("#progress").inner_text()
        or "—" in page.locator("#progress").inner_text()
    )
    assert "messages/s" not in page.content() and "n/a" not in page.content()
    assert page.locator("#chart rect").count() >= 1
    data = page.request.get(f"{base}/desk/editions/{edition.id}/delivery.json").json()
    assert data["counts"]["sent"] == 5 and sum(m["sent"] for m in data["per_minute"]) == 5

    # A bounce arriving later shows up without reloading the page.
    with services.factory.begin() as session:
        first = session.scalars(select(Delivery).where(Delivery.edition_id == edition.id)).first()
        assert first is not None
        first.status = DeliveryStatus.BOUNCED
    from playwright.sync_api import expect

    expect(page.locator('[data-count="bounces"]')).to_have_text("1", timeout=10_000)
    assert page.locator('[data-count="sent"]').inner_text() == "4"
    page.close()


def test_the_archive_has_a_feed_pages_a_title_and_a_canonical_link(
    desk: tuple[Services, str],
) -> None:
    """Issue 14 §3: /archive/feed.xml (Atom) lists sent editions; the index pages;
    an edition's page has a proper <title> and a canonical link, nobody's links."""
    import urllib.request
    import xml.etree.ElementTree as ET

    services, base = desk
    schedule = services.schedule("daily")
    edition = services.editions.build(schedule, TOMORROW)
    with services.factory.begin() as session:
        stored = session.get(Edition, edition.id)
        assert stored is not None
        stored.status, stored.sent_at = EditionStatus.SENT, FIXED_NOW
        for days in range(1, 36):  # 35 older sent editions (rows only: the index lists them)
            day = TOMORROW - timedelta(days=days)
            session.add(
                Edition(
                    schedule="daily",
                    edition_date=day,
                    window_start=FIXED_NOW - timedelta(days=days + 1),
                    window_end=FIXED_NOW - timedelta(days=days),
                    created_at=FIXED_NOW,
                    sent_at=FIXED_NOW - timedelta(days=days),
                    status=EditionStatus.SENT,
                    subject=f"Выпуск <{day}> & Co",
                )
            )
    with urllib.request.urlopen(f"{base}/archive/feed.xml", timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("application/atom+xml")
        feed = answer.read()
    atom = "{http://www.w3.org/2005/Atom}"
    root = ET.fromstring(feed)
    entries = root.findall(f"{atom}entry")
    assert len(entries) == 36 and root.findtext(f"{atom}title")
    first = entries[0]
    assert first.findtext(f"{atom}id") == f"{base}/archive/daily/2026-11-26"
    assert first.find(f"{atom}link").get("href") == f"{base}/archive/daily/2026-11-26"  # type: ignore[union-attr]
    assert entries[1].findtext(f"{atom}title") == "Выпуск <2026-11-25> & Co"  # escaped, whole
    status, _, page_one = fetch(f"{base}/archive/")
    assert status == 200 and page_one.count('href="/archive/daily/') == 30
    assert 'href="/archive/?page=2"' in page_one and 'href="/archive/feed.xml"' in page_one
    status, _, page_two = fetch(f"{base}/archive/?page=2")
    assert status == 200 and page_two.count('href="/archive/daily/') == 6
    # Issue 28 §4: the public index does not wear the desk's header; the desk's
    # «Архив» stays in the desk, each edition opening there.
    assert "/desk/" not in page_one and "Редакция" not in page_one
    client = Client(base)
    assert client.login() == 303
    status, _, desk_one = client.request("/desk/archive")
    assert status == 200 and desk_one.count('href="/desk/editions/') == 30
    assert 'href="/desk/archive?page=2"' in desk_one and 'href="/desk/archive"' in desk_one
    assert Client(base).request("/desk/archive")[0] == 303  # editors only
    for bad in ("0", "3", "x", "99999999999999999999", "-1"):
        assert fetch(f"{base}/archive/?page={bad}")[0] == 404, bad
    status, _, page = fetch(f"{base}/archive/daily/2026-11-26")
    title = re.search(r"<title>(.*?)</title>", page, re.S)
    assert status == 200 and title and edition.subject in title[1] and "Архив" in title[1]
    assert f'<link rel="canonical" href="{base}/archive/daily/2026-11-26">' in page
    assert not re.search(r"/(u|p|c|o|confirm)/[A-Za-z0-9]", page)


def test_the_delivery_view_shows_rate_eta_and_the_next_wave_in_local_time(
    desk: tuple[Services, str],
) -> None:
    """Issue 14: rate and ETA were only in delivery.json, and a wave due hours later
    showed ETA «0m 00s». The wave is due at its hour: no ETA from a rate, its time
    shown in the schedule's zone."""
    services, base = desk
    schedule = services.schedule("daily")
    edition = services.editions.build(schedule, TOMORROW)
    services.lifecycle.start_sending(schedule, edition)
    wave = FIXED_NOW + timedelta(hours=5)
    with services.factory.begin() as session:
        rows = session.scalars(select(Delivery).where(Delivery.edition_id == edition.id)).all()
        for row in rows[:3]:  # three readers far east wait for their hour
            row.next_attempt_at = wave
        for row in rows[3:]:  # two already went out a minute ago
            row.status, row.sent_at = DeliveryStatus.SENT, FIXED_NOW - timedelta(seconds=30)
    page = services.desk.delivery(edition.id)
    assert page.edition.next_wave == wave and page.edition.eta_seconds != 0.0
    local = wave.astimezone(schedule.zone).strftime("%d.%m %H:%M")
    from tests.support.web import Client

    client = Client(base)
    assert client.login("anna", PASSWORD) == 303
    status, _, html = client.request(f"/desk/editions/{edition.id}/delivery")
    progress = re.search(r'<p id="progress">.*?</p>', html, re.S)
    assert status == 200 and progress and "0m 00s" not in html, html
    words = re.sub(r"<[^>]+>", "", progress[0])
    assert "Скорость" in words and "Осталось" in words, words
    assert f"Следующая волна: {local}" in words, words


def test_a_correction_pauses_the_send_and_the_editor_rebuilds_it_from_the_desk(
    browser: Browser,
    desk: tuple[Services, str],
    smtp_server: CaptureServer,
    tmp_path: Path,
) -> None:
    services, base = desk
    schedule = services.schedule("daily")
    edition = services.editions.build(schedule, TOMORROW)
    services.lifecycle.approve(edition)
    services.lifecycle.start_sending(schedule, edition)
    with services.factory() as session:
        stored = session.get(Edition, edition.id)
        assert stored is not None
        lead = next(i.article for i in stored.items if i.block.value == "lead")
    old_title = lead.title
    correction = tmp_path / "correction.jsonl"
    record = {
        "id": lead.external_id,
        "url": lead.url,
        "title": "Исправленный заголовок",
        "lead": lead.lead,
        "published_at": lead.published_at.isoformat(),
    }
    correction.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    Ingester(services.factory, clock=services.clock).load(read_jsonl(correction))
    connect = lambda target: SmtpConnection(parse_smtp_url(smtp_server.url), 10)  # noqa: E731
    in_thread(
        lambda: run_async(
            services.sender.work(connect, worker="t", once=True, stop=asyncio.Event())
        )
    )
    assert smtp_server.messages == []  # the first claim batch saw the correction

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    log_in(page, base)
    page.goto(f"{base}/desk/editions/{edition.id}/delivery")
    assert "статьи изменились" in page.locator("#paused").inner_text()
    page.get_by_role("link", name="посмотреть и пересобрать").click()
    table = page.locator("#corrections table")
    assert table.locator("del").first.inner_text() == old_title
    assert table.locator("ins").first.inner_text() == "Исправленный заголовок"
    with page.expect_navigation():
        page.get_by_role("button", name="Пересобрать выпуск").click()
    assert "Пересобрано: 5" in page.get_by_role("status").inner_text()
    assert page.locator("#corrections").count() == 0
    page.close()

    in_thread(
        lambda: run_async(
            services.sender.work(connect, worker="t", once=True, stop=asyncio.Event())
        )
    )
    assert len(smtp_server.messages) == 5
    for message in smtp_server.messages:
        parsed = email.message_from_bytes(message.data, policy=email.policy.default)
        assert "Исправленный заголовок" in str(parsed.get_body(("plain",)).get_content())  # type: ignore[union-attr]
    with services.factory() as session:
        changes = session.scalars(
            select(EditionChange).where(EditionChange.edition_id == edition.id)
        ).all()
        assert {(c.editor, c.action) for c in changes} >= {
            ("digest", "correction-paused"),
            ("anna", "rebuild"),
        }


def test_the_shaping_list_is_in_the_letters_order(desk: tuple[Services, str]) -> None:
    """Issue 28 §4: ↑/↓ often changed nothing visible, the list being in stored order
    while the letter groups the day's articles by section. The list an editor
    shapes reads as the letter does."""
    services, base = desk
    schedule = services.schedule("daily")
    edition = services.editions.build(schedule, TOMORROW)
    client = Client(base)
    assert client.login() == 303
    status, _, page = client.request(f"/desk/editions/{edition.id}")
    assert status == 200
    ids = [int(n) for n in re.findall(r'<tr data-article="(\d+)"', page)]
    with services.factory() as session:
        titles = {a.id: a.title for a in session.scalars(select(Article))}
    _, _, letter = client.request(f"/desk/editions/{edition.id}/frame")
    at = [letter.find(html.escape(titles[i], quote=False)) for i in ids]
    assert len(ids) > 5 and -1 not in at, at
    assert at == sorted(at), [titles[i] for i in ids]
    # ↑ on an article below another of its section: both the list and the letter move.
    with services.factory() as session:
        section_of = {a.id: a.section_id for a in session.scalars(select(Article))}
    day = ids[1:]  # after the lead
    k = next(n for n in range(1, len(day)) if section_of[day[n]] == section_of[day[n - 1]])
    form = {"csrf": client.csrf(f"/desk/editions/{edition.id}"), "article": str(day[k])}
    moved = client.request(f"/desk/editions/{edition.id}/shape", {**form, "action": "up"})
    assert moved[0] == 303
    _, _, page = client.request(f"/desk/editions/{edition.id}")
    after = [int(n) for n in re.findall(r'<tr data-article="(\d+)"', page)][1:]
    assert after[k - 1 : k + 1] == [day[k], day[k - 1]], "↑ moved nothing visible"
    # The change log says it in words, with the article's title and no internal id.
    log = page.split('<table id="changes">', 1)[1].split("</table>", 1)[0]
    assert "<td>выше</td>" in log and f"«{html.escape(titles[day[k]])}»" in log
    assert "article:" not in log and f"{day[k]}" not in re.sub(r"<[^>]+>", "", log).split()
    _, _, letter = client.request(f"/desk/editions/{edition.id}/frame")
    first, second = (letter.find(html.escape(titles[i], quote=False)) for i in (day[k], day[k - 1]))
    assert first < second


def test_a_refusal_reaches_the_editor_in_russian(desk: tuple[Services, str]) -> None:
    """Issue 28 §4: the lifecycle's and shaping's refusals came to the desk in English
    ("daily/… is sending: too late to change", "unknown action 'x'"). The CLI keeps
    its English; the desk says the same in Russian, with the state in its words."""
    services, base = desk
    schedule = services.schedule("daily")
    edition = services.editions.build(schedule, TOMORROW)
    services.lifecycle.approve(edition, approved=True)
    services.lifecycle.start_sending(schedule, edition)
    client = Client(base)
    assert client.login() == 303
    page = f"/desk/editions/{edition.id}"
    refusals = [
        (f"{page}/approve", {"approved": "0"}, "отправляется: менять поздно"),
        (f"{page}/shape", {"action": "x", "article": "1"}, "Неизвестное действие."),
        (f"{page}/text", {"intro": "Вступление", "subject": ""}, "менять можно только черновик"),
    ]
    for path, form, said in refusals:
        status, headers, _ = client.request(path, {"csrf": client.csrf(page), **form})
        assert status == 303 and headers["Location"].endswith(page), (path, status)
        shown = html.unescape(client.request(page)[2])
        assert said in shown, (path, said)
        assert "too late" not in shown and "unknown action" not in shown
    missing = client.request("/desk/editions/999999")
    assert missing[0] == 404 and "Выпуска 999999 нет." in missing[2]
