"""The subscriber pages in real Chromium (Debian's package, driven by Playwright):
what a reader does with the links in their mail."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select

from digest.models import Event, EventKind, SubscriberStatus
from digest.wiring import Services
from tests.conftest import IN_CI
from tests.integration.test_web import preferences_path, status_of, unsubscribe_url

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling Google's hosts,
# which this sandbox refuses; tests talk to 127.0.0.1 only.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        message = f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium package"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()


def test_a_reader_clicks_the_unsubscribe_button(
    browser: Browser, served: tuple[Services, str]
) -> None:
    pipe, base = served
    who = "reader00001@example.com"
    link = unsubscribe_url(pipe, who).replace(pipe.settings.base_url, base)
    page = browser.new_page()
    page.goto(link)
    assert page.title() == "Отписаться от рассылки"
    assert status_of(pipe, who) is SubscriberStatus.ACTIVE  # opening the page is not enough
    page.get_by_role("button", name="Отписаться").click()
    page.wait_for_selector("text=Вы отписаны")
    assert page.url == link  # 200 on the same URL, no redirect
    assert status_of(pipe, who) is SubscriberStatus.UNSUBSCRIBED
    with pipe.factory() as session:
        event = session.scalars(select(Event).where(Event.kind == EventKind.UNSUBSCRIBE)).one()
    assert event.detail == {"how": "web"}
    page.close()


def test_a_reader_saves_preferences_in_the_browser(
    browser: Browser, served: tuple[Services, str]
) -> None:
    pipe, base = served
    who = "reader00004@example.org"
    page = browser.new_page()
    page.goto(base + preferences_path(pipe, who))
    page.locator('input[name="section"]').first.check()
    page.get_by_label("только текст").check()
    page.get_by_label("раз в неделю").check()
    page.get_by_role("button", name="Сохранить").click()
    page.wait_for_selector("text=Сохранено.")
    # The browser's own Origin header and the form's CSRF token passed the checks.
    assert page.get_by_label("только текст").is_checked()
    assert page.get_by_label("раз в неделю").is_checked()
    page.close()
