"""Process glue: signals stop a send cleanly, and the event loop it runs on."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

from digest.send.result import RunResult
from digest.send.run import SendRun

T = TypeVar("T")


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[str], None]) -> Iterator[None]:
    """The first SIGINT or SIGTERM calls ``stop("signal SIGTERM")`` (a clean stop:
    in-flight messages finish and are recorded, claims go back); a second one
    acts as usual. Call inside the running loop."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)

    def on_signal(sig: signal.Signals) -> None:
        stop(f"signal {sig.name}")
        for s in signals:
            loop.remove_signal_handler(s)

    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


async def run_stoppable(run: SendRun, also: Callable[[str], None] | None = None) -> RunResult:
    """Run a send that SIGINT or SIGTERM stop cleanly; the stop is passed to
    ``also`` too (the other sender processes)."""

    def stop(reason: str) -> None:
        run.stop(reason)
        if also is not None:
            also(reason)

    with stop_on_signals(stop):
        return await run.run()


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop where it is installed (it speeds up the socket work)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(coro)
    return uvloop.run(coro)


class Stopper:
    """A signal stops the worker's loop and the send run in progress (cleanly:
    in-flight messages finish and are recorded)."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.current: list[SendRun] = []

    def on_signal(self, reason: str) -> None:
        self.stop.set()
        for run in self.current:
            run.stop(reason)

    def on_run(self, run: SendRun | None) -> None:
        self.current[:] = [run] if run is not None else []
