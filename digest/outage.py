"""The database going away (issue 18): a restart, a failover, a lock held too
long. A send, a worker or the scheduler waits it out instead of dying: each call
that meets the outage is tried again with back-off, the outage is logged once
when it starts and once when it ends, and past DIGEST_DB_OUTAGE_LIMIT the
process stops cleanly with DatabaseAway (exit 75)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from digest import db
from digest.errors import DatabaseAway

log = logging.getLogger(__name__)
T = TypeVar("T")


class Outage:
    """One process's view of the database's absence, shared by all its calls."""

    FIRST, LONGEST = 0.2, 5.0  # seconds between tries: doubled from the first

    def __init__(self, limit: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.clock = clock
        self.since: float | None = None  # when the current outage began
        self.gone = False  # past the limit: every later call fails at once, saying why
        self.why = ""
        # Set while the database answers: a send starts no new message meanwhile
        # (its claims' leases are not renewed while it is away).
        self.up = asyncio.Event()
        self.up.set()

    def failed(self, exc: BaseException) -> None:
        """A call met the outage: note it (logged once) or give up past the limit."""
        now = self.clock()
        self.up.clear()
        if self.since is None:
            self.since = now
            log.warning(
                "the database is unreachable (%s): holding outcomes, trying again for up to %.0f s",
                _short(exc),
                self.limit,
            )
        if now - self.since > self.limit:
            self.gone = True
            self.why = (
                f"the database was unreachable for {now - self.since:.0f} s "
                f"(DIGEST_DB_OUTAGE_LIMIT={self.limit:.0f}): {_short(exc)}"
            )
            self.up.set()  # whoever waits for it learns it is gone
            raise DatabaseAway(self.why) from None

    def recovered(self) -> None:
        self.up.set()
        if self.since is not None:
            log.warning("the database is back after %.1f s", self.clock() - self.since)
            self.since = None

    async def until_up(self) -> None:
        """Return when the database answers; DatabaseAway once it is given up."""
        await self.up.wait()
        if self.gone:
            raise DatabaseAway(self.why)

    def met(self, exc: db.DatabaseError) -> None:
        """A call failed: not an outage is raised again; an outage is noted (or,
        past the limit, given up: DatabaseAway)."""
        if not db.is_unavailable(exc):
            raise exc
        self.failed(exc)

    def _waits(self) -> Iterator[float]:
        """The back-off between tries, until the outage is given up."""
        wait = self.FIRST
        while not self.gone:
            yield wait
            wait = min(wait * 2, self.LONGEST)
        raise DatabaseAway(self.why)

    async def call(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """``attempt()`` until it works, waiting out the database's absence."""
        for wait in self._waits():
            try:
                result = await attempt()
            except db.DatabaseError as exc:
                self.met(exc)
                await asyncio.sleep(wait)
                continue
            self.recovered()
            return result
        raise AssertionError("unreachable: _waits ends by raising")

    def wait_sync(self, attempt: Callable[[], T]) -> T:
        """The same for a process without an event loop (the scheduler's jobs)."""
        for wait in self._waits():
            try:
                result = attempt()
            except db.DatabaseError as exc:
                self.met(exc)
                time.sleep(wait)
                continue
            self.recovered()
            return result
        raise AssertionError("unreachable: _waits ends by raising")


def _short(exc: BaseException) -> str:
    """The driver's first line, not SQLAlchemy's paragraph with the statement."""
    orig = getattr(exc, "orig", None) or exc
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0][:200]
