"""The send's database thread and the claim queue's idle wait: an outcome on its
way to the database is not yet in what the database answers, so "nothing due"
read meanwhile must not end the run (a deferred message then stayed deferred and
never gave up: CI, test_a_message_that_keeps_failing_gives_up_and_says_why)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from digest.errors import DatabaseAway
from digest.models import DeliveryStatus
from digest.send.ledger import Control
from digest.send.pacing import DomainGate
from digest.send.queue import ClaimQueue
from digest.send.result import RunResult
from digest.send.writer import Writer
from digest.store import Claim, Due
from digest.track.outcomes import Outcome


def now() -> datetime:
    return datetime.now(UTC)


class SlowLedger:
    """Commits take until ``go`` is set, the first question of what is due takes
    ``asking`` seconds; nothing is due until a deferral is committed."""

    def __init__(self, asking: float = 0.0) -> None:
        self.go = threading.Event()
        self.asking = asking
        self.due: datetime | None = None

    def claim(
        self, limit: int, now: datetime, skip_domains: Sequence[str] = ()
    ) -> tuple[list[Claim], int]:
        return [], 0

    def record(self, outcomes: Sequence[Outcome]) -> None:
        self.go.wait(5)
        self.due = now() + timedelta(hours=1)  # the deferral's retry

    def release(self, now: datetime) -> int:
        return 0

    def heartbeat(self, now: datetime) -> Control:
        return Control()

    def next_due(self) -> Due | None:
        answer = self.due
        threading.Event().wait(self.asking)  # the answer is read, then travels back
        self.asking = 0.0
        return Due(answer) if answer is not None else None


def waiting_queue(
    writer: Writer, stop: asyncio.Event, busy: Callable[[], bool], poll: float
) -> ClaimQueue:
    """A queue that waits for retries, asking what is due every ``poll`` s."""
    return ClaimQueue(
        writer,
        writer.store,
        DomainGate(),
        batch_size=10,
        limit=None,
        wait=True,
        max_idle_sleep=poll,
        clock=now,
        stop=stop,
        held_back=lambda _c, _d: None,
        busy=busy,
        result=RunResult(),
    )


def deferral() -> Outcome:
    return Outcome(1, DeliveryStatus.DEFERRED, 1, now(), next_attempt_at=now())


def test_a_batch_being_written_is_still_pending() -> None:
    async def main() -> list[bool]:
        ledger = SlowLedger()
        writer = Writer(ledger, 10, lambda _o: None)
        task = asyncio.ensure_future(writer.run())
        writer.record(deferral())
        await asyncio.sleep(0.05)  # the writer has taken the batch to the thread
        seen = [writer.pending]
        ledger.go.set()
        writer.close()
        await task
        writer.shutdown()
        return [*seen, writer.pending]

    assert asyncio.run(main()) == [True, False]


def test_the_queue_waits_for_an_outcome_being_written_before_it_says_done() -> None:
    """The last delivery's deferral is recorded while the queue asks what is due:
    the answer (nothing) is stale, and the run goes on waiting for the retry; it
    ends here only because it is stopped."""

    async def main() -> tuple[bool, datetime | None]:
        ledger = SlowLedger(asking=0.3)
        ledger.go.set()
        writer = Writer(ledger, 10, lambda _o: None)
        task = asyncio.ensure_future(writer.run())
        stop = asyncio.Event()
        queue = waiting_queue(writer, stop, busy=lambda: writer.pending, poll=30.0)
        loop = asyncio.get_running_loop()
        loop.call_later(0.1, writer.record, deferral())  # while next_due is asked
        loop.call_later(1.5, stop.set)
        claim = await queue.next()
        assert claim is None
        writer.close()
        await task
        writer.shutdown()
        return stop.is_set(), ledger.due

    stopped, due = asyncio.run(main())
    assert due is not None and stopped


def waits_said(ledger: SlowLedger, seconds: float, caplog: pytest.LogCaptureFixture) -> list[str]:
    """What a waiting queue asking every 0.05 s (another sender's claims may end)
    says of its wait in ``seconds``."""

    async def main() -> None:
        writer = Writer(ledger, 10, lambda _o: None)
        task = asyncio.ensure_future(writer.run())
        stop = asyncio.Event()
        queue = waiting_queue(writer, stop, busy=lambda: False, poll=0.05)
        asyncio.get_running_loop().call_later(seconds, stop.set)
        assert await queue.next() is None
        writer.close()
        await task
        writer.shutdown()

    with caplog.at_level(logging.INFO, logger="digest.send.queue"):
        asyncio.run(main())
    return [r.getMessage() for r in caplog.records if "waiting for retries" in r.getMessage()]


def test_the_wait_is_said_once_with_its_real_length(caplog: pytest.LogCaptureFixture) -> None:
    """Issue 25 §3: with two senders the queue asks every second and said "the next
    is due in 1 s" each time, while the retry was 300 s away."""

    class Later(SlowLedger):
        def next_due(self) -> Due | None:
            return Due(self.due) if self.due is not None else None

    ledger = Later()
    ledger.due = now() + timedelta(seconds=300)
    said = waits_said(ledger, 0.6, caplog)
    assert len(said) == 1, said
    assert said[0].endswith(("in 300 s", "in 299 s")), said


def test_another_senders_claims_are_no_wait_to_speak_of(caplog: pytest.LogCaptureFixture) -> None:
    """Issue 28 §7: the demo's second sender, with nothing of its own left, said
    "waiting for retries … in 119 s" every second while the first sent (the lease
    end of the first one's claims). Another sender at work is said at debug only."""

    class Theirs(SlowLedger):
        def next_due(self) -> Due | None:
            return Due(now() + timedelta(seconds=119), claimed=True)

    assert waits_said(Theirs(), 0.4, caplog) == []


class GoneLedger(SlowLedger):
    """The database goes while the first batch is written: given up (DatabaseAway)."""

    def record(self, outcomes: Sequence[Outcome]) -> None:
        self.go.wait(5)
        raise DatabaseAway("the database was unreachable for 4 s")


def test_a_writer_that_gives_up_fails_every_commit_awaited_not_only_its_batch() -> None:
    """A sender awaits its previous message's commit before the next DATA. An
    outcome recorded while the batch before it was failing was never written and
    never failed either: its sender waited for ever with the relay in DATA, and
    the send past DIGEST_DB_OUTAGE_LIMIT did not exit."""

    async def main() -> list[BaseException | None]:
        ledger = GoneLedger()
        writer = Writer(ledger, 1, lambda _o: None)
        task = asyncio.ensure_future(writer.run())
        first = writer.record(Outcome.sent(1, 1, now(), 250, "ok", "<1@vpk>"))
        await asyncio.sleep(0.05)  # the first batch is on the database thread
        second = writer.record(Outcome.sent(2, 1, now(), 250, "ok", "<2@vpk>"))
        ledger.go.set()
        with pytest.raises(DatabaseAway):
            await task
        writer.shutdown()
        assert first is not None and second is not None
        return [first.exception(), second.exception()]

    assert [type(e) for e in asyncio.run(main())] == [DatabaseAway, DatabaseAway]
