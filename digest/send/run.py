"""One send: claim due deliveries, compose, send over N connections, record outcomes.

The flow (listmonk's pipe, procrastinate's claims): claim a batch of due
deliveries → compose each message from its variant's prepared bytes → N
connection workers send → outcomes are written back in batches. All database
work runs on one worker thread, and the next batch is claimed while the
current one is sending, so the event loop never waits on SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from digest.compose import Message
from digest.config import SmtpTarget
from digest.errors import (
    ComposeError,
    DeliveryError,
    Kind,
    PermanentFailure,
    Refused,
    RelayUnavailable,
    TemporaryFailure,
)
from digest.models import DeliveryStatus
from digest.observe import metrics
from digest.outage import Outage
from digest.send.journal import Journal
from digest.send.limits import GLOBAL, SharedLimits, SharedRate, share_gate
from digest.send.pacing import DomainGate, Pacer
from digest.send.queue import ClaimQueue
from digest.send.relays import RelayPool, RelayState
from digest.send.result import RunResult, SendOptions
from digest.send.smtp import Connection, Progress, probe
from digest.send.tasks import together
from digest.send.writer import Ledger, Writer
from digest.store import Claim
from digest.track.outcomes import Outcome
from digest.track.replies import judge

log = logging.getLogger(__name__)
T = TypeVar("T")


class SendRun:
    """Sends an edition's due deliveries over N connections spread across the relays.

    Durability: a message the relay accepted is committed as sent before its
    connection starts another one (outcomes of all connections share a commit),
    so a ``kill -9`` can duplicate at most one message per connection, and that
    copy has the same Message-ID."""

    def __init__(
        self,
        store: Ledger,
        compose: Callable[[Claim], Message],
        connect: Callable[[SmtpTarget], Connection],
        relays: RelayPool,
        *,
        clock: Callable[[], datetime],
        options: SendOptions | None = None,
        gate: DomainGate | None = None,
        progress: Progress | None = None,
        sign: Callable[[Message], Message] | None = None,
        limits: SharedLimits | None = None,
    ) -> None:
        self.sign = sign
        self.compose = compose
        self.connect = connect
        self.relays = relays
        self.clock = clock
        self.options = o = options or SendOptions()
        self.connections = o.connections
        self.gate = gate or DomainGate(connections=self.connections)
        self.progress = progress
        self.result = RunResult(domains=self.gate.domains)
        self._stop = asyncio.Event()
        self.writer = Writer(
            store,
            o.batch_size,
            self._counted,
            outage=Outage(o.outage_limit) if o.outage_limit is not None else None,
            journal=Journal(o.journal) if o.journal is not None else None,
        )
        self.claims = ClaimQueue(
            self.writer,
            store,
            self.gate,
            batch_size=o.batch_size,
            limit=o.limit,
            wait=o.wait,
            max_idle_sleep=o.max_idle_sleep,
            clock=clock,
            stop=self._stop,
            held_back=self._held_back,
            busy=lambda: self._in_flight > 0 or self.writer.pending,
            result=self.result,
        )
        # The rate and the domains' pauses are the fleet's when there is a database
        # to share them through (every real send); a dry run paces alone.
        self.limits = limits
        rate = self.options.rate
        self._pacer = Pacer(None if limits is not None else rate)
        self._rate = None
        if limits is not None and rate:
            self._rate = SharedRate(
                lambda want: self.writer.call(limits.take, GLOBAL, rate, want, self.clock), rate
            )
        if limits is not None:
            share_gate(self.gate, self.writer, limits, clock)
        self._in_flight = 0
        self._gone: frozenset[int] = frozenset()

    # -- control ------------------------------------------------------------------

    def stop(self, reason: str = "stopped") -> None:
        """Finish what is in flight, record it, hand back the rest. Safe from a
        signal handler (on the loop)."""
        if not self._stop.is_set():
            self.result.stopped = self.result.stopped or reason
            log.info("stopping the send: %s", reason)
            self._stop.set()
            self.gate.freed.set()

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def _counted(self, outcome: Outcome) -> None:
        self.result.add(outcome.status)
        if outcome.ambiguous:  # said per message, as Postfix does
            self.result.ambiguous += 1
            metrics.AMBIGUOUS.labels(self.options.kind or "none").inc()
            log.warning("delivery %d: %s; retried with the same Message-ID %s",
                        outcome.delivery_id, outcome.reply, outcome.message_id)  # fmt: skip
        if self.progress is not None:
            self.progress.advance(outcome)

    async def run(self) -> RunResult:
        writer = asyncio.ensure_future(self.writer.run())
        beat = asyncio.ensure_future(self._heartbeat())
        store = self.writer.store
        try:
            await self._hold_shared_pauses()
            await together(self._worker() for _ in range(self.connections))
            if not self.result.stopped:
                # A pause or cancel may have emptied the queue before a heartbeat saw it.
                control = await self.writer.call(store.heartbeat, self.clock())
                self.result.stopped = control.stop
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
            try:  # each step even when one before it met the database gone (DatabaseAway)
                # Claims taken but never tried go back as they were (the release below).
                await self.claims.drain()
            finally:
                self.writer.close()
                try:
                    await writer
                    released = await self.writer.call(store.release, self.clock())
                    if released:
                        log.info("handed back %d claimed but unsent deliveries", released)
                finally:
                    self.writer.shutdown()
        return self.result

    async def _heartbeat(self) -> None:
        """Every second: read pause/cancel; keep the claims' lease alive."""
        while not self._stop.is_set():
            await asyncio.sleep(self.options.heartbeat)
            control = await self.writer.call(self.writer.store.heartbeat, self.clock())
            self._gone = control.gone
            self.gate.senders = control.senders
            await self._hold_shared_pauses()
            if self.options.kind:
                now = self._now()
                metrics.show_paused(d for d, s in self.gate.domains.items() if s.paused_until > now)
            if control.stop:
                self.stop(control.stop)

    async def _hold_shared_pauses(self) -> None:
        """The domains the fleet holds are held here too, and the ones it reopened
        are open (at the start and at every heartbeat)."""
        if self.limits is not None:
            held = await self.writer.call(self.limits.pauses, self.clock())
            self.gate.hold_all(held, self._now())

    def _held_back(self, claim: Claim, delay: float) -> None:
        """A paused or capped domain: back to the queue for later, not held against
        the address (attempts unchanged)."""
        error = TemporaryFailure(
            f"{claim.domain} is paused or capped; not tried", kind=Kind.RATE_LIMIT
        )
        self.writer.record(self._failed(claim, error, claim.attempts, None, resume_in=delay))

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
                claim = await self.claims.next()
                if claim is None:
                    return
                if self._now() - last_used > self.IDLE_RECONNECT:
                    # The relay has likely dropped a line idle this long (waiting for
                    # retries); a fresh one avoids charging it a connection failure.
                    await connection.close()
                if self.writer.outage is not None:
                    await self.writer.outage.until_up()  # no new message while it is away
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
            self.gate.release(claim.domain)
            self._record(
                claim,
                Outcome(
                    claim.delivery_id,
                    DeliveryStatus.SUPPRESSED,
                    claim.attempts,
                    self.clock(),
                    reply="subscriber left during the send",
                ),
            )
            return None
        try:
            message = self.compose(claim)
        except ComposeError as exc:
            self.gate.release(claim.domain)
            error = PermanentFailure(str(exc), kind=Kind.PERMANENT)
            self._record(claim, self._failed(claim, error, claim.attempts + 1, None))
            return None
        if self.sign is not None:
            started = time.perf_counter()
            message = self.sign(message)  # DKIM, here: see dkim.DkimSigner
            if self.options.kind:
                metrics.DKIM_SECONDS.observe(time.perf_counter() - started)
        if self._rate is not None:
            await self._rate.acquire()
        wait = self._pacer.reserve(self._now())
        if wait > 0:
            await asyncio.sleep(wait)
        return self._record(
            claim, await self._deliver(connection, relay, claim, message, before_data)
        )

    def _record(self, claim: Claim, outcome: Outcome) -> asyncio.Future[None] | None:
        """To the writer; counted in the metrics when this is a real send."""
        if self.options.kind:
            metrics.count_outcome(self.options.kind, claim.domain, outcome.status.value)
        return self.writer.record(outcome)

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
        except (Refused, DeliveryError) as failed:
            error = judge(failed)  # the one place a relay's refusal is judged
            now = self._now()
            self.gate.done(claim.domain, error.kind, now, str(error))
            if error.kind in (Kind.UNREACHABLE, Kind.CONNECTION, Kind.RELAY):
                self._last_relay_error = str(error)
                self.relays.failed(relay, error, now)
            if error.kind is Kind.RATE_LIMIT:
                # The sender's pace, never the address's fault: due when the domain
                # resumes, or after its first back-off (not the reader's retry step).
                resume = self.gate.resume_at(claim.domain) - now
                resume = resume if resume > 0 else self.gate.pause
                return self._failed(claim, error, claim.attempts, message.message_id, resume)
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
