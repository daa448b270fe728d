"""A local SMTP capture server (aiosmtpd): the demo's relay and the tests' sink.

It listens on 127.0.0.1, accepts every message, records its envelope and
saves it as an ``.eml`` file. Subclasses may answer otherwise (tests inject
4xx/5xx replies and dropped lines by overriding ``verdict``).
"""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller

from digest.files import private_dir, write_private

_UNSAFE = re.compile(r"[^A-Za-z0-9@._+-]+")


@dataclass(frozen=True)
class Captured:
    mail_from: str
    rcpt_to: tuple[str, ...]
    data: bytes
    path: Path | None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class CaptureHandler:
    def __init__(self, outbox: Path | None = None, *, keep: bool = True) -> None:
        """``keep``: hold each message in ``messages`` too (the tests read them; a
        long-running `digest dev-relay` only counts them)."""
        self.outbox = outbox
        self.keep = keep
        self.taken = 0  # messages accepted (also when not kept)
        self.messages: list[Captured] = []
        self._lock = threading.Lock()
        if outbox is not None:
            private_dir(outbox)  # captured messages hold live unsubscribe links
            self._seq = len(list(outbox.glob("*.eml")))
        else:
            self._seq = 0

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        """As Postfix does, offer RFC 2920 PIPELINING (aiosmtpd reads commands one by
        one from its buffer, so a pipelined group is answered in order)."""
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    def verdict(self, envelope: Any) -> str | None:
        """A reply to give instead of accepting (e.g. ``"451 4.3.0 try later"``)."""
        return None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        refusal = self.verdict(envelope)
        if refusal is not None:
            return refusal
        data = envelope.original_content or envelope.content
        with self._lock:
            self._seq += 1
            path = self._save(self._seq, envelope.rcpt_tos, data)
            self.taken += 1
            if self.keep:
                self.messages.append(
                    Captured(envelope.mail_from, tuple(envelope.rcpt_tos), bytes(data), path)
                )
            seq = self._seq
        return f"250 2.0.0 Ok: queued as {seq:06d}"

    def _save(self, seq: int, rcpts: list[str], data: bytes) -> Path | None:
        if self.outbox is None:
            return None
        name = _UNSAFE.sub("_", rcpts[0] if rcpts else "unknown")[:100]
        path = self.outbox / f"{seq:06d}-{name}.eml"
        write_private(path, bytes(data))
        return path


class CaptureServer:
    """``with CaptureServer(outbox) as server: … server.url …``"""

    def __init__(
        self, handler: CaptureHandler | None = None, port: int | None = None, **smtp: Any
    ) -> None:
        """``smtp``: aiosmtpd options, e.g. ``tls_context`` and ``require_starttls``,
        ``authenticator``, or ``ssl_context`` for implicit TLS."""
        self.handler = handler or CaptureHandler()
        self.port = port or free_port()
        self.implicit_tls = "ssl_context" in smtp
        self._controller = Controller(
            self.handler,
            hostname="127.0.0.1",
            port=self.port,
            server_hostname="capture.digest.local",
            ready_timeout=10,
            **smtp,
        )

    @property
    def url(self) -> str:
        return f"{'smtps' if self.implicit_tls else 'smtp'}://127.0.0.1:{self.port}"

    @property
    def messages(self) -> list[Captured]:
        return self.handler.messages

    def start(self) -> CaptureServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> CaptureServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
