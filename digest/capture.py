"""A local SMTP capture server (aiosmtpd): the demo's relay and the tests' sink.

It listens on 127.0.0.1, accepts every message, records its envelope and
saves it as an ``.eml`` file. Subclasses may answer otherwise (tests inject
4xx/5xx replies and dropped lines by overriding ``verdict``).

Its DATA is read a message at a time, not a line at a time (``WholeDataSMTP``).
aiosmtpd reads a message's content line by line (``readuntil(b"\\r\\n")`` and
a few Python steps per line): a 60 KB letter is about a thousand awaits, and
in the suite's send tests that was a sixth of the test processes' CPU (issue
26). Here the content is read in the pieces between ``.\\r\\n`` (the end of
data is always one of them), then checked and un-dot-stuffed as a whole, with
aiosmtpd's own rules and replies: a line over ``line_length_limit`` is 500, a
message over ``data_size_limit`` is 552, both only once the end of data has
come (RFC 5321 4.2.5), and the connection goes on. What follows the end of data
in the same packet (a pipelined next MAIL) stays in the reader for the next
command. Everything else (the handler's hook, the reply, the state after) is
aiosmtpd's."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP

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


END = b"\r\n.\r\n"
PIECE = b".\r\n"  # every end of data ends so; most lines do not


class WholeDataSMTP(SMTP):
    """aiosmtpd's SMTP, its DATA read as described above."""

    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        content, refusal = await self._read_content()
        if refusal is not None:
            await self.push(refusal)
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            return
        await self._deliver(content)

    async def _read_content(self) -> tuple[bytes, str | None]:
        """The message up to its end of data (un-dot-stuffed), or a refusal."""
        data, total = await self._until_end()
        refusal = self._refusal(data, total - len(PIECE))
        if refusal is not None:
            return b"", refusal
        del data[-len(PIECE) :]  # the end's ".\r\n" (its CRLF ends the last line)
        if data.startswith(b"."):
            del data[0]
        return bytes(data).replace(b"\r\n.", b"\r\n"), None

    async def _until_end(self) -> tuple[bytearray, int]:
        """The content up to and including the end of data, and its length. Past
        the size limit only its head is kept, enough to say which of aiosmtpd's
        refusals would have come first (see _refusal), and the end is watched for."""
        size_limit, reader = self.data_size_limit or 0, self._reader
        keep = size_limit + 2 * self.line_length_limit + len(END) if size_limit else 0
        # The reader's limit is aiosmtpd's line limit; a piece may be a whole message.
        limit: int = getattr(reader, "_limit")  # noqa: B009 - private, no public setter
        setattr(reader, "_limit", max(limit, size_limit + len(END), 1 << 20))  # noqa: B010
        data, total, tail = bytearray(), 0, b""
        try:
            while total != len(PIECE) and tail != END:
                try:
                    piece = await reader.readuntil(PIECE)
                except asyncio.LimitOverrunError as exc:
                    piece = await reader.readexactly(exc.consumed)
                total += len(piece)
                tail = (tail + piece[-len(END) :])[-len(END) :]  # never a whole piece copied
                data += piece[: keep - len(data)] if keep else piece
        finally:
            setattr(reader, "_limit", limit)  # noqa: B010
        return data, total

    def _refusal(self, data: bytearray, size: int) -> str | None:
        """aiosmtpd's answer to content of ``size`` bytes whose head is ``data``:
        a line longer than its limit is 500, content past the size limit 552,
        whichever it meets first reading line by line; None when neither."""
        size_limit, line_limit = self.data_size_limit or 0, self.line_length_limit
        lines = data.split(b"\r\n")
        if (not size_limit or size <= size_limit) and max(map(len, lines)) + 2 <= line_limit:
            return None  # the common case, decided without a loop in Python
        count, too_long = 0, "500 Line too long (see RFC5321 4.5.3.1.6)"
        for line in lines:
            # Past the limit without its CRLF, aiosmtpd's reader stops before counting
            # it; within it but not with its CRLF, it is counted first, then judged.
            if len(line) > line_limit:
                return too_long
            count += len(line) + 2
            if size_limit and count > size_limit:
                return "552 Error: Too much mail data"
            if len(line) + 2 > line_limit:
                return too_long
        return None

    async def _deliver(self, original: bytes) -> None:
        """As aiosmtpd does once the content is in (its decoding, hook and reply)."""
        assert self.envelope is not None
        content: str | bytes = original
        if self._decode_data:
            if self.enable_SMTPUTF8:
                content = original.decode("utf-8", errors="surrogateescape")
            else:
                try:
                    content = original.decode("ascii", errors="strict")
                except UnicodeDecodeError:
                    await self.push("500 Error: strict ASCII mode")
                    return
        self.envelope.content = content
        self.envelope.original_content = original
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)


class _Controller(Controller):
    def factory(self) -> WholeDataSMTP:
        """aiosmtpd's server, its DATA read a message at a time (WholeDataSMTP)."""
        return WholeDataSMTP(self.handler, **self.SMTP_kwargs)


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
        self._controller = _Controller(
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
