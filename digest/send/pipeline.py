"""RFC 2920 PIPELINING: one write for MAIL FROM, RCPT TO and DATA, the body written
as prepared bytes, each reply still judged on its own.

aiosmtplib connects, greets, upgrades to TLS and logs in; once the relay has
said PIPELINING, ``Line`` takes the open transport over (``set_protocol``) and
speaks the rest itself. Why not through aiosmtplib: its protocol parses one reply
per arrival of data and drops what follows, so three pipelined replies in one
TCP segment would hang it; and its ``data()`` runs two regular expressions over
every 60 KB message. ``DIGEST_SMTP_PIPELINING=0`` keeps aiosmtplib for all of it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from digest.compose import Message

MAX_REPLY = 64 * 1024  # a reply longer than this is not SMTP (RFC 5321 §4.5.3.1.5: 512)


class LineLost(Exception):
    """The connection closed, timed out or answered with something that is not SMTP."""


class Line(asyncio.Protocol):
    """The reading half of a taken-over connection: complete replies, in order,
    however the server's bytes arrive (several replies in one segment, one reply
    across several)."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self._buffer = bytearray()
        self._replies: deque[tuple[int, str]] = deque()
        self._lines: list[bytes] = []
        self._waiter: asyncio.Future[None] | None = None
        self._lost: str | None = None
        transport.set_protocol(self)

    # -- asyncio.Protocol -------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[: end + 1])
            del self._buffer[: end + 1]
            self._line(line)
        if len(self._buffer) > MAX_REPLY:
            self._fail("the relay sent an over-long line")
        self._wake()

    def _line(self, line: bytes) -> None:
        if len(line) < 4 or not line[:3].isdigit() or line[3:4] not in (b" ", b"-", b"\r", b"\n"):
            self._fail(f"not an SMTP reply: {line[:80]!r}")
            return
        self._lines.append(line[4:].strip())
        if line[3:4] != b"-":  # the last line of a reply
            text = b"\n".join(self._lines).decode("utf-8", "replace")
            self._replies.append((int(line[:3]), text))
            self._lines = []

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(f"connection lost: {exc}" if exc else "connection closed by the relay")

    def eof_received(self) -> bool:
        self._fail("connection closed by the relay")
        return False

    def _fail(self, why: str) -> None:
        if self._lost is None:
            self._lost = why
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # -- used by the sender -----------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._lost is not None or self.transport.is_closing():
            raise LineLost(self._lost or "connection closed")
        self.transport.write(data)

    async def reply(self, timeout: float) -> tuple[int, str]:
        """The next reply; ``LineLost`` when none comes in ``timeout`` seconds."""
        while not self._replies:
            if self._lost is not None:
                raise LineLost(self._lost)
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self._waiter, timeout)
            except TimeoutError:
                raise LineLost(f"no reply in {timeout:.0f} s") from None
            finally:
                self._waiter = None
        return self._replies.popleft()

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.transport.close()

    @property
    def open(self) -> bool:
        return self._lost is None and not self.transport.is_closing()


def envelope(message: Message, size: bool) -> bytes:
    """MAIL FROM, RCPT TO and DATA in one write (RFC 2920 §3.1: DATA ends a group)."""
    options = f" SIZE={len(message.data)}" if size else ""
    if message.smtputf8:
        options += " SMTPUTF8"
    text = f"MAIL FROM:<{message.envelope_from}>{options}\r\nRCPT TO:<{message.envelope_to}>\r\n"
    if any(c in message.envelope_from + message.envelope_to for c in "\r\n<>"):
        raise ValueError("an envelope address holds a line break or angle bracket")
    return text.encode("utf-8" if message.smtputf8 else "ascii") + b"DATA\r\n"


def body(data: bytes) -> bytes:
    """The message as DATA carries it: lines that start with a dot doubled (RFC 5321
    §4.5.2) and the final ``.``. The composer's bytes are CRLF already and their
    base64 parts hold no dot, so this is one search and, rarely, one replace."""
    if data.startswith(b"."):
        data = b"." + data
    if b"\r\n." in data:
        data = data.replace(b"\r\n.", b"\r\n..")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"
