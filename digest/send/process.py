"""Process glue: signals stop a send cleanly, and the event loop it runs on."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

from digest.send.result import RunResult
from digest.send.run import SendRun

T = TypeVar("T")


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[str], None]) -> Iterator[None]:
    """The first SIGINT or SIGTERM calls ``stop("signal SIGTERM")`` (a clean stop:
    in-flight messages finish and are recorded, claims go back); a second one
    acts as usual, except in a sender process, which hears it as the same stop.
    A signal the process was told to ignore stays ignored (a sender process
    hears the stop from its parent only). Call inside the running loop."""
    loop = asyncio.get_running_loop()
    signals = tuple(
        s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) is not signal.SIG_IGN
    )
    # A sender stops once: a SIGTERM to the process group reaches it twice, from the
    # group and from its parent passing the stop on, and the second, given its
    # default action back, killed it before its report (seen under load).
    sender = signal.getsignal(signal.SIGTERM) is _hear
    stopped: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        if stopped and sender:
            return  # the same stop heard again
        stopped.append(sig)
        stop(f"signal {sig.name}")
        if not sender:
            for s in signals:
                loop.remove_signal_handler(s)

    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)
    if _heard:  # a stop that came before this loop was listening
        on_signal(_heard[0])
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        if sender:  # asyncio gave SIGTERM its default action back: not in a sender
            signal.signal(signal.SIGTERM, _hear)


_heard: list[signal.Signals] = []


def _hear(signum: int, _frame: object) -> None:
    """A sender's SIGTERM while no send listens: kept for the next one."""
    _heard.append(signal.Signals(signum))


def sender_signals() -> None:
    """A sender process (``send.senders``) hears its stop from the parent only,
    as SIGTERM: Ctrl-C, which the terminal sends to the whole group, is ignored
    (heard twice, the terminal's and the parent's, a sender died without its
    report, its claims left ``sending``: issue 25). A SIGTERM that comes before
    the send listens is kept for it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _hear)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # held since its start


def yield_cpu(nice: int) -> None:
    """Lower this process's CPU priority to ``nice`` (DIGEST_SEND_NICE), never raise
    it: a send that holds every core still leaves a person's command, the desk and
    the database first in line (issue 31: `digest status` took 2.0-2.3 s while two
    workers sent, 0.65 s otherwise). An idle machine sends as fast either way."""
    if nice > os.getpriority(os.PRIO_PROCESS, 0):
        os.setpriority(os.PRIO_PROCESS, 0, nice)


@contextlib.contextmanager
def started_as_senders() -> Iterator[None]:
    """Start processes the way a sender lives (``sender_signals``) from
    their first instruction: Ctrl-C ignored, SIGTERM held (both are inherited
    across exec), so one that comes while a sender still imports neither kills
    it nor is lost."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals are the main thread's (a test's thread: none come)
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        signal.signal(signal.SIGINT, before)


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
