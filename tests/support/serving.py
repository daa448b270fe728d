"""The web app under uvicorn, in a thread, for tests that speak HTTP to it.

The port is held from the moment it is chosen: ``reserved_port()`` binds a
socket and keeps it, and ``serving`` hands that socket to uvicorn. A port found
free and closed again (``free_port``) can be taken by any connection's own
ephemeral port before uvicorn binds it: a clean-clone CI run met "[Errno 98]
address already in use" that way."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.applications import Starlette

from digest.web.server import HEADER_TIMEOUT, config

_held: dict[int, socket.socket] = {}
_lock = threading.Lock()


def reserved_port() -> int:
    """A port on 127.0.0.1 bound now and held until ``serving`` uses it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    with _lock:
        _held[port] = sock
    return port


@contextmanager
def serving(
    app: Starlette, port: int | None = None, header_timeout: float = HEADER_TIMEOUT
) -> Iterator[str]:
    """The app under uvicorn in a thread on 127.0.0.1, on ``port`` (given by
    ``reserved_port``) or a new one; yields its base URL."""
    port = port or reserved_port()
    with _lock:
        sock = _held.pop(port, None)
    assert sock is not None, f"port {port} was not held: take it with reserved_port()"
    # The configuration `digest serve` runs with (header deadline, keep-alive, logs).
    server = uvicorn.Server(config(app, "127.0.0.1", port, "warning", header_timeout))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
