"""Send: asyncio + aiosmtplib, a pool of reused connections fed from claimed batches.

The flow (listmonk's pipe, procrastinate's claims): claim a batch of due
deliveries → compose each message from its variant's prepared bytes → N
connection workers send → outcomes are written back in batches. All database
work runs on one worker thread, and the next batch is claimed while the
current one is sending, so the event loop never waits on SQL.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
from collections import deque
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

import aiosmtplib

from digest.compose import Message
from digest.config import SmtpTarget
from digest.errors import (
    ComposeError,
    DeliveryError,
    PermanentFailure,
    RelayUnavailable,
    TemporaryFailure,
)
from digest.queries import Claim
from digest.track import DeliveryStore, Outcome, classify

log = logging.getLogger(__name__)
T = TypeVar("T")


class Connection(Protocol):
    """One open line to a relay. ``send`` returns the 2xx reply or raises a
    classified ``DeliveryError`` (``code`` None: the connection itself failed)."""

    async def send(self, message: Message) -> tuple[int, str]: ...

    async def close(self) -> None: ...


class Progress(Protocol):
    def advance(self, outcome: Outcome) -> None: ...


class SmtpConnection:
    """An aiosmtplib connection that is opened lazily, reused for many messages,
    and reopened when the server closes it."""

    def __init__(
        self,
        target: SmtpTarget,
        timeout: float,
        tls_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.tls_context = tls_context
        self.local_hostname = local_hostname
        self.smtp: aiosmtplib.SMTP | None = None

    async def open(self) -> None:
        smtp = aiosmtplib.SMTP(
            hostname=self.target.host,
            port=self.target.port,
            use_tls=self.target.implicit_tls,
            # Explicit: STARTTLS when the URL asks for it, never opportunistically
            # (a failed upgrade would otherwise fail a relay that works in plain).
            start_tls=self.target.starttls,
            tls_context=self.tls_context,
            timeout=self.timeout,
            local_hostname=self.local_hostname,
        )
        try:
            await smtp.connect()
            if self.target.username:
                await smtp.login(self.target.username, self.target.password or "")
        except aiosmtplib.SMTPAuthenticationError as exc:
            smtp.close()
            raise RelayUnavailable(
                f"{self.target}: login refused: {exc.code} {exc.message}"
            ) from None
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
            smtp.close()
            raise TemporaryFailure(f"cannot connect to {self.target}: {exc}") from None
        self.smtp = smtp

    async def send(self, message: Message) -> tuple[int, str]:
        if self.smtp is None or not self.smtp.is_connected:
            await self.open()
        smtp = self.smtp
        assert smtp is not None
        try:
            options = [f"SIZE={len(message.data)}"] if smtp.supports_extension("size") else []
            # mail/rcpt/data rather than sendmail(): the bytes are already CRLF,
            # so the size need not be recomputed by another pass over them.
            await smtp.mail(message.envelope_from, options=options)
            await smtp.rcpt(message.envelope_to)
            response = await smtp.data(message.data)
            return response.code, response.message
        except aiosmtplib.SMTPResponseException as exc:
            error = classify(exc.code, exc.message, message.envelope_to)
            await self._reset()
            raise (error or TemporaryFailure(exc.message, code=exc.code)) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            # Disconnected, timed out, reset: the line is gone; the next send reconnects.
            self._drop()
            raise TemporaryFailure(f"connection lost: {exc or type(exc).__name__}") from None

    async def _reset(self) -> None:
        # After a refusal the envelope must be reset before the next message.
        if self.smtp is None:
            return
        try:
            await self.smtp.rset()
        except (aiosmtplib.SMTPException, OSError):
            self._drop()

    def _drop(self) -> None:
        if self.smtp is not None:
            self.smtp.close()
            self.smtp = None

    async def close(self) -> None:
        if self.smtp is None:
            return
        try:
            if self.smtp.is_connected:
                await self.smtp.quit()
        except (aiosmtplib.SMTPException, OSError):
            pass
        finally:
            self._drop()


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class RunResult:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    suppressed: int = 0
    claimed: int = 0
    aborted: str | None = None


class SendRun:
    """One pass over an edition's due deliveries."""

    def __init__(
        self,
        store: DeliveryStore,
        compose: Callable[[Claim], Message],
        connect: Callable[[], Connection],
        *,
        clock: Callable[[], datetime],
        connections: int = 8,
        batch_size: int = 500,
        limit: int | None = None,
        progress: Progress | None = None,
        abort_after_connection_failures: int | None = None,
    ) -> None:
        self.store = store
        self.compose = compose
        self.connect = connect
        self.clock = clock
        self.connections = connections
        self.batch_size = batch_size
        self.progress = progress
        self.abort_after = abort_after_connection_failures or max(3, 2 * connections)
        self.result = RunResult()
        self._outcomes: list[Outcome] = []
        self._flushes: list[asyncio.Future[None]] = []
        self._connection_failures = 0
        self._stop = asyncio.Event()
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="digest-db")
        self._claims: deque[Claim] = deque()
        self._refill: asyncio.Future[None] | None = None
        self._budget = limit
        self._exhausted = False

    async def _in_db(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    async def run(self) -> RunResult:
        try:
            await asyncio.gather(*(self._worker() for _ in range(self.connections)))
        finally:
            if self._refill is not None:
                await self._refill  # a prefetched batch goes back with the release below
            self._flush()
            await asyncio.gather(*self._flushes)
            released = await self._in_db(self.store.release, self.clock())
            if released:
                log.info("released %d claimed but unsent deliveries", released)
            self._db.shutdown(wait=True)
        return self.result

    async def _worker(self) -> None:
        """One connection: take the next claim, compose it, send it, record it."""
        connection = self.connect()
        try:
            while (claim := await self._next_claim()) is not None:
                try:
                    message = self.compose(claim)
                except ComposeError as exc:
                    error = PermanentFailure(str(exc))
                    self._record(
                        Outcome.from_error(
                            claim.delivery_id, claim.attempts + 1, self.clock(), error, None
                        )
                    )
                    continue
                self._record(await self._deliver(connection, claim, message))
        finally:
            await connection.close()

    async def _next_claim(self) -> Claim | None:
        while not self._claims:
            if self._exhausted or self._stop.is_set():
                return None
            self._start_refill()
            assert self._refill is not None
            await self._refill
        if self._stop.is_set():
            return None  # what is left is released at the end
        # Claim the next batch while this one is being sent.
        if len(self._claims) < self.batch_size // 2:
            self._start_refill()
        return self._claims.popleft()

    def _start_refill(self) -> None:
        if self._refill is not None or self._exhausted:
            return
        size = self.batch_size if self._budget is None else min(self.batch_size, self._budget)
        if size <= 0:
            self._exhausted = True
            return
        self._refill = asyncio.ensure_future(self._claim(size))

    async def _claim(self, size: int) -> None:
        try:
            claims, suppressed = await self._in_db(self.store.claim, size, self.clock())
        finally:
            self._refill = None
        self.result.suppressed += suppressed
        self.result.claimed += len(claims)
        if self._budget is not None:
            self._budget -= len(claims)
        # Nothing due is left only when a claim finds nothing at all: a batch that
        # was all suppressed (unsubscribed mid-send) asks again.
        if not claims and not suppressed:
            self._exhausted = True
        self._claims.extend(claims)

    async def _deliver(self, connection: Connection, claim: Claim, message: Message) -> Outcome:
        attempts = claim.attempts + 1
        try:
            code, reply = await connection.send(message)
        except DeliveryError as error:
            if error.code is None:
                self._connection_failed(error)
            return Outcome.from_error(
                claim.delivery_id, attempts, self.clock(), error, message.message_id
            )
        self._connection_failures = 0
        return Outcome.sent(
            claim.delivery_id, attempts, self.clock(), code, reply, message.message_id
        )

    def _connection_failed(self, error: DeliveryError) -> None:
        self._connection_failures += 1
        if self._connection_failures >= self.abort_after and not self._stop.is_set():
            self.result.aborted = (
                f"{self._connection_failures} connection failures in a row: {error}"
            )
            log.error("stopping the send: %s", self.result.aborted)
            self._stop.set()

    def _record(self, outcome: Outcome) -> None:
        self._outcomes.append(outcome)
        status = outcome.status.value
        if status == "sent":
            self.result.sent += 1
        elif status == "deferred":
            self.result.deferred += 1
        else:
            self.result.failed += 1
        if self.progress is not None:
            self.progress.advance(outcome)
        if len(self._outcomes) >= self.batch_size:
            self._flush()

    def _flush(self) -> None:
        if not self._outcomes:
            return
        batch, self._outcomes = self._outcomes, []
        self._flushes.append(asyncio.ensure_future(self._in_db(self.store.record, batch)))


async def probe(connection: SmtpConnection) -> None:
    """Open and close one connection before claiming anything: a relay that is
    down fails the send before a single delivery changes state."""
    try:
        await connection.open()
    except TemporaryFailure as exc:
        raise RelayUnavailable(str(exc)) from None
    finally:
        await connection.close()


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop where it is installed (it speeds up the socket work)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(coro)
    return uvloop.run(coro)
