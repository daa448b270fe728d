"""SMTP sessions: one reused aiosmtplib connection, its replies judged by ``replies``,
and the odd single message (a test copy, a confirmation).
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import NoReturn, Protocol

import aiosmtplib

from digest.compose import Message
from digest.config import SmtpTarget
from digest.config.parts import SmtpPart
from digest.errors import (
    DeliveryError,
    Kind,
    PermanentFailure,
    Refused,
    RelayUnavailable,
    TemporaryFailure,
)
from digest.send.pipeline import Line, LineLost, body, envelope
from digest.track.outcomes import Outcome


class Connection(Protocol):
    """One open line to a relay. ``send`` returns the 2xx reply, raises the relay's
    refusal as it said it (``Refused``, judged by the send) or a ``DeliveryError``
    when the line itself failed (``code`` None)."""

    async def open(self) -> None: ...

    async def send(
        self, message: Message, before_data: Awaitable[None] | None = None
    ) -> tuple[int, str]: ...

    async def close(self) -> None: ...


class Progress(Protocol):
    def advance(self, outcome: Outcome) -> None: ...


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait: to connect (greeting, TLS, login), for each command's reply,
    and for the reply after DATA. A relay that accepts and then hangs costs at
    most one of these, never the send."""

    connect: float = 30.0
    command: float = 60.0
    data: float = 180.0


