"""The web app for the tests: served by uvicorn on 127.0.0.1 with demo readers,
spoken to with urllib as a mail client or a browser would, and the desk's login."""

from __future__ import annotations

import email
import email.policy
import http.client
import http.cookiejar
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import date, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from digest import demo
from digest.capture import CaptureServer
from digest.models import Subscriber, SubscriberStatus
from digest.web.app import WebContext, create_app
from digest.wiring import Services
from tests.support.common import FIXED_NOW, in_thread
from tests.support.demo_data import load_demo_articles
from tests.support.serving import reserved_port, serving
from tests.support.smtp import ScriptedHandler, send_through

if TYPE_CHECKING:
    from playwright.sync_api import Page

PASSWORD = "правильный-пароль"
READER = "reader00002@mail.example.ru"  # the desk's reader whose server refused the edition


@pytest.fixture
def site(services: Services) -> Iterator[tuple[Services, str]]:
    """The app with three readers and one editor, anna (an admin), on either database."""
    port = reserved_port()
    cfg = services.settings.model_copy(
        update={
            "base_url": f"http://127.0.0.1:{port}",
            "editors": SecretStr(f"anna:{PASSWORD}"),
            "desk_admins": "anna",
        }
    )
    services = Services(cfg, services.factory, clock=services.clock)
    schedule = services.schedule("daily")
    load_demo_articles(services.factory, schedule, FIXED_NOW.date())
    demo.add_subscribers(services.factory, 3, now=FIXED_NOW)
    with serving(create_app(WebContext(cfg, services.factory, clock=services.clock)), port) as base:
        yield services, base


@pytest.fixture
def list_settings() -> dict[str, Any]:
    """Overrides of the daily list's lists.toml keys; a test parametrizes it."""
    return {}


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return json.dumps(value, ensure_ascii=False)  # strings, numbers and lists read the same


@pytest.fixture
def web_pipeline(services: Services, list_settings: dict[str, Any], tmp_path: Path) -> Services:
    """The services with the project's lists.toml, changed as the test asks."""
    if not list_settings:
        return services
    source = (services.settings.subscribers_dir / "lists.toml").read_text(encoding="utf-8")
    folder = tmp_path / "subscribers"
    folder.mkdir()
    extra = "".join(
        f"{k} = {str(v).lower() if isinstance(v, bool) else v!r}\n"
        for k, v in list_settings.items()
    )
    lines = [
        line for line in source.splitlines() if line.split("=")[0].strip() not in list_settings
    ]
    (folder / "lists.toml").write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    cfg = services.settings.model_copy(update={"subscribers_dir": folder})
    return Services(cfg, services.factory, clock=services.clock)


@pytest.fixture
def served(web_pipeline: Services, fixed_date: date) -> Iterator[tuple[Services, str]]:
    services = web_pipeline
    schedule = services.schedule("daily")
    load_demo_articles(services.factory, schedule, fixed_date)
    demo.add_subscribers(services.factory, 5, now=FIXED_NOW)
    app = create_app(WebContext(services.settings, services.factory, services.clock))
    with serving(app) as base:
        yield services, base


def unsubscribe_url(services: Services, who: str) -> str:
    """The https link of the List-Unsubscribe header of the subscriber's real message."""
    schedule = services.schedule("daily")
    edition = services.editions.build(schedule, date(2026, 11, 25))
    message = email.message_from_bytes(
        services.previews.preview(schedule, edition, who).data, policy=email.policy.default
    )
    header = str(message["List-Unsubscribe"])
    return header.split("<", 1)[1].split(">", 1)[0]


def status_of(services: Services, who: str) -> SubscriberStatus:
    with services.factory() as session:
        found = session.scalar(select(Subscriber).where(Subscriber.email == who))
        assert found is not None
        return found.status


class NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect comes back as it is; tests never leave 127.0.0.1


