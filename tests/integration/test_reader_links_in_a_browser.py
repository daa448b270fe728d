"""The subscriber pages in real Chromium (Debian's package, driven by Playwright):
what a reader does with the links in their mail."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from digest.models import Event, EventKind, SubscriberStatus
from digest.wiring import Services
from tests.support.web import preferences_path, status_of, unsubscribe_url

if TYPE_CHECKING:
    from playwright.sync_api import Browser


def test_a_reader_clicks_the_unsubscribe_button(
    browser: Browser, served: tuple[Services, str]
) -> None:
    services, base = served
    who = "reader00001@example.com"
    link = unsubscribe_url(services, who).replace(services.settings.base_url, base)
    page = browser.new_page()
    page.goto(link)
    assert page.title() == "Отписаться от рассылки"
    assert status_of(services, who) is SubscriberStatus.ACTIVE  # opening the page is not enough
    page.get_by_role("button", name="Отписаться").click()
    page.wait_for_selector("text=Вы отписаны")
    assert page.url == link  # 200 on the same URL, no redirect
    assert status_of(services, who) is SubscriberStatus.UNSUBSCRIBED
    with services.factory() as session:
        event = session.scalars(select(Event).where(Event.kind == EventKind.UNSUBSCRIBE)).one()
    assert event.detail == {"how": "web"}
    page.close()


def test_a_reader_saves_preferences_in_the_browser(
    browser: Browser, served: tuple[Services, str]
) -> None:
    services, base = served
    who = "reader00004@example.org"
    page = browser.new_page()
    page.goto(base + preferences_path(services, who))
    page.locator('input[name="section"]').first.check()
    page.get_by_label("только текст").check()
    page.get_by_label("раз в неделю").check()
    page.get_by_role("button", name="Сохранить").click()
    page.wait_for_selector("text=Сохранено.")
    # The browser's own Origin header and the form's CSRF token passed the checks.
    assert page.get_by_label("только текст").is_checked()
    assert page.get_by_label("раз в неделю").is_checked()
    page.close()
