"""Issue 24 §3–4: the desk's login throttle against a stranger. Counted by name
alone, ten wrong passwords from anywhere locked an editor out for 15 minutes,
again and again; and the count was not atomic (40 wrong logins at once had 5–10
passwords checked where 3 are free). Real HTTP from two loopback addresses, real
threads, both databases."""

from __future__ import annotations

import functools
import http.client
import threading
import urllib.request
from datetime import timedelta

from pydantic import SecretStr
from sqlalchemy import func, select

from digest.models import LoginFailure
from digest.team.accounts import Accounts
from digest.team.auth import FREE, LOCK_AFTER, DeskAuth
from digest.web.app import WebContext, create_app
from digest.wiring import Services
from tests.support.serving import serving
from tests.support.web import PASSWORD, Client, Clock, NoRedirects


class FromAddress(urllib.request.HTTPHandler):
    """Connections from another loopback address (127.0.0.0/8 is all ours)."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = functools.partial(http.client.HTTPConnection, source_address=(self.source, 0))
        return self.do_open(connection, req)  # type: ignore[arg-type]


class ClientFrom(Client):
    def __init__(self, base: str, source: str) -> None:
        super().__init__(base)
        self.opener = urllib.request.build_opener(
            FromAddress(source), NoRedirects, urllib.request.HTTPCookieProcessor(self.jar)
        )


def test_a_stranger_cannot_lock_an_editor_out_of_the_desk(services: Services) -> None:
    clock = Clock()
    cfg = services.settings.model_copy(
        update={"editors": SecretStr(f"anna:{PASSWORD}"), "base_url": "http://127.0.0.1"}
    )
    with serving(create_app(WebContext(cfg, services.factory, clock=clock))) as base:
        stranger = ClientFrom(base, "127.0.0.2")
        for n in range(LOCK_AFTER):
            clock.now += timedelta(minutes=1)  # past each wait: every guess is checked
            assert stranger.login(password=f"guess{n}") == 401, n
        clock.now += timedelta(seconds=1)
        assert stranger.login() == 429  # the name is locked from the stranger's address
        assert ClientFrom(base, "127.0.0.1").login() == 303  # anna, from her own: in


def test_forty_wrong_passwords_at_once_check_only_the_free_ones(services: Services) -> None:
    accounts = Accounts(services.factory, services.clock, lambda: ({"anna": PASSWORD}, frozenset()))
    auth = DeskAuth(services.factory, accounts, b"k" * 32, services.clock)
    start = threading.Barrier(40)

    def guess(n: int) -> None:
        start.wait()
        auth.login("anna", f"guess{n}", "192.0.2.7")

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    with services.factory() as session:
        checked = session.scalar(select(func.count()).select_from(LoginFailure))
    assert checked == FREE  # the rest were refused before their password was looked at
