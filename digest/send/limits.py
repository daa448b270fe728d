"""Limits held across every sender (issue 16): N workers on M machines together
keep DIGEST_SMTP_RATE, and a domain paused by one is paused for all.

The database is the one coordination point: the rate is a token bucket there,
leased in grants of a twentieth of a second's worth (so the fleet's total in any
10-second window is within a few messages of rate × 10); each capped domain's
slots are one schedule there, leased a quarter second's worth at a time; a pause
one sender decides is written there and kept by every other (read at its next
heartbeat), and when it ends one sender takes the domain's one probe.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime

from digest import store
from digest.db import Factory, transaction
from digest.send.pacing import DomainGate
from digest.send.writer import Writer
from digest.store import DomainHold

log = logging.getLogger(__name__)

GLOBAL = "global"  # the bucket of DIGEST_SMTP_RATE
CAP = "cap:"  # and a capped domain's schedule: CAP + domain


class SharedLimits:
    def __init__(self, factory: Factory) -> None:
        self.factory = factory

    def take(
        self, name: str, rate: float, want: int, clock: Callable[[], datetime]
    ) -> tuple[int, float]:
        """Up to ``want`` tokens of the bucket ``name`` at ``rate`` per second; the
        bucket holds a tenth of a second's worth at most, so what a fleet sends in
        any window stays within a few tokens of rate × window. The time is read
        inside the transaction, once the bucket is ours."""
        burst = max(1.0, rate / 10)
        with transaction(self.factory) as session:
            return store.take_tokens(session, name, rate, burst, want, clock)

    def slots(
        self, name: str, interval: float, count: int, clock: Callable[[], datetime]
    ) -> datetime:
        """``count`` slots of the schedule ``name``: when the first is."""
        with transaction(self.factory) as session:
            return store.reserve_slots(session, name, interval, count, clock)

    def pause(
        self, domain: str, first: float, longest: float, reason: str, now: datetime
    ) -> store.DomainHold:
        """The fleet's pause of ``domain`` (the one in force, or a new one)."""
        with transaction(self.factory) as session:
            return store.pause_domain(session, domain, first, longest, reason, now)

    def take_probe(self, domain: str, now: datetime) -> bool:
        with transaction(self.factory) as session:
            return store.take_probe(session, domain, now)

    def reopen(self, domain: str, now: datetime) -> None:
        with transaction(self.factory) as session:
            store.reopen_domain(session, domain, now)

    def clear(self, domain: str) -> None:
        with transaction(self.factory) as session:
            store.clear_domain(session, domain)

    def pauses(self, now: datetime) -> dict[str, float]:
        """Each held domain and the seconds its pause has to run (≤ 0: its probe
        is due)."""
        with self.factory() as session:
            found = store.domain_pauses(session, now)
        return {domain: (h.until - now).total_seconds() for domain, h in found.items()}


class SharedRate:
    """``await acquire()`` before each message: one token of the shared bucket."""

    def __init__(self, take: Callable[[int], Awaitable[tuple[int, float]]], rate: float) -> None:
        self.take = take
        self.grant = max(1, round(rate / 20))
        self.stock = 0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:  # one lease at a time; the others wait for its tokens
            while self.stock == 0:
                granted, wait = await self.take(self.grant)
                self.stock += granted
                if not granted:
                    await asyncio.sleep(max(wait, 0.002))
            self.stock -= 1


class LeasedCap:
    """One domain's cap (DIGEST_DOMAIN_CAPS) kept by the whole fleet: its slots,
    60/cap seconds apart, are one schedule in the database (``lease(n)`` takes the
    next ``n`` and says when the first is). A slot let pass is dropped,
    never made up in a burst, so the fleet sends at most the cap in any window."""

    def __init__(
        self,
        lease: Callable[[int], Awaitable[datetime]],
        per_minute: int,
        arrived: Callable[[], None],
        clock: Callable[[], datetime],
    ) -> None:
        self.lease, self.clock = lease, clock
        self.interval = 60.0 / per_minute
        self.grant = max(1, round(per_minute / 240))  # a quarter second's worth
        self.arrived = arrived  # the gate is told: claims waiting for this domain go on
        self.slots: deque[float] = deque()
        self._leasing: asyncio.Future[None] | None = None

    def ahead(self, now: float) -> float | None:
        while self.slots and self.slots[0] < now - self.interval:
            self.slots.popleft()
        if self.slots:
            return max(0.0, self.slots[0] - now)
        if self._leasing is None:
            self._leasing = asyncio.ensure_future(self._lease())
        return None

    def take(self, now: float) -> None:
        self.slots.popleft()

    async def _lease(self) -> None:
        try:
            start = await self.lease(self.grant)
        # Any failure (the database away): no slot, so nothing is sent to the domain;
        # the next admit asks again, and the send's heartbeat meets the same error.
        except Exception as exc:  # noqa: BLE001
            log.warning("could not lease a capped domain's slots: %s", exc)
            return
        finally:
            self._leasing = None
        # The schedule's time, read on the clock it was written with, onto the loop's.
        first = asyncio.get_running_loop().time() + (start - self.clock()).total_seconds()
        self.slots.extend(first + i * self.interval for i in range(self.grant))
        self.arrived()


class SharedPauses:
    """``pacing.Fleet`` through the database: one pause and one probe per domain
    for every sender (issue 25: two senders had logged 240 s and 120 s for the
    same domain in the same second)."""

    def __init__(
        self, gate: DomainGate, writer: Writer, limits: SharedLimits, clock: Callable[[], datetime]
    ) -> None:
        self.gate, self.writer, self.limits, self.clock = gate, writer, limits, clock

    def pause(self, domain: str, why: str) -> None:
        asked = asyncio.ensure_future(
            self.writer.call(
                self.limits.pause, domain, self.gate.pause, self.gate.max_pause, why, self.clock()
            )
        )

        def answered(done: asyncio.Future[DomainHold]) -> None:
            if done.cancelled() or done.exception() is not None:
                log.warning("could not share the pause of %s: %s", domain, done.exception())
                return  # this sender keeps its own
            hold = done.result()
            left = (hold.until - self.clock()).total_seconds()
            self.gate.decided(domain, left, hold.reason, asyncio.get_running_loop().time())

        asked.add_done_callback(answered)

    def take_probe(self, domain: str) -> asyncio.Future[bool]:
        return asyncio.ensure_future(self.writer.call(self.limits.take_probe, domain, self.clock()))

    def reopened(self, domain: str) -> None:
        self.writer.call_soon(self.limits.reopen, domain, self.clock())

    def cleared(self, domain: str) -> None:
        self.writer.call_soon(self.limits.clear, domain)


def share_gate(
    gate: DomainGate, writer: Writer, limits: SharedLimits, clock: Callable[[], datetime]
) -> None:
    """The gate's pauses and probes are the fleet's, and its caps' slots leased
    from the schedules every sender shares."""
    gate.fleet = SharedPauses(gate, writer, limits, clock)
    gate.cap_slots = lambda domain, cap: LeasedCap(
        lambda n: writer.call(limits.slots, CAP + domain, 60.0 / cap, n, clock),
        cap,
        gate.freed.set,
        clock,
    )
