"""Issue 24 §6 over real HTTP (uvicorn on 127.0.0.1), on both databases: a
request is bounded in time as well as in bytes, an upload is read only for
someone allowed to make it, and no JSON or form field of any door (nesting, NUL
bytes, path-like names) gets a 500."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pytest

from digest.config import PROJECT_ROOT
from digest.wiring import Services
from tests.support.web import Client, fetch


def connect(base: str) -> socket.socket:
    url = urlsplit(base)
    assert url.hostname and url.port
    return socket.create_connection((url.hostname, url.port), timeout=5)


def test_a_trickled_body_is_cut_off_at_its_deadline(
    site: tuple[Services, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body a byte every 4 s was still open after 40 s: headers had a deadline,
    bodies none. Here the deadline is 1 s (10 s in `digest serve`)."""
    import digest.web.guard

    monkeypatch.setattr(digest.web.guard, "BODY_SECONDS", 1.0)
    _, base = site
    with connect(base) as sock:
        sock.sendall(
            b"POST /subscribe HTTP/1.1\r\nHost: x\r\nContent-Length: 60\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n\r\n"
        )
        answer = b""
        for _ in range(30):  # at most 30 trickled bytes, 0.2 s apart: 6 s
            try:
                sock.sendall(b"e")
                sock.settimeout(0.2)
                answer = sock.recv(200)
            except TimeoutError:
                continue
            except OSError:
                break
            if answer:
                break
    assert answer.startswith(b"HTTP/1.1 408"), answer


def test_an_upload_is_refused_before_its_body_is_read(site: tuple[Services, str]) -> None:
    """`/desk/readers/import` read 5 MB from anyone before it looked at who was
    logged in. An anonymous one is answered with only its headers sent."""
    _, base = site
    with connect(base) as sock:
        sock.sendall(
            b"POST /desk/readers/import HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n"
            b"Content-Type: multipart/form-data; boundary=B\r\n\r\n--B\r\n"
        )
        sock.settimeout(5)
        status = sock.makefile("rb").readline()
    assert status.split()[1] in (b"303", b"403"), status


def test_deep_json_and_nul_bytes_get_a_4xx_never_a_500(site: tuple[Services, str]) -> None:
    services, base = site
    deep = b"[" * 30000 + b"]" * 30000
    for body in (deep, b'{"email": ' + deep + b"}", b'{"email": "a\\u0000@example.ru"}'):
        status, _, _ = fetch(
            f"{base}/subscribe", data=body, headers={"Content-Type": "application/json"}
        )
        assert 400 <= status < 500, (status, body[:40])
    client = Client(base)
    token = client.csrf("/desk/login")
    form = {"csrf": token, "username": "anna\x00", "password": "x", "next": "/desk/"}
    assert 400 <= client.request("/desk/login", form)[0] < 500
    assert client.login() == 303
    for query in ("/desk/readers?q=reader%00", "/desk/readers?q=%00"):
        status = client.request(query)[0]
        assert 400 <= status < 500 or status == 200, (query, status)
    assert client.request("/subscribe?list=%00")[0] < 500
    del services


def test_a_schedule_named_from_outside_is_one_of_the_known_never_a_path(
    site: tuple[Services, str],
) -> None:
    """`POST /desk/prepare` with schedule=../pyproject read the project's
    pyproject.toml and showed its keys and the install path."""
    _, base = site
    client = Client(base)
    assert client.login() == 303
    for name in ("../pyproject", "../../etc/x", "daily/../daily", "/etc/passwd", "daily.toml"):
        token = client.csrf("/desk/")
        status, headers, _ = client.request("/desk/prepare", {"csrf": token, "schedule": name})
        assert status == 303, (name, status)
        _, _, page = client.request(headers["Location"])
        assert "нет такого расписания" in page or "no schedule" in page, name
        for leak in (str(PROJECT_ROOT), "build-system", "setuptools", "schedules/"):
            assert leak not in page, (name, leak)


def test_every_page_runs_only_scripts_of_its_own_origin(site: tuple[Services, str]) -> None:
    """§7: a Content-Security-Policy with script-src on the desk and the archive,
    which shows feed-derived HTML on the desk's origin; no inline script anywhere."""
    import re

    services, base = site
    client = Client(base)
    assert client.login() == 303
    edition = services.editions.build(services.schedule("daily"), services.clock().date())
    paths = [
        "/desk/login",
        "/desk/",
        f"/desk/editions/{edition.id}",
        f"/desk/editions/{edition.id}/delivery",
        "/desk/readers",
        "/archive/",
        "/subscribe",
    ]
    for path in paths:
        status, headers, page = client.request(path)
        assert status == 200, path
        policy = headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "object-src 'none'" in policy, (path, policy)
        assert "base-uri 'none'" in policy and "frame-ancestors 'none'" in policy, path
        inline = [s for s in re.findall(r"<script[^>]*>", page) if "src=" not in s]
        assert inline == [], (path, inline)
    status, headers, script = client.request("/desk/static/delivery.js")
    assert status == 200 and "javascript" in headers["Content-Type"] and "fetch(" in script
    for name in ("..%2F..%2Fpyproject.toml", "layout.html.j2", "nothing.js"):
        assert client.request(f"/desk/static/{name}")[0] == 404, name
    _, headers, _ = client.request(f"/desk/editions/{edition.id}/frame")
    assert "script-src 'none'" in headers["Content-Security-Policy"]  # the letter: none
