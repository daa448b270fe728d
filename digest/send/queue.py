"""The claims a send holds: taken from the store in batches (the next while this
one sends), handed to connections as their domains allow, and in waiting mode
an idle wait until the next retry is due."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

from digest.send.pacing import Decision, DomainGate
from digest.send.result import RunResult
from digest.send.writer import Ledger, Writer
from digest.store import Claim

log = logging.getLogger(__name__)


CLAIMED_POLL = 0.25  # seconds between asks while only other senders' claims are left


class ClaimQueue:
    """``writer`` runs the ``ledger``'s calls on the database thread (waiting out an
    outage); the ``gate`` says which domain may take one more now."""

    def __init__(
        self,
        writer: Writer,
        ledger: Ledger,
        gate: DomainGate,
        *,
        batch_size: int,
        limit: int | None,
        wait: bool,
        max_idle_sleep: float,
        clock: Callable[[], datetime],
        stop: asyncio.Event,
        held_back: Callable[[Claim, float], None],
        busy: Callable[[], bool],
        result: RunResult,
    ) -> None:
        self.writer, self.ledger, self.gate = writer, ledger, gate
        self.clock, self.stop = clock, stop
        self.batch_size, self.wait, self.max_idle_sleep = batch_size, wait, max_idle_sleep
        self.held_back, self.busy, self.result = held_back, busy, result
        self._claims: deque[Claim] = deque()
        self._refill: asyncio.Future[None] | None = None
        self._budget = limit
        self._exhausted = False
        self._idle_until: float | None = None
        self._announced: datetime | None = None

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    async def next(self) -> Claim | None:
        """The next claim whose domain may be sent to now; None when the run is over."""
        while not self.stop.is_set():
            claim = await self._admitted()
            if claim is not None:
                return claim
            if not self._claims:
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

    async def _admitted(self) -> Claim | None:
        """One pass over the claims in hand: the first its domain takes now."""
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
                self.held_back(claim, delay)
            else:
                self._claims.append(claim)  # its domain is at its limit; try others
        return None

    async def drain(self) -> None:
        """The run ends: a prefetched batch lands, then nothing in hand is tried
        (the store's release hands it all back as it was)."""
        if self._refill is not None:
            await self._refill
        self._claims.clear()

    async def _idle(self) -> bool:
        """Nothing is due. In waiting mode sleep until the next retry and go on;
        otherwise the run is over."""
        if not self.wait or self._budget == 0:
            return False
        if self._idle_until is None or self._now() >= self._idle_until:
            self._idle_until = None
            # An outcome in flight or being committed while the database is asked is
            # not in its answer: "nothing due" then means "ask again", not "done".
            settled = not self.busy()
            due = await self.writer.call(self.ledger.next_due)
            if due is None:
                if settled and not self.busy():
                    return False  # every delivery is final
                await asyncio.sleep(0.05)  # an outcome still on its way may defer
                return True
            left = max(0.05, (due.at - self.clock()).total_seconds())
            # Asked again every max_idle_sleep (other senders' claims end meanwhile),
            # but said once per retry time, with the real wait (issue 25: "the next is
            # due in 1 s" 886 times while it was 300 s away).
            # Another sender's claims are about to end in outcomes: the last of a
            # send is seconds away, and a second's poll was most of a small send's
            # tail (issue 31 §5); a dead sender's lease is waited out the same way.
            poll = CLAIMED_POLL if due.claimed else self.max_idle_sleep
            self._idle_until = self._now() + min(left, poll)
            # Another sender's claims coming due is that sender at work, not a wait
            # to speak of (the demo's second sender said "in 119 s" every second).
            known = (
                self._announced is not None and abs((due.at - self._announced).total_seconds()) < 1
            )
            if not due.claimed and not known:
                self._announced = due.at
                log.info(
                    "waiting for retries: the next is due at %s UTC, in %.0f s",
                    f"{due.at.astimezone(UTC):%H:%M:%S}",
                    left,
                )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), max(0.0, self._idle_until - self._now()))
        if self._idle_until is not None and self._now() >= self._idle_until:
            self._idle_until = None
            self._exhausted = False
        return not self.stop.is_set()

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
            claims, suppressed = await self.writer.call(
                self.ledger.claim, size, self.clock(), paused
            )
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
