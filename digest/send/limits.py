"""Limits held across every sender (issue 16): N workers on M machines together
keep DIGEST_SMTP_RATE, and a domain paused by one is paused for all.

The database is the one coordination point: the rate is a token bucket there,
leased in grants of a twentieth of a second's worth (so the fleet's total in any
10-second window is within a few messages of rate × 10); a pause one sender
decides is written there and read by every other at its next heartbeat.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


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
