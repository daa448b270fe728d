"""The subscriber endpoints over real HTTP: uvicorn on 127.0.0.1 serving the
Starlette app, spoken to with urllib like a mail client or a browser would."""

from __future__ import annotations

import email
import email.policy
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import date
from urllib.parse import urlsplit

import pytest
import uvicorn
from sqlalchemy import select

from digest import demo
from digest.capture import free_port
from digest.edition import Pipeline
from digest.models import Event, Subscriber, SubscriberStatus
from digest.web import WebContext, create_app
from tests.conftest import FIXED_NOW


@pytest.fixture
def served(pipeline: Pipeline, fixed_date: date) -> Iterator[tuple[Pipeline, str]]:
    schedule = pipeline.schedule("daily")
    demo.load(pipeline.factory, demo.build(schedule, fixed_date))
    demo.add_subscribers(pipeline.factory, 5, now=FIXED_NOW)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(WebContext(pipeline.settings, pipeline.factory)),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield pipeline, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def unsubscribe_url(pipe: Pipeline, who: str) -> str:
    """The https link of the List-Unsubscribe header of the subscriber's real message."""
    schedule = pipe.schedule("daily")
    edition = pipe.build(schedule, date(2026, 11, 25))
    message = email.message_from_bytes(
        pipe.preview(schedule, edition, who).data, policy=email.policy.default
    )
    header = str(message["List-Unsubscribe"])
    return header.split("<", 1)[1].split(">", 1)[0]


def status_of(pipe: Pipeline, who: str) -> SubscriberStatus:
    with pipe.factory() as session:
        found = session.scalar(select(Subscriber).where(Subscriber.email == who))
        assert found is not None
        return found.status


def fetch(url: str, data: bytes | None = None) -> tuple[int, str, str]:
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if data is not None:
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.geturl(), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, url, exc.read().decode()


def test_a_get_shows_a_button_and_unsubscribes_nobody(served: tuple[Pipeline, str]) -> None:
    pipe, base = served
    who = "reader00001@example.com"
    path = urlsplit(unsubscribe_url(pipe, who)).path
    status, _, body = fetch(base + path)
    assert status == 200 and "<button" in body and 'method="post"' in body
    assert status_of(pipe, who) is SubscriberStatus.ACTIVE  # link scanners GET


def test_one_click_post_as_gmail_sends_it(served: tuple[Pipeline, str]) -> None:
    pipe, base = served
    who = "reader00002@mail.example.ru"
    path = urlsplit(unsubscribe_url(pipe, who)).path
    status, final_url, body = fetch(base + path, b"List-Unsubscribe=One-Click")
    assert status == 200 and final_url == base + path  # no redirect (RFC 8058)
    assert "Вы отписаны" in body
    assert status_of(pipe, who) is SubscriberStatus.UNSUBSCRIBED
    with pipe.factory() as session:
        events = session.scalars(select(Event).where(Event.kind == "unsubscribe")).all()
    assert [e.detail for e in events] == [{"how": "one-click"}]
    # Again: the same answer, whatever the state (the page reveals nothing).
    assert fetch(base + path, b"List-Unsubscribe=One-Click")[:2] == (200, base + path)


def test_a_broken_or_forged_token_gets_a_clear_page(served: tuple[Pipeline, str]) -> None:
    pipe, base = served
    path = urlsplit(unsubscribe_url(pipe, "reader00003@yandex.example.ru")).path
    for bad in (path[:-3] + "xyz", "/u/not-a-token", "/u/" + "a" * 300):
        status, _, body = fetch(base + bad)
        assert status == 400 and "Ссылка не работает" in body
        status, _, body = fetch(base + bad, b"List-Unsubscribe=One-Click")
        assert status == 400
    assert status_of(pipe, "reader00003@yandex.example.ru") is SubscriberStatus.ACTIVE
