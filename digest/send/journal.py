"""The outcomes journal (issue 18): every message the relay accepted is written
here the moment it is accepted, before its outcome reaches the database, so an
outage followed by a crash never sends it again.

One file per process (``var/outcomes.journal/HOST-PID.jsonl``, 0600): a process
empties its own file whenever all it wrote is committed, and the next run on the
machine writes the files of processes that are gone into the database before it
claims anything (``replay``), then deletes them."""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from digest.models import DeliveryStatus
from digest.track.outcomes import Outcome

log = logging.getLogger(__name__)

SETTLE_AT = 1 << 20  # bytes: a file this long is emptied once all of it is committed


class Journal:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / f"{socket.gethostname()}-{os.getpid()}.jsonl"
        self._fd: int | None = None
        self._size = 0

    def write(self, outcome: Outcome) -> None:
        """One accepted message, appended with one write (kill -9 leaves whole lines
        or a torn last one, which replay skips)."""
        if outcome.status is not DeliveryStatus.SENT:
            return  # only a sent message would be sent twice if its outcome were lost
        if self._fd is None:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        line = json.dumps([_plain(v) for v in outcome.row()], ensure_ascii=False) + "\n"
        self._size += os.write(self._fd, line.encode("utf-8"))

    def committed(self) -> None:
        """Everything written so far is in the database: a long file starts again."""
        if self._fd is not None and self._size >= SETTLE_AT:
            os.ftruncate(self._fd, 0)
            self._size = 0

    def close(self, all_committed: bool) -> None:
        if self._fd is None:
            return
        os.close(self._fd)
        self._fd = None
        if all_committed:
            self.path.unlink(missing_ok=True)


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _row(values: Sequence[Any]) -> tuple[Any, ...]:
    # record_outcomes' columns: sent_at, next_attempt_at, at, first_attempt_at are times
    return tuple(
        datetime.fromisoformat(v) if i in (5, 6, 7, 8) and isinstance(v, str) else v
        for i, v in enumerate(values)
    )


def replay(
    folder: Path,
    settle: Callable[[list[tuple[Any, ...]]], int],
    gone: Callable[[str], bool],
) -> int:
    """Write the accepted messages of every process that is ``gone`` (by its file's
    name, ``HOST-PID``) into the database
    (``settle`` skips deliveries already final) and delete their files; how many
    were settled. A torn or foreign line is named and skipped."""
    if not folder.is_dir():
        return 0
    settled = 0
    for path in sorted(folder.glob("*.jsonl")):
        if not gone(path.stem):
            continue
        rows = []
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            try:
                values = json.loads(line)
                if not isinstance(values, list) or len(values) != 10:
                    raise ValueError("not an outcome")
                rows.append(_row(values))
            except ValueError as exc:
                log.warning("%s:%d: skipped (%s)", path, number, exc)
        if rows:
            settled += settle(rows)
        path.unlink()
    if settled:
        log.warning("the outcomes journal held %d sent messages: written now", settled)
    return settled
