"""Limits held across every sender (issue 16): N workers on M machines together
keep DIGEST_SMTP_RATE, and a domain paused by one is paused for all.

The database is the one coordination point: the rate is a token bucket there,
leased in grants of a twentieth of a second's worth (so the fleet's total in any
10-second window is within a few messages of rate × 10); each capped domain's
slots are one schedule there, leased a quarter second's worth at a time; a pause
one sender decides is written there and read by every other at its next heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime

from digest.send.pacing import DomainGate
from digest.send.writer import Writer
from digest.track.limits import CAP, SharedLimits

log = logging.getLogger(__name__)


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


def share_gate(
    gate: DomainGate, writer: Writer, limits: SharedLimits, clock: Callable[[], datetime]
) -> None:
    """The gate's pauses are written for every other sender to hold, and its caps'
    slots leased from the schedules every sender shares."""
    gate.on_pause = lambda domain, seconds, why: writer.call_soon(
        limits.pause, domain, seconds, why, clock()
    )
    gate.cap_slots = lambda domain, cap: LeasedCap(
        lambda n: writer.call(limits.slots, CAP + domain, 60.0 / cap, n, clock),
        cap,
        gate.freed.set,
        clock,
    )
