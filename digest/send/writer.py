"""The send's one database thread: every store call of a run goes through it, and
outcomes are group-committed (whatever arrived while the last commit ran goes in
the next), so the event loop never waits on SQL."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Protocol, TypeVar

from digest.models import DeliveryStatus
from digest.outage import Outage
from digest.send.journal import Journal
from digest.send.ledger import Control
from digest.store import Due
from digest.store.claims import Claim
from digest.track.outcomes import Outcome

T = TypeVar("T")
log = logging.getLogger(__name__)


class Ledger(Protocol):
    """What a send needs of the database (``send.ledger.DeliveryStore``; a dry run's
    ``send.dry.DryLedger``). Synchronous: the writer's thread calls it."""

    def claim(
        self, limit: int, now: datetime, skip_domains: Sequence[str] = ()
    ) -> tuple[list[Claim], int]: ...

    def record(self, outcomes: Sequence[Outcome]) -> None: ...

    def release(self, now: datetime) -> int: ...

    def heartbeat(self, now: datetime) -> Control: ...

    def next_due(self) -> Due | None: ...


class Writer:
    def __init__(
        self,
        store: Ledger,
        batch_size: int,
        on_outcome: Callable[[Outcome], None],
        *,
        outage: Outage | None = None,
        journal: Journal | None = None,
    ) -> None:
        self.store = store
        # The database may go away (issue 18): calls wait it out, and every message
        # the relay accepted is journaled before its outcome reaches the database.
        self.outage = outage
        self.journal = journal
        self.batch_size = batch_size
        self.on_outcome = on_outcome
        self._pending: list[tuple[Outcome, asyncio.Future[None] | None]] = []
        self._writing = False  # a batch taken from _pending is on its way to the database
        self._wake = asyncio.Event()
        self._closing = False
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="digest-db")

    async def call(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` on the database thread; while the database is away, tried
        again until it is back or the outage limit has passed (DatabaseAway)."""
        loop = asyncio.get_running_loop()
        if self.outage is None:
            return await loop.run_in_executor(self._thread, fn, *args)
        return await self.outage.call(lambda: loop.run_in_executor(self._thread, fn, *args))

    def call_soon(self, fn: Callable[..., object], *args: object) -> None:
        """``fn(*args)`` on the database thread, not waited for (done before
        ``shutdown`` returns; a failure is logged, not raised)."""
        self._thread.submit(_logged, fn, *args)

    @property
    def pending(self) -> bool:
        """Outcomes recorded and not yet committed (a batch being written included:
        a reader of the database does not see it yet)."""
        return bool(self._pending) or self._writing

    def record(self, outcome: Outcome) -> asyncio.Future[None] | None:
        """Queue an outcome for the next commit; a sent one returns a future that
        resolves once it is durable."""
        self.on_outcome(outcome)
        if self.journal is not None:
            self.journal.write(outcome)
        future: asyncio.Future[None] | None = None
        if outcome.status is DeliveryStatus.SENT:
            future = asyncio.get_running_loop().create_future()
        self._pending.append((outcome, future))
        self._wake.set()
        return future

    async def run(self) -> None:
        """Commit as outcomes come; return once closed and everything is written.
        Never cancel it: a job still queued for the thread would drop outcomes of
        messages already sent."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._flush()
            if self._closing and not self._pending:
                return

    def close(self) -> None:
        self._closing = True
        self._wake.set()

    def shutdown(self) -> None:
        self._thread.shutdown(wait=True)
        if self.journal is not None:
            self.journal.close(all_committed=not self.pending)

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = (
                self._pending[: self.batch_size],
                self._pending[self.batch_size :],
            )
            self._writing = True
            try:
                await self.call(self.store.record, [o for o, _ in batch])
            except BaseException as exc:
                # Not written: still pending, so the journal keeps them for the next run.
                # Every commit awaited fails, not only this batch's: the writer stops
                # here, and a sender awaiting a later one would wait for ever.
                self._pending[:0] = batch
                for _, future in self._pending:
                    if future is not None and not future.done():
                        future.set_exception(exc)
                        future.exception()  # the run reports it; no "never retrieved"
                raise
            finally:
                self._writing = False
            for _, future in batch:
                if future is not None and not future.done():
                    future.set_result(None)
            if self.journal is not None:
                self.journal.committed([o for o, _ in batch])


def _logged(fn: Callable[..., object], *args: object) -> None:
    try:
        fn(*args)
    # Any failure (the database away): the shared pause is lost, this sender keeps it.
    except Exception as exc:  # noqa: BLE001
        log.error("%s failed on the database thread: %s", getattr(fn, "__name__", fn), exc)