class SmtpConnection:
    """An aiosmtplib connection that is opened lazily, reused for many messages,
    and reopened when the server closes it. With ``pipelining`` and a relay that
    offers it, the messages go by the fast path (``pipeline``) on the same line."""

    def __init__(
        self,
        target: SmtpTarget,
        timeouts: Timeouts | float,
        tls_context: ssl.SSLContext | None = None,
        pipelining: bool = True,
    ) -> None:
        self.target = target
        self.timeouts = (
            timeouts if isinstance(timeouts, Timeouts) else Timeouts(timeouts, timeouts, timeouts)
        )
        self.tls_context = tls_context
        self.pipelining = pipelining
        self.smtp: aiosmtplib.SMTP | None = None
        self.line: Line | None = None
        # What the relay said in its EHLO (name: parameters), kept past a takeover.
        self.extensions: dict[str, str] = {}
        self.midway = False  # a transaction was begun and not judged (see send)

    async def open(self) -> None:
        smtp = aiosmtplib.SMTP(
            hostname=self.target.host,
            port=self.target.port,
            use_tls=self.target.implicit_tls,
            # Explicit: STARTTLS when the URL asks for it, never opportunistically
            # (a failed upgrade would otherwise fail a relay that works in plain).
            start_tls=self.target.starttls,
            tls_context=self.tls_context,
            timeout=self.timeouts.connect,
        )
        try:
            await smtp.connect()
            if self.target.username:
                await smtp.login(self.target.username, self.target.password or "")
            if smtp.is_ehlo_or_helo_needed:
                # Greet now: the first message needs to know SIZE and SMTPUTF8.
                try:
                    await smtp.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await smtp.helo()
        except aiosmtplib.SMTPAuthenticationError as exc:
            smtp.close()
            raise RelayUnavailable(
                f"{self.target}: login refused: {exc.code} {exc.message}"
            ) from None
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
            smtp.close()
            raise TemporaryFailure(
                f"cannot connect to {self.target}: {exc}", kind=Kind.UNREACHABLE
            ) from None
        self.extensions = dict(smtp.esmtp_extensions)
        if self.pipelining and "pipelining" in self.extensions and smtp.transport is not None:
            # Greeted, upgraded and logged in: the rest of the line is ours.
            self.line = Line(smtp.transport)  # type: ignore[arg-type]
        else:
            self.smtp = smtp

    async def send(
        self, message: Message, before_data: Awaitable[None] | None = None
    ) -> tuple[int, str]:
        """Send one message. ``before_data`` is awaited between RCPT and DATA: the
        sender passes the commit of this connection's previous outcome, so the
        envelope of the next message overlaps it and nothing is accepted before it."""
        # Until the transaction ends in a reply we judged, the relay may be in the
        # middle of it (354 said, the body not sent): a task cancelled there leaves
        # a line that cannot be QUIT (the QUIT would be read as the body) nor reused.
        if self.midway:
            self._drop()
        self.midway = True
        try:
            reply = await self._send(message, before_data)
        except (Refused, DeliveryError):
            self.midway = False  # answered: the line was reset or dropped
            raise
        self.midway = False
        return reply

    async def _send(self, message: Message, before_data: Awaitable[None] | None) -> tuple[int, str]:
        if not self.connected:
            self._drop()
            await self.open()
        if message.smtputf8 and "smtputf8" not in self.extensions:
            # That one address cannot go this way; nothing was said to the relay.
            raise PermanentFailure(
                f"{message.envelope_to}: the address needs SMTPUTF8 (RFC 6531), "
                f"which {self.target} does not offer",
                recipient=message.envelope_to,
                kind=Kind.PERMANENT,
            )
        if self.line is not None:
            return await self._pipelined(self.line, message, before_data)
        smtp = self.smtp
        assert smtp is not None
        command = self.timeouts.command
        encoding = "utf-8" if message.smtputf8 else "ascii"
        in_data = False
        try:
            options = [f"SIZE={len(message.data)}"] if "size" in self.extensions else []
            if message.smtputf8:
                options.append("SMTPUTF8")
            # mail/rcpt/data rather than sendmail(): the bytes are already CRLF,
            # so the size need not be recomputed by another pass over them.
            await smtp.mail(
                message.envelope_from, options=options, encoding=encoding, timeout=command
            )
            await smtp.rcpt(message.envelope_to, encoding=encoding, timeout=command)
            if before_data is not None:
                await before_data
            in_data = True
            response = await smtp.data(message.data, timeout=self.timeouts.data)
            return response.code, response.message
        except aiosmtplib.SMTPResponseException as exc:
            refusal = exc.code, exc.message
        except (aiosmtplib.SMTPException, OSError) as exc:
            # Disconnected, timed out, reset: the line is gone; the next send reconnects.
            self._drop()
            if in_data:  # the body may have gone: aiosmtplib does not say how far
                raise ambiguous(exc) from None
            raise TemporaryFailure(
                f"connection lost: {exc or type(exc).__name__}", kind=Kind.CONNECTION
            ) from None
        await self._refused(*refusal, message)

    @property
    def connected(self) -> bool:
        if self.line is not None:
            return self.line.open
        return self.smtp is not None and self.smtp.is_connected

    async def _pipelined(
        self, line: Line, message: Message, before_data: Awaitable[None] | None
    ) -> tuple[int, str]:
        """One message in two round trips: the envelope and DATA in one write, then
        the body. Nothing is accepted before ``before_data``, as on the slow path."""
        timeouts = self.timeouts
        try:
            line.write(envelope(message, "size" in self.extensions))
            mail, rcpt, data = await self._group_replies(line, message)
            refused = next((r for r in (mail, rcpt) if r[0] >= 300), None)
            if refused is not None or data[0] != 354:
                if data[0] == 354:  # DATA taken in spite of a refusal: end it empty
                    line.write(b".\r\n")
                    await line.reply(timeouts.data)
                await self._refused(*(refused or data), message)
            if before_data is not None:
                await before_data
            line.write(body(message.data))
            try:
                code, text = await line.reply(timeouts.data)
            except LineLost as exc:
                self._drop()
                raise ambiguous(exc) from None
        except LineLost as exc:
            self._drop()
            raise TemporaryFailure(f"connection lost: {exc}", kind=Kind.CONNECTION) from None
        if not 200 <= code < 300:
            await self._refused(code, text, message)
        return code, text

    async def _group_replies(
        self, line: Line, message: Message
    ) -> tuple[tuple[int, str], tuple[int, str], tuple[int, str]]:
        """The three replies to MAIL, RCPT and DATA. A server that refuses and then
        closes the line (``421 4.7.0 … closing connection`` at RCPT) has said why:
        that reply is the reason, not the closed line (issue 25)."""
        replies: list[tuple[int, str]] = []
        try:
            while len(replies) < 3:
                replies.append(await line.reply(self.timeouts.command))
        except LineLost:
            said = next((r for r in replies if r[0] >= 400), None)
            if said is None:
                raise
            self._drop()
            code, text = said
            raise Refused(code, text, message.envelope_to) from None
        return replies[0], replies[1], replies[2]

    async def _refused(self, code: int, text: str, message: Message) -> NoReturn:
        """Raise the refusal as said, the line made ready for the next message."""
        if code == 421:
            self._drop()  # RFC 5321 §3.8: 421 closes the channel
        else:
            await self._reset()
        raise Refused(code, text, message.envelope_to) from None

    async def _reset(self) -> None:
        # After a refusal the envelope must be reset before the next message.
        try:
            if self.line is not None:
                self.line.write(b"RSET\r\n")
                await self.line.reply(self.timeouts.command)
            elif self.smtp is not None:
                await self.smtp.rset(timeout=self.timeouts.command)
        except (aiosmtplib.SMTPException, OSError, LineLost):
            self._drop()

    def _drop(self) -> None:
        if self.line is not None:
            self.line.close()
            self.line = None
        if self.smtp is not None:
            self.smtp.close()
            self.smtp = None

    async def close(self) -> None:
        if self.midway:
            self._drop()  # interrupted mid-transaction: nothing to say goodbye on
            return
        try:
            if self.line is not None and self.line.open:
                self.line.write(b"QUIT\r\n")
                await self.line.reply(self.timeouts.command)
            elif self.smtp is not None and self.smtp.is_connected:
                await self.smtp.quit(timeout=self.timeouts.command)
        except (aiosmtplib.SMTPException, OSError, LineLost):
            pass
        finally:
            self._drop()