def fetch(
    url: str,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    method: str | None = None,
) -> tuple[int, str, str]:
    """(status, URL, body); a redirect is not followed: its Location is the URL."""
    request = urllib.request.Request(
        url,
        data=data,
        method=method or ("POST" if data is not None else "GET"),
        headers=headers or {},
    )
    if data is not None:
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with OPENER.open(request, timeout=10) as response:
            return response.status, response.geturl(), response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Location") or url, exc.read().decode(errors="replace")


def html_of(services: Services, who: str) -> str:
    """The HTML part of the subscriber's real message for today's edition."""
    schedule = services.schedule("daily")
    edition = services.editions.build(schedule, date(2026, 11, 25))
    message = email.message_from_bytes(
        services.previews.preview(schedule, edition, who).data, policy=email.policy.default
    )
    body = message.get_body(("html",))
    assert body is not None
    return str(body.get_content())


def preferences_path(services: Services, who: str) -> str:
    """The preferences link of the subscriber's real message (its HTML part)."""
    links = [
        part.split('"', 1)[0]
        for part in html_of(services, who).split('href="')[1:]
        if "/p/" in part.split('"', 1)[0]
    ]
    assert links
    return urlsplit(links[0].replace("&amp;", "&")).path


OPENER = urllib.request.build_opener(NoRedirects)


class Client:
    """A browser without a browser: cookies kept, redirects not followed."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            NoRedirects, urllib.request.HTTPCookieProcessor(self.jar)
        )

    def request(
        self, path: str, form: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, http.client.HTTPMessage, str]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        url = self.base + urllib.parse.quote(path, safe="/%?=&")
        req = urllib.request.Request(url, data=data, headers=headers or {})
        try:
            with self.opener.open(req, timeout=10) as response:
                return response.status, response.headers, response.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read().decode(errors="replace")

    def csrf(self, path: str) -> str:
        _, _, body = self.request(path)
        match = re.search(r'name="csrf" value="([^"]+)"', body)
        assert match, f"no CSRF token on {path}"
        return match.group(1)

    def login(self, user: str = "anna", password: str = PASSWORD) -> int:
        token = self.csrf("/desk/login")
        form = {"csrf": token, "username": user, "password": password, "next": "/desk/"}
        return self.request("/desk/login", form)[0]


class Clock:
    def __init__(self) -> None:
        self.now = FIXED_NOW

    def __call__(self) -> datetime:
        return self.now


def log_in(page: Page, base: str, password: str = PASSWORD) -> None:
    page.goto(f"{base}/desk/login")
    page.get_by_label("Имя").fill("anna")
    page.get_by_label("Пароль").fill(password)
    page.get_by_role("button", name="Войти").click()


@pytest.fixture
def desk(
    web_pipeline: Services, smtp_server: CaptureServer, fixed_date: date
) -> Iterator[tuple[Services, str]]:
    """Six demo readers who got the day's edition (one refused by its server);
    anna is an admin, boris an editor; the list as ``list_settings`` says."""
    services = web_pipeline
    port = reserved_port()
    cfg = services.settings.model_copy(
        update={
            "base_url": f"http://127.0.0.1:{port}",
            "smtp_url": smtp_server.url,
            "editors": SecretStr(f"anna:{PASSWORD},boris:{PASSWORD}"),
            "desk_admins": "anna",
        }
    )
    services = Services(cfg, services.factory, clock=lambda: FIXED_NOW)
    schedule = services.schedule("daily")
    load_demo_articles(services.factory, schedule, fixed_date)
    demo.add_subscribers(services.factory, 6, now=FIXED_NOW)
    handler = smtp_server.handler
    assert isinstance(handler, ScriptedHandler)
    handler.rules[READER] = "550 5.2.2 mailbox full"
    edition = services.editions.build(schedule, fixed_date)
    in_thread(lambda: send_through(services, edition, smtp_server.url))
    with serving(create_app(WebContext(cfg, services.factory, clock=services.clock)), port) as base:
        yield services, base


def confirm_link(message: EmailMessage) -> str:
    text = message.get_body(("plain",))
    assert text is not None
    match = re.search(r"https?://\S+/confirm/\S+", str(text.get_content()))
    assert match, "no confirmation link in the text part"
    return match.group(0)
