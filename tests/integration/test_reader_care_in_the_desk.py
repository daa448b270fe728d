"""The desk's Readers page in real Chromium against uvicorn on 127.0.0.1, on both
databases: an admin finds a reader by part of the address, reads their file
(deliveries with the server's replies), exports, unsubscribes and forgets them
(after a confirmation), imports a CSV; every action is in the audit log; an
editor who is not an admin is refused."""

from __future__ import annotations

import csv
import email
import email.policy
import io
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select

from digest.audience.rows import address_hash
from digest.capture import CaptureServer
from digest.models import AuditEntry, Event, EventKind, Forgotten, Subscriber, SubscriberStatus
from digest.wiring import Services
from tests.support.web import PASSWORD, log_in

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

READER = "reader00002@mail.example.ru"


def audit(services: Services, email: str) -> list[tuple[str, str]]:
    with services.factory() as session:
        rows = session.scalars(select(AuditEntry).where(AuditEntry.subject == address_hash(email)))
        return [(a.editor, a.action) for a in rows]


def open_reader(page: Page, base: str, fragment: str) -> None:
    page.goto(f"{base}/desk/readers")
    page.get_by_label("Адрес или его часть").fill(fragment)
    page.get_by_role("button", name="Найти").click()
    page.locator("#found a", has_text=READER).click()
    page.wait_for_url(re.compile(r"/desk/readers/\d+$"))


def test_an_admin_finds_a_reader_reads_the_file_exports_and_forgets_them(
    browser: Browser,
    desk: tuple[Services, str],
) -> None:
    services, base = desk
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    log_in(page, base)
    page.get_by_role("link", name="Читатели").click()
    open_reader(page, base, "00002@MAIL")  # a part, any case
    assert page.locator("h1").inner_text().startswith(READER)
    replies = page.locator("#deliveries").inner_text()
    assert "daily/2026-11-25" in replies and "550 5.2.2 mailbox full" in replies

    exported = page.request.get(page.url + "/export.csv")
    assert exported.ok and "attachment" in exported.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text())))
    assert rows[0]["kind"] == "subscriber" and rows[0]["email"] == READER
    assert any(r["kind"] == "delivery" and r["smtp_code"] == "550" for r in rows)

    page.get_by_role("link", name="Забыть…").click()
    assert page.get_by_role("heading", name=f"Забыть {READER}?").is_visible()
    with pytest.raises(AssertionError):  # nothing is gone before the confirmation
        assert audit(services, READER)[-1][1] == "forget"
    with page.expect_navigation():
        page.get_by_role("button", name="Да, забыть навсегда").click()
    assert page.url == f"{base}/desk/readers"
    assert "удалены" in page.get_by_role("status").inner_text()
    with services.factory() as session:
        assert session.scalar(select(Subscriber).where(Subscriber.email == READER)) is None
        assert session.get(Forgotten, address_hash(READER)) is not None
    assert audit(services, READER) == [("anna", "export"), ("anna", "forget")]
    page.close()


def test_an_admin_unsubscribes_a_reader_and_the_log_says_who(
    browser: Browser,
    desk: tuple[Services, str],
) -> None:
    services, base = desk
    page = browser.new_page()
    log_in(page, base)
    open_reader(page, base, "reader00002")
    with page.expect_navigation():
        page.get_by_role("button", name="Отписать").click()
    assert "отписан" in page.get_by_role("status").inner_text()
    assert page.locator("#audit").inner_text().split()[-2:] == ["anna", "unsubscribe"]
    with services.factory() as session:
        found = session.scalar(select(Subscriber).where(Subscriber.email == READER))
        assert found is not None and found.status is SubscriberStatus.UNSUBSCRIBED
    page.close()


def test_a_csv_upload_runs_the_import_and_reports_each_line(
    browser: Browser,
    desk: tuple[Services, str],
    tmp_path: Path,
) -> None:
    services, base = desk
    upload = tmp_path / "new-readers.csv"
    upload.write_text(
        "email,name\nnew.one@example.ru,Новый\nnot-an-address,Плохой\nnew.two@example.ru,\n",
        encoding="utf-8",
    )
    page = browser.new_page()
    log_in(page, base)
    page.goto(f"{base}/desk/readers")
    page.get_by_label("Файл").set_input_files(str(upload))
    with page.expect_navigation():
        page.get_by_role("button", name="Загрузить").click()
    assert "Добавлено 2" in page.locator("#summary").inner_text()
    assert "отклонено 1" in page.locator("#summary").inner_text()
    assert page.locator("#problems li").first.inner_text().startswith("new-readers.csv:3:")
    with services.factory() as session:
        added = session.scalars(select(Subscriber.email).where(Subscriber.email.like("new.%")))
        assert sorted(added) == ["new.one@example.ru", "new.two@example.ru"]
        entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "import"))
        assert entry is not None and entry.editor == "anna" and entry.detail is not None
        assert entry.detail["rejected"] == 1
    page.close()


