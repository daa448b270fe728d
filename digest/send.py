"""Send: asyncio + aiosmtplib, a pool of reused connections fed from claimed batches.

The flow (listmonk's pipe, procrastinate's claims): claim a batch of due
deliveries → compose each message from its variant's prepared bytes → N
connection workers send → outcomes are written back in batches. All database
work runs on one worker thread, and the next batch is claimed while the
current one is sending, so the event loop never waits on SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import signal
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

import aiosmtplib
from sqlalchemy.orm import Session, sessionmaker

from digest import queries
from digest.compose import Message
from digest.config import Settings, SmtpTarget
from digest.db import transaction
from digest.errors import (
    ComposeError,
    DeliveryError,
    Kind,
    PermanentFailure,
    RelayUnavailable,
    TemporaryFailure,
)
from digest.models import DeliveryStatus
from digest.queries import Claim
from digest.replies import NEGATIVE_FEEDBACK, classify
from digest.track import DeliveryStore, Outcome, RetryPolicy

log = logging.getLogger(__name__)
T = TypeVar("T")


class Connection(Protocol):
    """One open line to a relay. ``send`` returns the 2xx reply or raises a
    classified ``DeliveryError`` (``code`` None: the connection itself failed)."""

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
    and reopened when the server closes it."""

    def __init__(
        self,
        target: SmtpTarget,
        timeouts: Timeouts | float,
        tls_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        self.target = target
        self.timeouts = (
            timeouts if isinstance(timeouts, Timeouts) else Timeouts(timeouts, timeouts, timeouts)
        )
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
            timeout=self.timeouts.connect,
            local_hostname=self.local_hostname,
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
        self.smtp = smtp

    async def send(
        self, message: Message, before_data: Awaitable[None] | None = None
    ) -> tuple[int, str]:
        """Send one message. ``before_data`` is awaited between RCPT and DATA: the
        sender passes the commit of this connection's previous outcome, so the
        envelope of the next message overlaps it and nothing is accepted before it."""
        if self.smtp is None or not self.smtp.is_connected:
            await self.open()
        smtp = self.smtp
        assert smtp is not None
        command = self.timeouts.command
        if message.smtputf8 and not smtp.supports_extension("smtputf8"):
            # That one address cannot go this way; nothing was said to the relay.
            raise PermanentFailure(
                f"{message.envelope_to}: the address needs SMTPUTF8 (RFC 6531), "
                f"which {self.target} does not offer",
                recipient=message.envelope_to,
                kind=Kind.PERMANENT,
            )
        encoding = "utf-8" if message.smtputf8 else "ascii"
        try:
            options = [f"SIZE={len(message.data)}"] if smtp.supports_extension("size") else []
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
            response = await smtp.data(message.data, timeout=self.timeouts.data)
            return response.code, response.message
        except aiosmtplib.SMTPResponseException as exc:
            error = classify(exc.code, exc.message, message.envelope_to)
            if exc.code == 421:
                self._drop()  # RFC 5321 §3.8: 421 closes the channel
            else:
                await self._reset()
            raise (error or TemporaryFailure(exc.message, code=exc.code)) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            # Disconnected, timed out, reset: the line is gone; the next send reconnects.
            self._drop()
            raise TemporaryFailure(
                f"connection lost: {exc or type(exc).__name__}", kind=Kind.CONNECTION
            ) from None

    async def _reset(self) -> None:
        # After a refusal the envelope must be reset before the next message.
        if self.smtp is None:
            return
        try:
            await self.smtp.rset(timeout=self.timeouts.command)
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
                await self.smtp.quit(timeout=self.timeouts.command)
        except (aiosmtplib.SMTPException, OSError):
            pass
        finally:
            self._drop()


def connector(cfg: Settings) -> Callable[[SmtpTarget], SmtpConnection]:
    """New connections to a relay, all with the settings' timeouts and TLS context."""
    tls = cfg.tls_context()
    timeouts = Timeouts(cfg.smtp_connect_timeout, cfg.smtp_command_timeout, cfg.smtp_data_timeout)
    return lambda target: SmtpConnection(target, timeouts, tls)


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
            except DeliveryError as exc:
                results.append(Single(message, exc.code, str(exc)))
            else:
                results.append(Single(message, code, reply))
    finally:
        await connection.close()
    return results


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def reclaim_dead(factory: sessionmaker[Session], now: datetime) -> int:
    """Hand back at once the claims of processes of this machine that no longer
    exist (a ``kill -9``); other machines' claims wait for their lease."""
    host = socket.gethostname()
    with transaction(factory) as session:
        dead = [w for w in queries.claimers(session) if not _alive_here(w, host)]
        return queries.release_claims_of(session, dead, now)


def _alive_here(worker: str, host: str) -> bool:
    name, _, pid = worker.rpartition(":")
    if name != host or not pid.isdigit():
        return True  # another machine's: its lease decides
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RelayState:
    """One relay's health: failures in a row, and when it may be tried again."""

    def __init__(self, target: SmtpTarget) -> None:
        self.target = target
        self.weight = target.weight
        self.current = 0  # smooth weighted round robin (nginx's)
        self.failures = 0
        self.outages = 0
        self.down_until = 0.0
        # After a rest a relay is probed (one connection opened and closed) before
        # messages go to it again, so an outage is not paid for in deferred messages.
        self.checked = True
        self.checking = False


class RelayPool:
    """The configured relays, weighted. A relay that fails is taken out for a
    cool-down that doubles with each outage (up to 10 minutes) and its share goes
    to the others; after the cool-down it is tried again."""

    MAX_COOLDOWN = 600.0

    def __init__(
        self,
        targets: Sequence[SmtpTarget],
        *,
        cooldown: float = 30.0,
        failures_to_rest: int = 3,
        outage_limit: float = 900.0,
    ) -> None:
        if not targets:
            raise RelayUnavailable("no relay configured (DIGEST_SMTP_URL)")
        self.relays = [RelayState(t) for t in targets]
        self.cooldown = cooldown
        self.failures_to_rest = failures_to_rest
        self.outage_limit = outage_limit
        self.outage_since: float | None = None

    def usable(self, now: float) -> list[RelayState]:
        return [r for r in self.relays if r.down_until <= now and r.checked]

    def signature(self, now: float) -> tuple[int, ...]:
        """Changes when a relay goes out or comes back: workers then pick again."""
        return tuple(id(r) for r in self.usable(now))

    def to_check(self, now: float) -> RelayState | None:
        """A relay whose rest is over and that nobody is probing yet."""
        for r in self.relays:
            if r.down_until <= now and not r.checked and not r.checking:
                return r
        return None

    def rest(self, relay: RelayState, now: float, why: object) -> None:
        rest = min(self.cooldown * 2**relay.outages, self.MAX_COOLDOWN)
        relay.outages += 1
        relay.failures = 0
        relay.down_until = now + rest
        relay.checked = False
        log.warning("relay %s rests %.1f s: %s", relay.target, rest, why)

    def pick(self, now: float) -> RelayState | None:
        usable = self.usable(now)
        if not usable:
            if self.outage_since is None:
                self.outage_since = now
            return None
        self.outage_since = None
        total = sum(r.weight for r in usable)
        for r in usable:
            r.current += r.weight
        best = max(usable, key=lambda r: r.current)
        best.current -= total
        return best

    def next_back(self) -> float:
        return min(r.down_until for r in self.relays)

    def outage_too_long(self, now: float) -> bool:
        return self.outage_since is not None and now - self.outage_since >= self.outage_limit

    def succeeded(self, relay: RelayState) -> None:
        relay.failures = 0
        relay.outages = 0

    def failed(self, relay: RelayState, error: DeliveryError, now: float) -> None:
        if relay.down_until > now:
            return  # already resting: the other connections' failures are the same outage
        relay.failures += 1
        # Back from a rest, one failure sends it back: it has not proved itself yet.
        threshold = 1 if relay.outages else self.failures_to_rest
        if error.kind is Kind.RELAY or relay.failures >= threshold:
            self.rest(relay, now, error)


class Decision(enum.Enum):
    SEND = "send"
    WAIT = "wait"  # the domain is at its connection limit: take another claim
    DEFER = "defer"  # the domain is paused or capped: back to the queue, due later


@dataclass
class DomainState:
    concurrency: float  # messages in flight allowed (Postfix's destination window)
    in_flight: int = 0
    failed_cohorts: float = 0.0  # negative feedback since the last success, in cohorts
    paused_until: float = 0.0
    pauses: int = 0
    cap: Pacer | None = None  # DIGEST_DOMAIN_CAPS: this domain's own slots
    deferred: int = 0  # messages held back while paused or capped
    slowed: int = 0  # negative feedback received

    @property
    def limit(self) -> int:
        return max(1, int(self.concurrency))


class DomainGate:
    """Per recipient domain, Postfix's concurrency feedback (SCHEDULER_README,
    MAIL-RULES 23): a success adds 1/concurrency, negative feedback (a 421, a line
    lost mid-session, a provider's rate limit, a policy refusal) takes 1/concurrency
    away, never below one. After a failed cohort (``cohort`` × concurrency
    negative replies in a row) the domain pauses: ``pause`` seconds, doubled on
    every repeat up to ``max_pause``, then it starts again at one connection.
    A reply about one recipient (greylisting, no such user) changes nothing here.
    Fixed caps in messages per minute apply besides."""

    def __init__(
        self,
        *,
        pause: float = 600.0,
        max_pause: float = 3600.0,
        cohort: float = 1.0,
        connections: int = 8,
        caps: dict[str, int] | None = None,
        horizon: float = 5.0,
    ) -> None:
        self.pause = pause
        self.max_pause = max_pause
        self.cohort = cohort
        self.connections = connections
        self.caps = caps or {}
        self.horizon = horizon  # a capped message waits this long at most; later ones defer
        self.domains: dict[str, DomainState] = {}
        self.freed = asyncio.Event()

    def state(self, domain: str) -> DomainState:
        st = self.domains.get(domain)
        if st is None:
            cap = self.caps.get(domain)
            st = self.domains[domain] = DomainState(
                float(self.connections), cap=Pacer(cap / 60.0) if cap else None
            )
        return st

    def admit(self, domain: str, now: float) -> tuple[Decision, float]:
        """SEND (after the returned delay), WAIT, or DEFER (for the returned seconds)."""
        st = self.state(domain)
        if st.paused_until > now:
            st.deferred += 1
            return Decision.DEFER, st.paused_until - now
        if st.in_flight >= st.limit:
            return Decision.WAIT, 0.0
        delay = st.cap.reserve(now) if st.cap is not None else 0.0
        if delay > self.horizon:
            st.deferred += 1
            return Decision.DEFER, delay
        st.in_flight += 1
        return Decision.SEND, delay

    def done(self, domain: str, kind: Kind | None, now: float) -> None:
        """One message to ``domain`` is over: accepted (``kind`` None) or not."""
        st = self.state(domain)
        st.in_flight -= 1
        if kind is None:
            st.failed_cohorts = 0.0
            if st.concurrency < self.connections:
                st.concurrency = min(self.connections, st.concurrency + 1 / st.concurrency)
                if st.concurrency >= self.connections and st.pauses:
                    st.pauses = 0  # back to full speed: the next pause starts short again
                    log.info("%s is back to full speed", domain)
        elif kind in NEGATIVE_FEEDBACK and st.paused_until <= now:
            self._slow(domain, st, kind, now)
        self.freed.set()

    def _slow(self, domain: str, st: DomainState, kind: Kind, now: float) -> None:
        st.slowed += 1
        st.failed_cohorts += 1 / st.concurrency
        st.concurrency = max(1.0, st.concurrency - 1 / st.concurrency)
        if st.failed_cohorts < self.cohort:
            return
        pause = min(self.pause * 2**st.pauses, self.max_pause)
        st.pauses += 1
        st.paused_until = now + pause
        st.concurrency, st.failed_cohorts = 1.0, 0.0
        log.warning(
            "%s failed a cohort of deliveries (last: %s): pausing it for %.0f s, "
            "then one connection",
            domain,
            kind,
            pause,
        )

    def paused(self, now: float) -> tuple[str, ...]:
        return tuple(sorted(d for d, st in self.domains.items() if st.paused_until > now))

    def resume_at(self, domain: str) -> float:
        return self.state(domain).paused_until


class Pacer:
    """Message slots exactly 1/rate apart (DIGEST_SMTP_RATE across all connections,
    or one domain's cap), so any 10-second window holds rate × 10 ± 1 messages:
    no bursts to repay."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.next_slot = 0.0

    def reserve(self, now: float) -> float:
        """Seconds from ``now`` to wait before the next message may start."""
        if not self.interval:
            return 0.0
        slot = max(now, self.next_slot)
        self.next_slot = slot + self.interval
        return slot - now


@dataclass
class RunResult:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    bounced: int = 0
    suppressed: int = 0
    claimed: int = 0
    stopped: str | None = None  # paused, cancelled, stopped (a signal)
    aborted: str | None = None  # no relay usable for too long
    domains: dict[str, DomainState] = field(default_factory=dict)

    def add(self, status: DeliveryStatus) -> None:
        if status is DeliveryStatus.SENT:
            self.sent += 1
        elif status is DeliveryStatus.DEFERRED:
            self.deferred += 1
        elif status is DeliveryStatus.BOUNCED:
            self.bounced += 1
        elif status is DeliveryStatus.SUPPRESSED:
            self.suppressed += 1
        else:
            self.failed += 1


@dataclass
class SendOptions:
    """How one send behaves (from the settings)."""

    connections: int = 8
    batch_size: int = 500
    limit: int | None = None
    wait: bool = False  # keep going until every delivery is final, retrying on schedule
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    edition_deadline: datetime | None = None
    rate: float | None = None
    heartbeat: float = 1.0
    max_idle_sleep: float = 30.0


class SendRun:
    """Sends an edition's due deliveries over N connections spread across the relays.

    Durability: a message the relay accepted is committed as sent before its
    connection starts another one (outcomes of all connections share a commit),
    so a ``kill -9`` can duplicate at most one message per connection, and that
    copy has the same Message-ID."""

    def __init__(
        self,
        store: DeliveryStore,
        compose: Callable[[Claim], Message],
        connect: Callable[[SmtpTarget], Connection],
        relays: RelayPool,
        *,
        clock: Callable[[], datetime],
        options: SendOptions | None = None,
        gate: DomainGate | None = None,
        progress: Progress | None = None,
        sign: Callable[[Message], Awaitable[Message]] | None = None,
    ) -> None:
        self.store = store
        self.sign = sign
        self.compose = compose
        self.connect = connect
        self.relays = relays
        self.clock = clock
        self.options = options or SendOptions()
        self.connections = self.options.connections
        self.batch_size = self.options.batch_size
        self.gate = gate or DomainGate(connections=self.connections)
        self.progress = progress
        self.result = RunResult(domains=self.gate.domains)
        self._pending: list[tuple[Outcome, asyncio.Future[None] | None]] = []
        self._wake_flusher = asyncio.Event()
        self._closing = False
        self._stop = asyncio.Event()
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="digest-db")
        self._claims: deque[Claim] = deque()
        self._refill: asyncio.Future[None] | None = None
        self._budget = self.options.limit
        self._exhausted = False
        self._idle_until: float | None = None
        self._pacer = Pacer(self.options.rate)
        self._in_flight = 0
        self._gone: frozenset[int] = frozenset()
        self._announced: datetime | None = None

    # -- control ------------------------------------------------------------------

    def stop(self, reason: str = "stopped") -> None:
        """Finish what is in flight, record it, hand back the rest. Safe from a
        signal handler (on the loop)."""
        if not self._stop.is_set():
            self.result.stopped = self.result.stopped or reason
            log.info("stopping the send: %s", reason)
            self._stop.set()
            self.gate.freed.set()

    async def _in_db(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    async def run(self) -> RunResult:
        flusher = asyncio.ensure_future(self._flusher())
        beat = asyncio.ensure_future(self._heartbeat())
        try:
            await asyncio.gather(*(self._worker() for _ in range(self.connections)))
            if not self.result.stopped:
                # A pause or cancel may have emptied the queue before a heartbeat saw it.
                control = await self._in_db(self.store.heartbeat, self.clock())
                self.result.stopped = control.stop
        finally:
            beat.cancel()
            if self._refill is not None:
                await self._refill  # a prefetched batch goes back with the release below
            # Claims taken but never tried go back as they were.
            self._claims.clear()
            # Let the flusher drain; never cancel it: cancelling a job still queued
            # for the database thread would drop outcomes of messages already sent.
            self._closing = True
            self._wake_flusher.set()
            await flusher
            released = await self._in_db(self.store.release, self.clock())
            if released:
                log.info("handed back %d claimed but unsent deliveries", released)
            self._db.shutdown(wait=True)
        return self.result

    async def _heartbeat(self) -> None:
        """Every second: read pause/cancel; keep the claims' lease alive."""
        while not self._stop.is_set():
            await asyncio.sleep(self.options.heartbeat)
            control = await self._in_db(self.store.heartbeat, self.clock())
            self._gone = control.gone
            if control.stop:
                self.stop(control.stop)

    # -- claims -------------------------------------------------------------------

    async def _next_claim(self) -> Claim | None:
        """The next claim whose domain may be sent to now; None when the run is over."""
        while not self._stop.is_set():
            now = self._now()
            for _ in range(len(self._claims)):
                claim = self._claims.popleft()
                decision, delay = self.gate.admit(claim.domain, now)
                if decision is Decision.SEND:
                    if len(self._claims) < self.batch_size // 2:
                        self._start_refill()  # the next batch while this one sends
                    if delay > 0:
                        await asyncio.sleep(delay)  # a capped domain's slot
                    return claim
                if decision is Decision.DEFER:
                    self._held_back(claim, delay)
                else:
                    self._claims.append(claim)  # its domain is at its limit; try others
            waiting = bool(self._claims)
            if not waiting:
                if self._exhausted:
                    if not await self._idle():
                        return None
                    continue
                self._start_refill()
                assert self._refill is not None
                await self._refill
                continue
            # Every claim in hand waits for a busy domain: wait for a slot to free.
            self.gate.freed.clear()
            if not self._exhausted and self._refill is None and len(self._claims) < self.batch_size:
                self._start_refill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.gate.freed.wait(), 0.5)
        return None

    async def _idle(self) -> bool:
        """Nothing is due. In waiting mode sleep until the next retry and go on;
        otherwise the run is over."""
        if not self.options.wait or self._budget == 0:
            return False
        if self._idle_until is None or self._now() >= self._idle_until:
            self._idle_until = None
            due = await self._in_db(self.store.next_due)
            if due is None:
                if not self._in_flight and not self._pending:
                    return False  # every delivery is final
                await asyncio.sleep(0.05)  # an outcome still on its way may defer
                return True
            seconds = max(0.05, (due - self.clock()).total_seconds())
            seconds = min(seconds, self.options.max_idle_sleep)
            self._idle_until = self._now() + seconds
            if due != self._announced:
                self._announced = due
                log.info("waiting for retries: the next is due in %.0f s", seconds)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), max(0.0, self._idle_until - self._now()))
        if self._idle_until is not None and self._now() >= self._idle_until:
            self._idle_until = None
            self._exhausted = False
        return not self._stop.is_set()

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
            # Mail to a paused domain stays in the queue rather than being claimed
            # and handed back again and again while the pause lasts.
            paused = self.gate.paused(self._now())
            claims, suppressed = await self._in_db(self.store.claim, size, self.clock(), paused)
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

    def _held_back(self, claim: Claim, delay: float) -> None:
        """A paused or capped domain: back to the queue for later, not held against
        the address (attempts unchanged)."""
        error = TemporaryFailure(
            f"{claim.domain} is paused or capped; not tried", kind=Kind.RATE_LIMIT
        )
        self._record(self._failed(claim, error, claim.attempts, None, resume_in=delay))

    def _failed(
        self,
        claim: Claim,
        error: DeliveryError,
        attempts: int,
        message_id: str | None,
        resume_in: float | None = None,
    ) -> Outcome:
        """The claim's next state after ``error``, by the run's retry rules."""
        at = self.clock()
        return Outcome.from_error(
            claim.delivery_id,
            attempts,
            at,
            error,
            message_id,
            subscriber_id=claim.subscriber_id,
            retry=self.options.retry,
            first_attempt_at=claim.first_attempt_at,
            edition_deadline=self.options.edition_deadline,
            resume_at=at + timedelta(seconds=resume_in) if resume_in is not None else None,
        )

    # -- connections ----------------------------------------------------------------

    async def _relay(
        self, current: RelayState | None, seen: tuple[int, ...]
    ) -> tuple[RelayState | None, tuple[int, ...]]:
        """The relay this connection should use now, and the set of usable relays it
        was chosen from (a change makes the connection choose again, so a relay's
        share comes back when it does). Waits while every relay rests."""
        while not self._stop.is_set():
            now = self._now()
            back = self.relays.to_check(now)
            if back is not None:
                await self._check(back)
                continue
            usable = self.relays.signature(now)
            if current is not None and current.down_until <= now and seen == usable:
                return current, seen
            picked = self.relays.pick(now)
            if picked is not None:
                return picked, usable
            if self.relays.outage_too_long(now):
                if not self.result.aborted:
                    self.result.aborted = (
                        f"no relay usable for {self.relays.outage_limit:.0f} s "
                        f"(last: {self._last_relay_error})"
                    )
                    log.error("stopping the send: %s", self.result.aborted)
                self._stop.set()
                return None, ()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), max(0.05, self.relays.next_back() - now))
        return None, ()

    async def _check(self, relay: RelayState) -> None:
        relay.checking = True
        try:
            await probe(self.connect(relay.target))
        except RelayUnavailable as exc:
            self._last_relay_error = str(exc)
            self.relays.rest(relay, self._now(), exc)
        else:
            relay.checked = True
            log.info("relay %s is back", relay.target)
        finally:
            relay.checking = False

    _last_relay_error: str = ""
    IDLE_RECONNECT = 10.0  # seconds: a connection idle longer is reopened, not trusted

    async def _worker(self) -> None:
        """One connection: pick a relay, take a claim, compose, send, record."""
        relay: RelayState | None = None
        connection: Connection | None = None
        # The commit of this connection's last accepted message, awaited before the
        # next DATA: at most one accepted message per connection is not yet durable.
        pending: asyncio.Future[None] | None = None
        seen: tuple[int, ...] = ()
        last_used = self._now()
        try:
            while True:
                chosen, seen = await self._relay(relay, seen)
                if chosen is None:
                    return
                if chosen is not relay:
                    if connection is not None:
                        await connection.close()
                    relay, connection = chosen, self.connect(chosen.target)
                assert connection is not None
                claim = await self._next_claim()
                if claim is None:
                    return
                if self._now() - last_used > self.IDLE_RECONNECT:
                    # The relay has likely dropped a line idle this long (waiting for
                    # retries); a fresh one avoids charging it a connection failure.
                    await connection.close()
                self._in_flight += 1
                try:
                    durable = await self._one(connection, relay, claim, pending)
                finally:
                    self._in_flight -= 1
                if durable is not None:
                    pending = durable
                elif pending is not None and pending.done():
                    pending = None
                last_used = self._now()
            if pending is not None:
                await pending
        finally:
            if connection is not None:
                await connection.close()

    async def _one(
        self,
        connection: Connection,
        relay: RelayState,
        claim: Claim,
        before_data: asyncio.Future[None] | None,
    ) -> asyncio.Future[None] | None:
        """Compose and send one claim; the future of its outcome's commit when sent."""
        if claim.delivery_id in self._gone:
            # Unsubscribed (or bounced) since it was claimed: the next heartbeat said so.
            self.gate.done(claim.domain, Kind.TEMPORARY, self._now())  # frees the slot only
            self._record(
                Outcome(
                    claim.delivery_id,
                    DeliveryStatus.SUPPRESSED,
                    claim.attempts,
                    self.clock(),
                    reply="subscriber left during the send",
                )
            )
            return None
        try:
            message = self.compose(claim)
        except ComposeError as exc:
            self.gate.done(claim.domain, Kind.PERMANENT, self._now())
            error = PermanentFailure(str(exc), kind=Kind.PERMANENT)
            self._record(self._failed(claim, error, claim.attempts + 1, None))
            return None
        if self.sign is not None:
            message = await self.sign(message)  # DKIM, in a process pool
        wait = self._pacer.reserve(self._now())
        if wait > 0:
            await asyncio.sleep(wait)
        return self._record(await self._deliver(connection, relay, claim, message, before_data))

    async def _deliver(
        self,
        connection: Connection,
        relay: RelayState,
        claim: Claim,
        message: Message,
        before_data: asyncio.Future[None] | None = None,
    ) -> Outcome:
        try:
            code, reply = await connection.send(message, before_data)
        except DeliveryError as error:
            now = self._now()
            self.gate.done(claim.domain, error.kind, now)
            if error.kind in (Kind.UNREACHABLE, Kind.CONNECTION, Kind.RELAY):
                self._last_relay_error = str(error)
                self.relays.failed(relay, error, now)
            if error.kind is Kind.RATE_LIMIT:
                # The sender's pace, never the address's fault: due when the domain
                # resumes if it paused, else after the first retry step.
                resume = self.gate.resume_at(claim.domain) - now
                return self._failed(
                    claim, error, claim.attempts, message.message_id, resume if resume > 0 else None
                )
            return self._failed(claim, error, claim.attempts + 1, message.message_id)
        self.gate.done(claim.domain, None, self._now())
        self.relays.succeeded(relay)
        return Outcome.sent(
            claim.delivery_id,
            claim.attempts + 1,
            self.clock(),
            code,
            reply,
            message.message_id,
            subscriber_id=claim.subscriber_id,
        )

    # -- outcomes -------------------------------------------------------------------

    def _record(self, outcome: Outcome) -> asyncio.Future[None] | None:
        """Queue an outcome for the next commit; a sent one returns a future that
        resolves once it is durable."""
        self.result.add(outcome.status)
        if self.progress is not None:
            self.progress.advance(outcome)
        future: asyncio.Future[None] | None = None
        if outcome.status is DeliveryStatus.SENT:
            future = asyncio.get_running_loop().create_future()
        self._pending.append((outcome, future))
        self._wake_flusher.set()
        return future

    async def _flusher(self) -> None:
        """Group commit: whatever arrived while the last commit ran goes in the next.
        Returns once the run is closing and everything is written."""
        while True:
            await self._wake_flusher.wait()
            self._wake_flusher.clear()
            await self._flush_once()
            if self._closing and not self._pending:
                return

    async def _flush_once(self) -> None:
        while self._pending:
            batch, self._pending = (
                self._pending[: self.batch_size],
                self._pending[self.batch_size :],
            )
            try:
                await self._in_db(self.store.record, [o for o, _ in batch])
            except BaseException as exc:
                for _, future in batch:
                    if future is not None and not future.done():
                        future.set_exception(exc)
                raise
            for _, future in batch:
                if future is not None and not future.done():
                    future.set_result(None)


