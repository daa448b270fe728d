"""Unsubscribes that came while the database was away (issue 18): the one request
that must never be lost. The reader is told it is done; the request waits in a
local file (``var/unsubscribes.queue``, 0600, one JSON line each) and is applied
when the database is back, by `digest serve` within seconds and by every send
before it claims anything, with the time the reader asked."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

log = logging.getLogger(__name__)


QUEUE_FILE = "unsubscribes.queue"


class UnsubscribeQueue:
    @classmethod
    def of(cls, var_dir: Path) -> UnsubscribeQueue:
        """The installation's queue: `digest serve` adds, every send applies."""
        return cls(var_dir / QUEUE_FILE)

    def __init__(self, path: Path) -> None:
        self.path = path
        self.applying = path.with_name(path.name + ".applying")

    def add(self, token_key: str, how: str, at: datetime) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"key": token_key, "how": how, "at": at.isoformat()}) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())  # one write: whole lines, whatever runs beside
        finally:
            os.close(fd)

    def waiting(self) -> bool:
        return self.path.exists() or self.applying.exists()

    def apply(self, unsubscribe: Callable[[str, str, datetime], object]) -> int:
        """Apply every queued request; a failure (the database away again) leaves the
        rest for the next call: applying one twice changes nothing."""
        if not self.applying.exists():
            if not self.path.exists():
                return 0
            self.path.rename(self.applying)  # new requests go to a fresh file meanwhile
        done = 0
        for number, line in enumerate(self.applying.read_text().splitlines(), 1):
            try:
                item = json.loads(line)
                key, how, at = (
                    str(item["key"]),
                    str(item["how"]),
                    datetime.fromisoformat(item["at"]),
                )
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("%s:%d: skipped (%s)", self.applying, number, exc)
                continue
            unsubscribe(key, how, at)
            done += 1
        self.applying.unlink()
        if done:
            log.warning("applied %d unsubscribes that came while the database was away", done)
        return done
