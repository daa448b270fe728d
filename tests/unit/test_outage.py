"""Issue 18's parts on their own: what counts as the database being away, the
outage's back-off and limit and the unsubscribe queue (the outcomes journal:
integration/test_journal_belongs_to_its_database.py)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError, ProgrammingError

from digest import db
from digest.audience.queued import UnsubscribeQueue
from digest.errors import DatabaseAway
from digest.outage import Outage

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
