"""The suite's in-process web server holds its port from the moment it is chosen
(tests/support/serving.py): a port found free and released again was taken by
another connection before uvicorn bound it ("[Errno 98] address already in use"
in a clean-clone CI run)."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.support.serving import reserved_port, serving


def test_a_reserved_port_is_nobody_elses_until_the_app_serves_on_it() -> None:
    port = reserved_port()
    with socket.socket() as other, pytest.raises(OSError, match="in use"):
        other.bind(("127.0.0.1", port))  # another process's listener or connection
    app = Starlette(routes=[Route("/", lambda _request: PlainTextResponse("here"))])
    with serving(app, port) as base:
        assert base == f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(base + "/", timeout=10) as answer:  # nosec B310
            assert answer.read() == b"here"
