"""More sender processes for one send (DIGEST_SENDERS): both cores of a machine
on one edition.

Each sender is a process of its own (``spawn``: nothing of the parent's engine,
threads or sockets is inherited) that claims from the same edition as the
parent, so the exact-once rule, pause and cancel, and ``kill -9`` safety are the
claims' (one writer at a time on SQLite, ``SKIP LOCKED`` on PostgreSQL), as
between two ``digest worker`` processes. A sender reports each outcome to the
parent's progress and its counts at the end; a signal to the parent is passed on
(each stops cleanly). The rate and the domains' pauses are shared through the
database; each domain's fixed cap is split between them (``share``).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import queue
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any

from digest.config import SmtpTarget
from digest.config.settings import Settings
from digest.models import DeliveryStatus, utcnow
from digest.send.process import started_as_senders
from digest.send.result import RunResult
from digest.send.smtp import Progress
from digest.track.outcomes import Outcome

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """What a sender process is told: everything it needs, picklable."""

    settings: Settings
    edition_id: int
    schedule: str
    via: SmtpTarget | None
    wait: bool
    share: int
    log_level: str
    log_json: bool
    parent: int = 0  # the pid of `digest send`: a sender does not outlive it


# What a sender process runs, given its job and the queue it reports to: the
# doors' (`digest.cli.senders.sender_main`), which wires the process's services.
Entry = Callable[[Job, Any], None]


def stop_with(parent: int) -> None:
    """SIGTERM (a clean stop) when the parent dies, even by ``kill -9``: a send is
    its parent's, never left running alone (Linux's PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    if parent and os.getppid() != parent:
        raise SystemExit(0)  # it died before the line above


class Reporter:
    """A sender's progress: each outcome to the parent, as (delivery, status)."""

    def __init__(self, reports: Any) -> None:
        self.reports = reports

    def advance(self, outcome: Outcome) -> None:
        self.reports.put(("outcome", outcome.delivery_id, outcome.status.value))


class Senders:
    """The extra sender processes of one send, started beside the parent's own run."""

    def __init__(self, jobs: list[Job], progress: Progress | None, entry: Entry | None) -> None:
        context = multiprocessing.get_context("spawn")
        # A send alone (DIGEST_SENDERS=1, --limit) starts nothing: no queue, no thread.
        self.reports = context.Queue() if jobs else None
        self.progress = progress
        self.processes: list[BaseProcess] = [
            context.Process(target=entry, args=(job, self.reports), name=f"sender-{n}")
            for n, job in enumerate(jobs, 2)
        ]
        self.results: list[RunResult] = []
        self.sent_by: list[int] = []  # what each sender process sent
        self._reader = threading.Thread(target=self._read, daemon=True)

    def start(self) -> None:
        if not self.processes:
            return
        with started_as_senders():
            for process in self.processes:
                process.start()
        self._reader.start()

    def stop(self, _reason: str = "") -> None:
        """Pass a stop on (SIGTERM, each sender's clean stop): what is in flight
        finishes and is recorded, the rest is handed back."""
        for process in self.processes:
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)

    def join(self) -> RunResult:
        """Wait for every sender; their counts added up."""
        if not self.processes:
            return RunResult()
        for process in self.processes:
            process.join()
        self._reader.join(timeout=30)
        total = RunResult()
        for result in self.results:
            result.stopped = total.stopped or result.stopped
            total = total.then(result)
        self.sent_by = [result.sent for result in self.results]
        lost = len(self.processes) - len(self.results)
        if lost:
            log.error("%d sender process(es) ended without a report (their claims go back)", lost)
        return total

    def _read(self) -> None:
        assert self.reports is not None
        finished = 0
        while finished < len(self.processes):
            try:
                report = self.reports.get(timeout=1)
            except queue.Empty:
                if not any(p.is_alive() for p in self.processes):
                    return
                continue
            if report[0] == "done":
                finished += 1
                self.results.append(report[1])
            elif self.progress is not None:
                self.progress.advance(_outcome(report[1], report[2]))


def _outcome(delivery_id: int, status: str) -> Outcome:
    return Outcome(delivery_id, DeliveryStatus(status), 0, utcnow())


@contextlib.contextmanager
def senders(jobs: list[Job], progress: Progress | None, entry: Entry | None) -> Iterator[Senders]:
    """Run ``jobs`` in sender processes running ``entry`` for the block (``join``
    waits for them); an error in the parent stops them and waits."""
    group = Senders(jobs, progress, entry)
    group.start()
    try:
        yield group
    except BaseException:
        group.stop()
        group.join()
        raise
