"""How ``digest serve`` runs the web app under uvicorn: one configuration, used
by the command and by the tests that speak HTTP to it.

- A client gets ``HEADER_TIMEOUT`` seconds to send a request's headers: uvicorn
  itself waits for ever on a client that trickles them a byte at a time
  (slowloris), which holds a connection per attacker.
- Idle keep-alive connections close after ``KEEP_ALIVE`` seconds.
- The access log is ours (no uvicorn log config), and every line has its tokens
  masked: ``/u/``, ``/p/``, ``/confirm/``, ``/c/`` and ``/o/`` URLs carry
  credentials that do not expire, so they never reach a log file.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT = 10.0
KEEP_ALIVE = 5.0


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's headers."""

    header_timeout = HEADER_TIMEOUT
    _deadline: asyncio.TimerHandle | None = None
    _armed_for: object = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is not self._armed_for:
            self._disarm()  # a new request's headers are in: it is under way

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()  # the next request on this connection gets its own deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._armed_for = self.cycle  # the request before the one we wait for
        self._deadline = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.cycle is self._armed_for:  # no new request started in time
            self.transport.close()


def config(
    app: ASGIApp,
    host: str,
    port: int,
    log_level: str,
    header_timeout: float = HEADER_TIMEOUT,
    **extra: Any,
) -> uvicorn.Config:
    protocol = type("Protocol", (HeaderTimeoutProtocol,), {"header_timeout": header_timeout})
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        timeout_keep_alive=int(KEEP_ALIVE),
        log_config=None,  # our handlers, with MaskTokens on them (logs.setup)
        log_level=log_level.lower(),
        **extra,
    )