async def probe(connection: Connection) -> None:
    """Open and close one connection before claiming anything: a relay that is
    down fails the send before a single delivery changes state."""
    try:
        await connection.open()
    except TemporaryFailure as exc:
        raise RelayUnavailable(str(exc)) from None
    finally:
        await connection.close()


async def probe_relays(pool: RelayPool, connect: Callable[[SmtpTarget], SmtpConnection]) -> None:
    """Every relay is tried before anything is claimed. One that is down rests (its
    share goes to the others); when none answers, nothing changes state."""
    problems = []
    now = asyncio.get_running_loop().time()
    for relay in pool.relays:
        try:
            await probe(connect(relay.target))
        except RelayUnavailable as exc:
            problems.append(str(exc))
            pool.rest(relay, now, f"down at start, the others take its share: {exc}")
    if len(problems) == len(pool.relays):
        raise RelayUnavailable("; ".join(problems))


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[str], None]) -> Iterator[None]:
    """The first SIGINT or SIGTERM calls ``stop("signal SIGTERM")`` (a clean stop:
    in-flight messages finish and are recorded, claims go back); a second one
    acts as usual. Call inside the running loop."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)

    def on_signal(sig: signal.Signals) -> None:
        stop(f"signal {sig.name}")
        for s in signals:
            loop.remove_signal_handler(s)

    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


async def run_stoppable(run: SendRun) -> RunResult:
    """Run a send that SIGINT or SIGTERM stop cleanly."""
    with stop_on_signals(run.stop):
        return await run.run()


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop where it is installed (it speeds up the socket work)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(coro)
    return uvloop.run(coro)
