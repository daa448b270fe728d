"""The outcomes journal on its own (issues 18, 32): what a line holds, what stays
in a file after a commit, and what replay applies, sets aside or leaves alone."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.models import DeliveryStatus
from digest.send.journal import Entry, Journal, JournalPlace, replay
from digest.track.outcomes import Outcome

AT = datetime(2026, 11, 25, 7, 0, tzinfo=UTC)
DB_A, DB_B = "aaaaaaaa-0000-4000-8000-000000000000", "bbbbbbbb-0000-4000-8000-000000000000"


def sent(delivery: int) -> Outcome:
    return Outcome.sent(delivery, 1, AT, 250, "2.0.0 Ok", f"<m{delivery}@x>", subscriber_id=7)


def journal(root: Path, database: str = DB_A, edition: int = 5) -> Journal:
    return Journal(JournalPlace(root, database, edition))


class Settle:
    def __init__(self) -> None:
        self.entries: list[Entry] = []

    def __call__(self, entries: list[Entry]) -> int:
        self.entries.extend(entries)
        return len(entries)


def test_a_line_names_the_database_the_edition_the_delivery_its_reader_and_message_id(
    tmp_path: Path,
) -> None:
    j = journal(tmp_path)
    j.write(sent(1))
    j.write(Outcome(2, DeliveryStatus.DEFERRED, 1, AT))  # not journaled: never sent twice
    j.close(all_committed=False)
    assert j.path.parent == tmp_path / DB_A
    assert os.stat(j.path).st_mode & 0o777 == 0o600
    (entry,) = [Entry.parse(line) for line in j.path.read_text().splitlines()]
    assert (entry.database, entry.edition, entry.delivery, entry.subscriber) == (DB_A, 5, 1, 7)
    assert entry.message_id == "<m1@x>"
    assert entry.row() == ("sent", 1, 250, "2.0.0 Ok", "<m1@x>", AT, None, AT, AT, 0, 1)
    assert entry.row() == sent(1).row()  # what the writer would have recorded


def test_committed_lines_leave_the_file_at_once_whatever_its_size(tmp_path: Path) -> None:
    j = journal(tmp_path)
    for n in (1, 2, 3):
        j.write(sent(n))
    j.committed([sent(1), sent(3)])
    assert [Entry.parse(x).delivery for x in j.path.read_text().splitlines()] == [2]
    j.write(sent(4))  # appended to the file that replaced the old one
    assert [Entry.parse(x).delivery for x in j.path.read_text().splitlines()] == [2, 4]
    j.committed([sent(2), sent(4)])
    assert j.path.read_bytes() == b""
    j.close(all_committed=True)
    assert not j.path.exists()


def test_a_journal_left_uncommitted_by_an_earlier_run_of_the_process_stays(
    tmp_path: Path,
) -> None:
    first = journal(tmp_path)
    first.write(sent(1))
    first.close(all_committed=False)  # the database went away
    again = journal(tmp_path)
    again.write(sent(2))
    again.committed([sent(2)])
    again.close(all_committed=True)
    assert [Entry.parse(x).delivery for x in again.path.read_text().splitlines()] == [1]


def test_replay_applies_its_own_databases_files_of_dead_processes_and_skips_a_torn_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    j = journal(tmp_path)
    j.write(sent(1))
    j.write(sent(3))
    j.close(all_committed=False)
    with j.path.open("a") as torn:
        torn.write('{"database": "aaa')  # kill -9 in the middle of a write
    settle = Settle()
    assert replay(tmp_path, DB_A, settle, gone=lambda _owner: False) == 0  # still alive
    with caplog.at_level(logging.WARNING):
        assert replay(tmp_path, DB_A, settle, gone=lambda _owner: True) == 2
    assert [e.delivery for e in settle.entries] == [1, 3]
    assert settle.entries[0].at == AT  # times come back as times, in UTC
    assert any(":3: skipped" in r.getMessage() for r in caplog.records)
    assert not j.path.exists()


def test_another_databases_journal_is_left_for_it_and_never_applied(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    theirs = journal(tmp_path, DB_A)
    theirs.write(sent(1))
    theirs.close(all_committed=False)
    settle = Settle()
    with caplog.at_level(logging.INFO):
        assert replay(tmp_path, DB_B, settle, gone=lambda _owner: True) == 0
    assert settle.entries == []
    assert theirs.path.exists()  # A's own next run replays it
    assert sum(str(tmp_path / DB_A) in r.getMessage() for r in caplog.records) == 1
    assert replay(tmp_path, DB_A, settle, gone=lambda _owner: True) == 1


def test_a_file_naming_no_database_or_another_one_is_set_aside_said_once_and_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    legacy = tmp_path / "vm-4242.jsonl"  # issue 18's format: delivery ids alone
    legacy.write_text('["sent", 1, 250, "ok", "<m@x>", null, null, null, null, 1]\n')
    copied = journal(tmp_path, DB_A)
    copied.write(sent(2))
    copied.close(all_committed=False)
    (tmp_path / DB_B).mkdir()
    moved = tmp_path / DB_B / copied.path.name  # a file of A's, put in B's folder
    os.replace(copied.path, moved)
    settle = Settle()
    with caplog.at_level(logging.WARNING):
        assert replay(tmp_path, DB_B, settle, gone=lambda _owner: True) == 0
        assert replay(tmp_path, DB_B, settle, gone=lambda _owner: True) == 0
    assert settle.entries == []
    aside = sorted(p.name for p in (tmp_path / "set-aside").iterdir())
    assert aside == [f"{DB_B}-{moved.name}", "vm-4242.jsonl"]
    said = [r.getMessage() for r in caplog.records]
    assert sum(str(legacy) in m and "names no database" in m for m in said) == 1
    assert sum(str(moved) in m and "another database" in m for m in said) == 1
