"""The subscriber endpoints over real HTTP: uvicorn on 127.0.0.1 serving the
Starlette app, spoken to with urllib like a mail client or a browser would."""

from __future__ import annotations

import re
from urllib.parse import urlencode, urlsplit

from sqlalchemy import select

from digest.models import Event, Section, Subscriber, SubscriberStatus
from digest.wiring import Services
from tests.support.web import fetch, preferences_path, status_of, unsubscribe_url


def test_a_get_shows_a_button_and_unsubscribes_nobody(served: tuple[Services, str]) -> None:
    services, base = served
    who = "reader00001@example.com"
    path = urlsplit(unsubscribe_url(services, who)).path
    status, _, body = fetch(base + path)
    assert status == 200 and "<button" in body and 'method="post"' in body
    assert status_of(services, who) is SubscriberStatus.ACTIVE  # link scanners GET
    # Issue 28 §4: the site's masthead and a way back to it, on every reader page.
    site = services.settings.site_url
    assert f'<header class="masthead"><a href="{site}">' in body
    assert f'<a href="{site}">Вернуться на сайт' in body


def test_one_click_post_as_gmail_sends_it(served: tuple[Services, str]) -> None:
    services, base = served
    who = "reader00002@mail.example.ru"
    path = urlsplit(unsubscribe_url(services, who)).path
    status, final_url, body = fetch(base + path, b"List-Unsubscribe=One-Click")
    assert status == 200 and final_url == base + path  # no redirect (RFC 8058)
    assert "Вы отписаны" in body
    assert status_of(services, who) is SubscriberStatus.UNSUBSCRIBED
    with services.factory() as session:
        events = session.scalars(select(Event).where(Event.kind == "unsubscribe")).all()
    assert [e.detail for e in events] == [{"how": "one-click"}]
    # Again: the same answer, whatever the state (the page reveals nothing).
    assert fetch(base + path, b"List-Unsubscribe=One-Click")[:2] == (200, base + path)


def test_a_broken_or_forged_token_gets_a_clear_page(served: tuple[Services, str]) -> None:
    services, base = served
    path = urlsplit(unsubscribe_url(services, "reader00003@yandex.example.ru")).path
    for bad in (path[:-3] + "xyz", "/u/not-a-token", "/u/" + "a" * 300):
        status, _, body = fetch(base + bad)
        assert status == 400 and "Ссылка не работает" in body
        status, _, body = fetch(base + bad, b"List-Unsubscribe=One-Click")
        assert status == 400
    assert status_of(services, "reader00003@yandex.example.ru") is SubscriberStatus.ACTIVE


def test_preferences_are_shown_and_saved(served: tuple[Services, str]) -> None:
    services, base = served
    who = "reader00004@example.org"
    path = preferences_path(services, who)
    status, _, page = fetch(base + path)
    assert status == 200 and 'type="checkbox" name="section"' in page
    csrf = csrf_of(page)
    with services.factory() as session:
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
    with services.factory() as session:
        saved = session.scalar(select(Subscriber).where(Subscriber.email == who))
        assert saved is not None
        assert saved.sections == ",".join(sorted(slugs[:2]))  # the unknown one is ignored
        assert (saved.frequency, saved.timezone) == ("weekly", "Asia/Vladivostok")
        assert saved.format == "text"
    status, _, page = fetch(
        base + path, urlencode([("csrf", csrf), ("frequency", "hourly")]).encode()
    )
    assert status == 422 and "Не сохранено" in page
    # Issue 28 §4: in the reader's words, and the zone picked from a list.
    assert "выберите, как часто присылать письма" in page and "frequency:" not in page
    assert '<select id="timezone" name="timezone"' in page
    assert '<option value="Asia/Vladivostok" selected>Владивосток (UTC+10)</option>' in page
    assert fetch(base + "/p/forged.token")[0] == 400


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "the form carries no CSRF token"
    return match.group(1)


def test_the_preferences_form_refuses_forged_and_cross_site_posts(
    served: tuple[Services, str],
) -> None:
    services, base = served
    who = "reader00004@example.org"
    path = preferences_path(services, who)
    other_path = preferences_path(services, "reader00001@example.com")
    other_csrf = csrf_of(fetch(base + other_path)[2])
    csrf = csrf_of(fetch(base + path)[2])
    weekly = [("frequency", "weekly")]
    # No token, a token of another reader's form, a token from another site's page.
    assert fetch(base + path, urlencode(weekly).encode())[0] == 403
    assert fetch(base + path, urlencode([("csrf", other_csrf), *weekly]).encode())[0] == 403
    hostile = {"Origin": "https://evil.example.com"}
    assert fetch(base + path, urlencode([("csrf", csrf), *weekly]).encode(), hostile)[0] == 403
    with services.factory() as session:
        saved = session.scalar(select(Subscriber).where(Subscriber.email == who))
        assert saved is not None and saved.frequency == "daily"
    same_site = {"Origin": base}
    assert fetch(base + path, urlencode([("csrf", csrf), *weekly]).encode(), same_site)[0] == 200