def connector(smtp: SmtpPart) -> Callable[[SmtpTarget], SmtpConnection]:
    """New connections to a relay, all with the settings' timeouts and TLS context."""
    tls = smtp.tls_context()
    timeouts = Timeouts(smtp.connect_timeout, smtp.command_timeout, smtp.data_timeout)
    return lambda target: SmtpConnection(target, timeouts, tls, pipelining=smtp.pipelining)


@dataclass(frozen=True)
class Single:
    """The outcome of one message sent outside an edition (test copy, confirmation)."""

    message: Message
    code: int | None
    reply: str

    @property
    def ok(self) -> bool:
        return self.code is not None and 200 <= self.code < 300


async def send_each(
    connection: SmtpConnection,
    messages: Sequence[Message],
    sign: Callable[[bytes], bytes] | None = None,
) -> list[Single]:
    """Messages one by one over one connection: a refusal is recorded for that
    message and the rest go on. For the few mails that are not an edition."""
    results = []
    try:
        for message in messages:
            data = sign(message.data) if sign is not None else message.data
            try:
                code, reply = await connection.send(replace(message, data=data))
            except (Refused, DeliveryError) as exc:
                results.append(Single(message, exc.code, str(exc)))
            else:
                results.append(Single(message, code, reply))
    finally:
        await connection.close()
    return results


async def probe(connection: Connection) -> None:
    """Open and close one connection before claiming anything: a relay that is
    down fails the send before a single delivery changes state."""
    try:
        await connection.open()
    except TemporaryFailure as exc:
        raise RelayUnavailable(str(exc)) from None
    finally:
        await connection.close()


def ambiguous(exc: BaseException) -> TemporaryFailure:
    """The line dropped after the message's data went and before its final reply
    (Postfix: "while sending end of data -- message may be sent more than once"):
    retried, with the same Message-ID, and said (issue 25)."""
    return TemporaryFailure(
        f"connection lost after the end of data ({exc or type(exc).__name__}): "
        "the message may have been delivered and may arrive twice",
        kind=Kind.CONNECTION,
        ambiguous=True,
    )
