"""The HTTP API for the tests (issue 30): the web app served by uvicorn on
127.0.0.1 with demo articles and readers and a capturing SMTP relay, tokens made
by the service `digest tokens create` calls, and a client that speaks JSON over
real HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest

from digest import demo
from digest.capture import CaptureServer
from digest.web.app import WebContext, create_app
from digest.wiring import Services
from tests.support.common import FIXED_NOW
from tests.support.demo_data import load_demo_articles
from tests.support.serving import reserved_port, serving

ALL = (
    "subscribers:read",
    "subscribers:write",
    "subscribers:confirm",
    "editions:read",
    "editions:send",
)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any  # the JSON, or the text when it is not JSON

    @property
    def kind(self) -> str:
        return self.headers.get("content-type", "")


@dataclass
class Api:
    services: Services
    base: str
    smtp: CaptureServer

    def recipients(self) -> list[str]:
        """Who the relay took mail for, in order."""
        return [to for message in self.smtp.handler.messages for to in message.rcpt_to]

    def token(self, *scopes: str, name: str | None = None) -> str:
        name = name or "t-" + "-".join(s.replace(":", ".") for s in scopes) or "t-none"
        return self.services.api_tokens.create(name, scopes or ALL, "test")[0]

    def call(
        self, method: str, path: str, token: str | None = None, body: Any = None,
        headers: dict[str, str] | None = None, raw: bytes | None = None,
    ) -> Answer:  # fmt: skip
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            sent.setdefault("Content-Type", "application/json")
        request = urllib.request.Request(self.base + path, data=data, headers=sent, method=method)
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                return _answer(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as exc:
            return _answer(exc.code, dict(exc.headers), exc.read())


def _answer(status: int, headers: dict[str, str], data: bytes) -> Answer:
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        body: Any = json.loads(data) if data else None
    except ValueError:
        body = data.decode(errors="replace")
    return Answer(status, lowered, body)


@pytest.fixture
def api_settings() -> dict[str, Any]:
    """Settings a test changes (DIGEST_API_RATE for the rate test)."""
    return {}


@pytest.fixture
def api(
    services: Services, fixed_date: date, smtp_server: CaptureServer, api_settings: dict[str, Any]
) -> Iterator[Api]:
    """The app, its articles of the fixed day and three readers, on either database."""
    port = reserved_port()
    base = f"http://127.0.0.1:{port}"
    cfg = services.settings.model_copy(
        update={"smtp_url": smtp_server.url, "base_url": base, **api_settings}
    )
    services = Services(cfg, services.factory, clock=services.clock)
    load_demo_articles(services.factory, services.schedule("daily"), fixed_date)
    demo.add_subscribers(services.factory, 3, now=FIXED_NOW)
    with serving(create_app(WebContext(cfg, services.factory, clock=services.clock)), port):
        yield Api(services, base + "/api/v1", smtp_server)
