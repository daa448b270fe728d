"""The suite's fixed facts (its clock, CI or not, the project) and the threads a
test runs things in."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event

from digest.config import PROJECT_ROOT

__all__ = ["FIXED_NOW", "IN_CI", "PROJECT_ROOT", "in_thread", "together"]

IN_CI = os.environ.get("CI") == "true"
FIXED_NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)  # 11:00 in Moscow


def in_thread(fn: Callable[[], object], timeout: float = 60) -> None:
    """``fn()`` in a thread of its own, waited for: Playwright's sync API keeps an
    event loop in the test's thread, so a send cannot run its own there."""
    thread = threading.Thread(target=fn)
    thread.start()
    thread.join(timeout=timeout)
    assert not thread.is_alive(), "it did not finish in time"


def together(fn: Callable[[], object], threads: int = 2, timeout: float = 60) -> None:
    """``fn()`` in ``threads`` threads at once (two processes racing), all waited for."""
    started = [threading.Thread(target=fn) for _ in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join(timeout=timeout)
        assert not thread.is_alive(), "it did not finish in time"


@contextmanager
def senders_nice(marker: str) -> Iterator[dict[int, int]]:
    """While the block runs, the nice value of each sender process (a spawned
    ``multiprocessing`` child, not its resource tracker) whose environment holds
    ``marker``, by pid: the last value read before it ended."""
    seen: dict[int, int] = {}
    done = threading.Event()

    def look() -> None:
        while not done.wait(0.05):
            for entry in Path("/proc").iterdir():
                with contextlib.suppress(OSError):  # a process that ended meanwhile
                    if _is_sender(entry, marker.encode()):
                        pid = int(entry.name)
                        seen[pid] = os.getpriority(os.PRIO_PROCESS, pid)

    watcher = threading.Thread(target=look, daemon=True)
    watcher.start()
    try:
        yield seen
    finally:
        done.set()
        watcher.join()


def _is_sender(entry: Path, marker: bytes) -> bool:
    if not entry.name.isdigit() or b"spawn_main" not in (entry / "cmdline").read_bytes():
        return False
    return marker in (entry / "environ").read_bytes()


@contextmanager
def statements(engine: Any, naming: str) -> Iterator[list[tuple[str, Any]]]:
    """The statements sent through ``engine`` meanwhile whose SQL holds ``naming``,
    with their parameters (for a test to read their plans)."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, sql: str, parameters: Any, *_: Any) -> None:
        if naming in sql:
            seen.append((sql, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)
