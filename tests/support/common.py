"""The suite's fixed facts (its clock, CI or not, the project) and the threads a
test runs things in."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime

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
