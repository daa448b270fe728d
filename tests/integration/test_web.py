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
from urllib.parse import urlencode, urlsplit

import pytest
import uvicorn
from sqlalchemy import select

from digest import demo
from digest.capture import free_port
from digest.edition import Pipeline
from digest.models import Event, Section, Subscriber, SubscriberStatus
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


def preferences_path(pipe: Pipeline, who: str) -> str:
    """The preferences link of the subscriber's real message (its HTML part)."""
    schedule = pipe.schedule("daily")
    edition = pipe.build(schedule, date(2026, 11, 25))
    message = email.message_from_bytes(
        pipe.preview(schedule, edition, who).data, policy=email.policy.default
    )
    body = message.get_body(("html",))
    assert body is not None
    links = [
        part.split('"', 1)[0]
        for part in str(body.get_content()).split('href="')[1:]
        if "/p/" in part.split('"', 1)[0]
    ]
    assert links
    return urlsplit(links[0].replace("&amp;", "&")).path


def test_preferences_are_shown_and_saved(served: tuple[Pipeline, str]) -> None:
    pipe, base = served
    who = "reader00004@example.org"
    path = preferences_path(pipe, who)
    status, _, page = fetch(base + path)
    assert status == 200 and 'type="checkbox" name="section"' in page
    with pipe.factory() as session:
        slugs = sorted(session.scalars(select(Section.slug)))
    form = [
        ("section", slugs[0]),
        ("section", slugs[1]),
        ("section", "no-such"),
        ("frequency", "weekly"),
        ("timezone", "Asia/Vladivostok"),
    ]
    status, final_url, page = fetch(base + path, urlencode(form).encode())
    assert status == 200 and final_url == base + path and "Сохранено" in page
    with pipe.factory() as session:
        saved = session.scalar(select(Subscriber).where(Subscriber.email == who))
        assert saved is not None
        assert saved.sections == ",".join(sorted(slugs[:2]))  # the unknown one is ignored
        assert (saved.frequency, saved.timezone) == ("weekly", "Asia/Vladivostok")
    status, _, page = fetch(base + path, b"frequency=hourly")
    assert status == 422 and "Не сохранено" in page
    assert fetch(base + "/p/forged.token")[0] == 400