def test_an_editor_who_is_not_an_admin_is_refused(
    browser: Browser,
    desk: tuple[Services, str],
) -> None:
    _, base = desk
    page = browser.new_page()
    page.goto(f"{base}/desk/login")
    page.get_by_label("Имя").fill("boris")
    page.get_by_label("Пароль").fill(PASSWORD)
    page.get_by_role("button", name="Войти").click()
    page.wait_for_url(f"{base}/desk/")
    assert page.get_by_role("link", name="Читатели").count() == 0
    response = page.goto(f"{base}/desk/readers?q=reader")
    assert response is not None and response.status == 403
    assert READER not in page.content()
    denied = page.request.post(f"{base}/desk/readers/1", form={"action": "forget"})
    assert denied.status == 403  # no CSRF token, and no right: nothing happens
    page.close()


def test_a_pending_reader_gets_the_confirmation_again_from_the_desk(
    browser: Browser,
    desk: tuple[Services, str],
    smtp_server: CaptureServer,
    tmp_path: Path,
) -> None:
    services, base = desk
    upload = tmp_path / "one.csv"
    upload.write_text("email\nwaiting@example.ru\n", encoding="utf-8")
    services.support().import_csv(upload.read_bytes(), "one.csv", "anna")
    before = len(smtp_server.messages)
    page = browser.new_page()
    log_in(page, base)
    page.goto(f"{base}/desk/readers?q=waiting@")
    page.locator("#found a").first.click()
    assert "ждёт подтверждения" in page.locator("h1").inner_text()
    facts = page.locator("#facts").inner_text()  # issue 28 §4: no ISO times, no English
    assert "+00:00" not in facts and "T" not in facts.split("С нами с")[1][:20]
    with page.expect_navigation():
        page.get_by_role("button", name="Отправить подтверждение ещё раз").click()
    assert "отправлено на waiting@example.ru" in page.get_by_role("status").inner_text()
    [mail] = smtp_server.messages[before:]
    parsed = email.message_from_bytes(mail.data, policy=email.policy.default)
    body = parsed.get_body(("plain",))
    assert mail.rcpt_to == ("waiting@example.ru",) and body is not None
    assert "/confirm/" in str(body.get_content())
    assert audit(services, "waiting@example.ru") == [("anna", "resend")]
    page.close()


def test_an_admin_brings_back_a_reader_who_complained_with_the_evidence_and_a_reason(
    browser: Browser,
    desk: tuple[Services, str],
) -> None:
    """Issue 28 §2: the desk had no way back for a reader. A complaint or a hard
    bounce is shut to the reader's own ways back; an admin reopens it, seeing the
    evidence, and the reason stays in the log."""
    services, base = desk
    with services.factory.begin() as session:
        found = session.scalar(select(Subscriber).where(Subscriber.email == READER))
        assert found is not None
        found.status = SubscriberStatus.COMPLAINED
        session.add(
            Event(
                subscriber_id=found.id,
                kind=EventKind.COMPLAINT,
                at=found.created_at,
                detail={"feedback_type": "abuse", "report": "arf-1.eml"},
            )
        )
    page = browser.new_page()
    log_in(page, base)
    open_reader(page, base, "reader00002")
    section = page.locator("#reactivate")
    assert (
        "пожаловался" in section.inner_text() and "abuse" in page.locator("#returns").inner_text()
    )
    # Without a reason the browser will not send it, and the server refuses it too.
    refused = page.request.post(
        page.url,
        form={
            "csrf": page.locator("#reactivate [name=csrf]").input_value(),
            "action": "reactivate",
        },
    )
    assert refused.ok and "Укажите причину" in refused.text()  # the page again, and why
    section.get_by_label("Причина (останется в журнале)").fill("просит сам, письмо от 02.12")
    with page.expect_navigation():
        section.get_by_role("button", name="Вернуть подписку").click()
    assert "подписка возвращена" in page.get_by_role("status").inner_text()
    assert "reactivate: просит сам, письмо от 02.12" in page.locator("#audit").inner_text()
    with services.factory() as session:
        back = session.scalar(select(Subscriber).where(Subscriber.email == READER))
        assert back is not None and back.status is SubscriberStatus.ACTIVE
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "reactivate")).one()
        assert entry.detail == {"was": "complained", "reason": "просит сам, письмо от 02.12"}
    page.close()
