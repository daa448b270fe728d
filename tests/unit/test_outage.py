"""Issue 18's parts on their own: what counts as the database being away, the
outage's back-off and limit, the outcomes journal and the unsubscribe queue."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError, ProgrammingError

from digest import db
from digest.audience.queued import UnsubscribeQueue
from digest.errors import DatabaseAway
from digest.models import DeliveryStatus
from digest.outage import Outage
from digest.send.journal import Journal, replay
from digest.track.outcomes import Outcome

AT = datetime(2026, 11, 25, 7, 0, tzinfo=UTC)


def sqlite_error(message: str) -> OperationalError:
    return OperationalError("UPDATE delivery …", {}, sqlite3.OperationalError(message))


def test_away_is_a_lock_or_a_lost_server_never_a_wrong_statement() -> None:
    assert db.is_unavailable(sqlite_error("database is locked"))
    assert db.is_unavailable(sqlite_error("unable to open database file"))
    assert not db.is_unavailable(sqlite_error("no such table: delivery"))
    assert not db.is_unavailable(ProgrammingError("SELECT", {}, Exception("syntax")))
    assert not db.is_unavailable(ValueError("not a database error"))


def test_the_outage_is_waited_out_logged_once_and_given_up_past_its_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    outage = Outage(limit=10.0, clock=lambda: now[0])
    outage.FIRST = 0.0
    tries: list[float] = []

    async def flaky() -> str:
        tries.append(now[0])
        now[0] += 3.0
        if len(tries) < 3:
            raise sqlite_error("database is locked")
        return "done"

    with caplog.at_level(logging.WARNING):
        assert asyncio.run(outage.call(flaky)) == "done"
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unreachable" in m for m in messages) == 1
    assert sum("is back after" in m for m in messages) == 1

    async def never() -> str:
        now[0] += 4.0
        raise sqlite_error("database is locked")

    with pytest.raises(DatabaseAway, match="DIGEST_DB_OUTAGE_LIMIT=10"):
        asyncio.run(outage.call(never))
    with pytest.raises(DatabaseAway, match="DIGEST_DB_OUTAGE_LIMIT=10"):  # at once, same why
        asyncio.run(outage.call(flaky))


def sent(delivery: int) -> Outcome:
    return Outcome.sent(delivery, 1, AT, 250, "2.0.0 Ok", f"<m{delivery}@x>", subscriber_id=7)


def test_the_journal_keeps_sent_messages_and_replay_skips_a_torn_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = Journal(tmp_path / "outcomes.journal")
    journal.write(sent(1))
    journal.write(Outcome(2, DeliveryStatus.DEFERRED, 1, AT))  # not journaled
    journal.write(sent(3))
    journal.close(all_committed=False)
    with journal.path.open("a") as torn:
        torn.write('["sent", 1, 250, "2.0')  # kill -9 in the middle of a write
    settled: list[tuple[Any, ...]] = []

    def settle(rows: list[tuple[Any, ...]]) -> int:
        settled.extend(rows)
        return len(rows)

    assert replay(journal.folder, settle, gone=lambda _stem: False) == 0  # still alive
    with caplog.at_level(logging.WARNING):
        assert replay(journal.folder, settle, gone=lambda _stem: True) == 2
    assert [row[-1] for row in settled] == [1, 3]
    assert settled[0][5] == AT and settled[0][0] == "sent"  # times come back as times
    assert any(":3: skipped" in r.getMessage() for r in caplog.records)
    assert not journal.path.exists()


def test_a_journal_whose_outcomes_were_all_committed_is_removed(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    journal.write(sent(1))
    journal.close(all_committed=True)
    assert not journal.path.exists()


def test_queued_unsubscribes_are_applied_once_each_and_survive_a_failure(
    tmp_path: Path,
) -> None:
    queue = UnsubscribeQueue(tmp_path / "unsubscribes.queue")
    queue.add("key-1", "one-click", AT)
    queue.add("key-2", "web", AT)
    assert oct(queue.path.stat().st_mode & 0o777) == "0o600"
    applied: list[tuple[str, str, datetime]] = []

    def away(key: str, how: str, at: datetime) -> None:
        raise sqlite_error("database is locked")

    with pytest.raises(OperationalError):
        queue.apply(away)
    assert queue.waiting()
    queue.add("key-3", "web", AT)  # while the first two wait to be applied
    assert queue.apply(lambda k, h, a: applied.append((k, h, a))) == 2
    assert queue.apply(lambda k, h, a: applied.append((k, h, a))) == 1
    assert [k for k, _, _ in applied] == ["key-1", "key-2", "key-3"]
    assert applied[0] == ("key-1", "one-click", AT) and not queue.waiting()
