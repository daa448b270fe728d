"""The subscriber endpoints over real HTTP: uvicorn on 127.0.0.1 serving the
Starlette app, spoken to with urllib like a mail client or a browser would."""

from __future__ import annotations

import email
import email.policy
import re
import urllib.error
import urllib.request
from datetime import date
from typing import Any
from urllib.parse import urlencode, urlsplit

from sqlalchemy import select

from digest.models import Event, Section, Subscriber, SubscriberStatus
from digest.wiring import Services


def unsubscribe_url(pipe: Services, who: str) -> str:
    """The https link of the List-Unsubscribe header of the subscriber's real message."""
    schedule = pipe.schedule("daily")
    edition = pipe.editions.build(schedule, date(2026, 11, 25))
    message = email.message_from_bytes(
        pipe.previews.preview(schedule, edition, who).data, policy=email.policy.default
    )
    header = str(message["List-Unsubscribe"])
    return header.split("<", 1)[1].split(">", 1)[0]


def status_of(pipe: Services, who: str) -> SubscriberStatus:
    with pipe.factory() as session:
        found = session.scalar(select(Subscriber).where(Subscriber.email == who))
        assert found is not None
        return found.status


class NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect comes back as it is; tests never leave 127.0.0.1


OPENER = urllib.request.build_opener(NoRedirects)


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


def test_a_get_shows_a_button_and_unsubscribes_nobody(served: tuple[Services, str]) -> None:
    pipe, base = served
    who = "reader00001@example.com"
    path = urlsplit(unsubscribe_url(pipe, who)).path
    status, _, body = fetch(base + path)
    assert status == 200 and "<button" in body and 'method="post"' in body
    assert status_of(pipe, who) is SubscriberStatus.ACTIVE  # link scanners GET


def test_one_click_post_as_gmail_sends_it(served: tuple[Services, str]) -> None:
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


def test_a_broken_or_forged_token_gets_a_clear_page(served: tuple[Services, str]) -> None:
    pipe, base = served
    path = urlsplit(unsubscribe_url(pipe, "reader00003@yandex.example.ru")).path
    for bad in (path[:-3] + "xyz", "/u/not-a-token", "/u/" + "a" * 300):
        status, _, body = fetch(base + bad)
        assert status == 400 and "Ссылка не работает" in body
        status, _, body = fetch(base + bad, b"List-Unsubscribe=One-Click")
        assert status == 400
    assert status_of(pipe, "reader00003@yandex.example.ru") is SubscriberStatus.ACTIVE


def html_of(pipe: Services, who: str) -> str:
    """The HTML part of the subscriber's real message for today's edition."""
    schedule = pipe.schedule("daily")
    edition = pipe.editions.build(schedule, date(2026, 11, 25))
    message = email.message_from_bytes(
        pipe.previews.preview(schedule, edition, who).data, policy=email.policy.default
    )
    body = message.get_body(("html",))
    assert body is not None
    return str(body.get_content())


def preferences_path(pipe: Services, who: str) -> str:
    """The preferences link of the subscriber's real message (its HTML part)."""
    links = [
        part.split('"', 1)[0]
        for part in html_of(pipe, who).split('href="')[1:]
        if "/p/" in part.split('"', 1)[0]
    ]
    assert links
    return urlsplit(links[0].replace("&amp;", "&")).path


def test_preferences_are_shown_and_saved(served: tuple[Services, str]) -> None:
    pipe, base = served
    who = "reader00004@example.org"
    path = preferences_path(pipe, who)
    status, _, page = fetch(base + path)
    assert status == 200 and 'type="checkbox" name="section"' in page
    csrf = csrf_of(page)
    with pipe.factory() as session:
        slugs = sorted(session.scalars(select(Section.slug)))
    form = [
        ("csrf", csrf),
        ("section", slugs[0]),
        ("section", slugs[1]),
        ("section", "no-such"),
        ("frequency", "weekly"),
        ("format", "text"),
        ("timezone", "Asia/Vladivostok"),
    ]
    status, final_url, page = fetch(base + path, urlencode(form).encode())
    assert status == 200 and final_url == base + path and "Сохранено" in page
    with pipe.factory() as session:
        saved = session.scalar(select(Subscriber).where(Subscriber.email == who))
        assert saved is not None
        assert saved.sections == ",".join(sorted(slugs[:2]))  # the unknown one is ignored
        assert (saved.frequency, saved.timezone) == ("weekly", "Asia/Vladivostok")
        assert saved.format == "text"
    status, _, page = fetch(
        base + path, urlencode([("csrf", csrf), ("frequency", "hourly")]).encode()
    )
    assert status == 422 and "Не сохранено" in page
    assert fetch(base + "/p/forged.token")[0] == 400


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "the form carries no CSRF token"
    return match.group(1)


def test_the_preferences_form_refuses_forged_and_cross_site_posts(
    served: tuple[Services, str],
) -> None:
    pipe, base = served
    who = "reader00004@example.org"
    path = preferences_path(pipe, who)
    other_path = preferences_path(pipe, "reader00001@example.com")
    other_csrf = csrf_of(fetch(base + other_path)[2])
    csrf = csrf_of(fetch(base + path)[2])
    weekly = [("frequency", "weekly")]
    # No token, a token of another reader's form, a token from another site's page.
    assert fetch(base + path, urlencode(weekly).encode())[0] == 403
    assert fetch(base + path, urlencode([("csrf", other_csrf), *weekly]).encode())[0] == 403
    hostile = {"Origin": "https://evil.example.com"}
    assert fetch(base + path, urlencode([("csrf", csrf), *weekly]).encode(), hostile)[0] == 403
    with pipe.factory() as session:
        saved = session.scalar(select(Subscriber).where(Subscriber.email == who))
        assert saved is not None and saved.frequency == "daily"
    same_site = {"Origin": base}
    assert fetch(base + path, urlencode([("csrf", csrf), *weekly]).encode(), same_site)[0] == 200
