"""The outcomes journal (issues 18, 32): every message the relay accepted is
written here the moment it is accepted, before its outcome reaches the database,
so an outage followed by a crash never sends it again.

A journal belongs to one database: it lives in
``var/outcomes.journal/DATABASE/HOST-PID-EDITION.jsonl`` (0600), DATABASE being
the identity made with the schema, and every line names the database, the
edition, the delivery, its reader and its Message-ID. A process keeps in its file
only what is not yet committed (rewritten after each commit). The next run
against the same database writes the files of processes that are gone into it
before it claims anything (``replay``), where all of a line matches, then deletes
them; a file of no database or of another one is never applied: it is set aside
in ``set-aside/`` and said once with its path."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from digest.models import DeliveryStatus
from digest.track.outcomes import Outcome

log = logging.getLogger(__name__)

SET_ASIDE = "set-aside"


@dataclass(frozen=True)
class JournalPlace:
    """Where one send's journal goes: the journals' folder, the database's identity
    and the edition."""

    root: Path
    database: str
    edition: int


@dataclass(frozen=True)
class Entry:
    """One accepted message, as a journal line names it."""

    database: str
    edition: int
    delivery: int
    subscriber: int
    message_id: str
    attempts: int
    code: int | None
    reply: str
    at: datetime
    first_attempt_at: datetime | None

    @classmethod
    def parse(cls, line: str) -> Entry:
        data = json.loads(line)
        if not isinstance(data, dict):
            raise ValueError("not a journal line")
        try:
            first = data["first_attempt_at"]
            return cls(
                str(data["database"]),
                int(data["edition"]),
                int(data["delivery"]),
                int(data["subscriber"]),
                str(data["message_id"]),
                int(data["attempts"]),
                None if data["code"] is None else int(data["code"]),
                str(data["reply"]),
                _utc(data["at"]),
                None if first is None else _utc(first),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a journal line ({exc})") from exc

    def line(self) -> bytes:
        data = {k: _plain(v) for k, v in self.__dict__.items()}
        return (json.dumps(data, ensure_ascii=False) + "\n").encode("utf-8")

    def row(self) -> tuple[Any, ...]:
        """The values ``store.record_outcomes`` writes, as ``Outcome.row`` gives them."""
        sent = DeliveryStatus.SENT.value
        return (sent, self.attempts, self.code, self.reply, self.message_id, self.at, None,
                self.at, self.first_attempt_at, 0, self.delivery)  # fmt: skip


class Journal:
    """One process's journal of one edition's send."""

    def __init__(self, place: JournalPlace) -> None:
        self.place = place
        self.path = _own_path(place.root / place.database, place.edition)
        self._fd: int | None = None
        self._open: dict[int, bytes] = {}  # delivery id → its line, not yet committed
        self._kept = b""  # lines an earlier run of this process left uncommitted

    def write(self, outcome: Outcome) -> None:
        """One accepted message, appended with one write (kill -9 leaves whole lines
        or a torn last one, which replay skips)."""
        if outcome.status is not DeliveryStatus.SENT:
            return  # only a sent message would be sent twice if its outcome were lost
        if self._fd is None:
            self._fd = self._open_file()
        line = self._entry(outcome).line()
        os.write(self._fd, line)
        self._open[outcome.delivery_id] = line

    def committed(self, outcomes: list[Outcome]) -> None:
        """These outcomes are in the database: the file keeps only the rest (none
        of a committed line is replayed later). Replaced whole, never half-written."""
        for outcome in outcomes:
            self._open.pop(outcome.delivery_id, None)
        if self._fd is None:
            return
        if not self._open and not self._kept:
            os.ftruncate(self._fd, 0)
            return
        spare = self.path.with_suffix(".tmp")
        fd = os.open(spare, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, self._kept + b"".join(self._open.values()))
        finally:
            os.close(fd)
        os.replace(spare, self.path)
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    def close(self, all_committed: bool) -> None:
        with _in_use_lock:  # the send is over: its file's name is free again
            _in_use.discard(self.path)
        if self._fd is None:
            return
        if all_committed:
            self._open.clear()
            self.committed([])  # what an earlier run left stays; nothing else
        os.close(self._fd)
        self._fd = None
        if all_committed and not self._kept:
            self.path.unlink(missing_ok=True)

    def _open_file(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        # An earlier run of this process that could not commit: its lines stay.
        self._kept = self.path.read_bytes()
        return fd

    def _entry(self, outcome: Outcome) -> Entry:
        return Entry(
            self.place.database,
            self.place.edition,
            outcome.delivery_id,
            outcome.subscriber_id or 0,
            outcome.message_id or "",
            outcome.attempts,
            outcome.code,
            outcome.reply[:2000],
            outcome.at,
            outcome.first_attempt_at,
        )


def replay(
    root: Path,
    database: str,
    settle: Callable[[list[Entry]], int],
    gone: Callable[[str], bool],
) -> int:
    """Write the accepted messages of every process that is ``gone`` (its file's
    owner, ``HOST-PID``) into ``database`` (``settle`` applies what matches) and
    delete their files; how many were settled. A torn line is named and skipped; a
    file of another database or of none is set aside, never applied. One replay at
    a time on a machine: two workers starting together do not read one file twice."""
    if not root.is_dir():
        return 0
    settled = 0
    with _locked(root):
        for path in sorted(root.glob("*.jsonl")):  # written before journals named a database
            if gone(path.stem):
                _set_aside(root, path, "it names no database")
        for path in sorted((root / database).glob("*.jsonl")):
            if gone(_owner_of(path)):
                settled += _replay_file(root, path, database, settle)
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            if folder.name not in (database, SET_ASIDE) and any(folder.glob("*.jsonl")):
                log.info("%s: journals of another database, kept for it", folder)
    if settled:
        log.warning("the outcomes journal held %d sent messages: written now", settled)
    return settled


def _replay_file(
    root: Path, path: Path, database: str, settle: Callable[[list[Entry]], int]
) -> int:
    entries = []
    text = path.read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), 1):
        try:
            entries.append(Entry.parse(line))
        except ValueError as exc:
            log.warning("%s:%d: skipped (%s)", path, number, exc)
    others = {e.database for e in entries} - {database}
    if others:
        _set_aside(root, path, f"it names another database ({', '.join(sorted(others))})")
        return 0
    settled = settle(entries) if entries else 0
    path.unlink()
    path.with_suffix(".tmp").unlink(missing_ok=True)
    return settled


def _set_aside(root: Path, path: Path, why: str) -> None:
    """Kept, never applied: said once, as it moves."""
    aside = root / SET_ASIDE
    aside.mkdir(mode=0o700, exist_ok=True)
    target = aside / f"{path.parent.name}-{path.name}" if path.parent != root else aside / path.name
    os.replace(path, target)
    log.warning("%s: not applied to this database, %s; kept as %s", path, why, target)


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    fd = os.open(root / ".replay.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released by the kernel if we die
        yield
    finally:
        os.close(fd)


_in_use: set[Path] = set()  # the journal files of this process's running sends
_in_use_lock = threading.Lock()


def _own_path(folder: Path, edition: int) -> Path:
    """``HOST-PID-EDITION.jsonl``, or ``….2.jsonl``, ``….3.jsonl`` while another
    send of the same edition runs in this process: two senders in one process
    replaced each other's file and stopped each other's writer (issue 25's test)."""
    with _in_use_lock:
        n = 1
        while (path := folder / f"{_owner()}-{edition}{f'.{n}' if n > 1 else ''}.jsonl") in _in_use:
            n += 1
        _in_use.add(path)
        return path


def _owner() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _owner_of(path: Path) -> str:
    """``HOST-PID`` of ``HOST-PID-EDITION.jsonl``."""
    return path.stem.rpartition("-")[0]


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _utc(value: Any) -> datetime:
    at = datetime.fromisoformat(str(value))
    if at.tzinfo is None:
        raise ValueError(f"a time without its zone: {value!r}")
    return at
