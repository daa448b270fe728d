"""The web app under uvicorn, in a thread, for tests that speak HTTP to it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.applications import Starlette

from digest.capture import free_port
from digest.web.server import HEADER_TIMEOUT, config


@contextmanager
def serving(
    app: Starlette, port: int | None = None, header_timeout: float = HEADER_TIMEOUT
) -> Iterator[str]:
    """The app under uvicorn in a thread on 127.0.0.1; yields its base URL."""
    port = port or free_port()
    # The configuration `digest serve` runs with (header deadline, keep-alive, logs).
    server = uvicorn.Server(config(app, "127.0.0.1", port, "warning", header_timeout))
    thread = threading.Thread(target=server.run, daemon=True)
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
