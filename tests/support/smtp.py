"""SMTP for the tests: a real server (aiosmtpd on 127.0.0.1) whose replies can be
scripted per recipient, and a send through it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from digest.capture import CaptureHandler, CaptureServer
from digest.config import parse_smtp_url
from digest.models import Edition
from digest.send import RelayPool, RunResult, SmtpConnection, run_async
from digest.wiring import Services


class ScriptedHandler(CaptureHandler):
    """Accepts everything unless a rule for the recipient says otherwise.

    A rule maps a recipient address to a reply line (``"550 5.1.1 no such user"``)
    or to ``"drop"`` (close the connection during DATA, no reply at all)."""

    def __init__(self, outbox: Path | None = None) -> None:
        super().__init__(outbox)
        self.rules: dict[str, str] = {}
        self.attempts: dict[str, int] = {}
        self.on_data: Callable[[Any], None] | None = None  # a look at the world at DATA

    def verdict(self, envelope: Any) -> str | None:
        if self.on_data is not None:
            self.on_data(envelope)
        rcpt = envelope.rcpt_tos[0]
        self.attempts[rcpt] = self.attempts.get(rcpt, 0) + 1
        return self.rules.get(rcpt)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.rules.get(envelope.rcpt_tos[0]) == "drop":
            self.attempts[envelope.rcpt_tos[0]] = self.attempts.get(envelope.rcpt_tos[0], 0) + 1
            server.transport.close()
            return "421 4.4.2 dropped"  # never reaches the client: the line is gone
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[CaptureServer]:
    with CaptureServer(ScriptedHandler(tmp_path / "outbox")) as server:
        yield server


def send_through(services: Services, edition: Edition, url: str, worker: str = "test") -> RunResult:
    """Start ``edition`` and send every due delivery through the relay at ``url``."""
    schedule = services.schedule(edition.schedule)
    services.lifecycle.start_sending(schedule, edition)
    run = services.sender.send_run(
        schedule,
        edition,
        lambda t: SmtpConnection(t, 10),
        worker=worker,
        relays=RelayPool([parse_smtp_url(url)]),
    )
    return run_async(run.run())
