"""A fault-injecting SMTP server on aiosmtpd: per-recipient scripts of replies.

A script is the list of what successive attempts for one recipient get:
a reply line to DATA (``"451 4.3.0 try later"``), a reply line to RCPT
(``"rcpt:451 4.7.1 Please try again later"``, as greylisting answers),
``"accept"``, ``"drop"`` (the line is closed in the middle of DATA, no reply)
or ``"stall"`` (no reply for longer than the client's timeout). After the
script runs out the recipient is accepted. Used by the tests and by ``bench/send.py --faults``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from digest.capture import CaptureHandler

TEMPORARY = "451 4.3.0 Mailbox temporarily unavailable"
RATE_LIMIT = "421 4.7.0 Too many messages, slow down"
FULL_TEMPORARY = "452 4.2.2 Mailbox full"
HARD = "550 5.1.1 user unknown"
FULL_PERMANENT = "552 5.2.2 Mailbox full, over quota"
SPAM = "554 5.7.1 Message rejected as spam"
GREYLIST = "rcpt:451 4.7.1 Please try again later"
POSTGREY = "rcpt:450 4.2.0 <{rcpt}>: Recipient address rejected: Greylisted, see postgrey"
FAULTS = ("accept", TEMPORARY, RATE_LIMIT, FULL_TEMPORARY, HARD, FULL_PERMANENT, SPAM)
PERMANENT = (HARD, FULL_PERMANENT, SPAM)


class FaultHandler(CaptureHandler):
    def __init__(
        self,
        outbox: Path | None = None,
        stall_seconds: float = 3.0,
        delay: float = 0.0,
        processes: int = 1,
        hold_after: int | None = None,
    ) -> None:
        super().__init__(outbox)
        self.delay = delay  # seconds before every reply: a slow relay
        # Every DATA answer waits (a minute at most) until clients in this many
        # processes have reached DATA: a test of senders sharing a send does not
        # depend on one process starting before another has finished the list.
        self.processes = processes
        self.clients: dict[int, int | None] = {}  # a client's port: its process
        # Once this many messages are accepted, every DATA answer waits (a minute at
        # most) for release(): a test that stops a send part-way through is not a
        # race against the send finishing first on a fast (or idle) machine.
        self.hold_after = hold_after
        self.released = threading.Event()
        self.delayed = 0  # messages whose end of data waits for that reply now
        self.scripts: dict[str, list[str]] = {}
        self.attempts: Counter[str] = Counter()
        self.stall_seconds = stall_seconds
        self._script_lock = threading.Lock()
        # When each attempt for a recipient reached the server (loop time, seconds).
        self.seen: dict[str, list[float]] = {}

    def script(self, recipient: str, steps: Sequence[str]) -> None:
        self.scripts[recipient] = list(steps)

    def _next(self, recipient: str) -> str:
        with self._script_lock:
            self.attempts[recipient] += 1
            self.seen.setdefault(recipient, []).append(time.monotonic())
            steps = self.scripts.get(recipient)
            return steps.pop(0) if steps else "accept"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        with self._script_lock:
            steps = self.scripts.get(address)
            at_rcpt = bool(steps) and steps[0].startswith("rcpt:")
        if at_rcpt:
            return self._next(address).removeprefix("rcpt:").replace("{rcpt}", address)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        step = self._next(envelope.rcpt_tos[0])
        await self._quorum(session.peer[1])
        await self._held()
        if self.delay:
            self.delayed += 1
            try:
                await asyncio.sleep(self.delay)
            finally:
                self.delayed -= 1
        if step == "drop":
            server.transport.close()
            return "421 4.4.2 dropped"  # never reaches the client: the line is gone
        if step == "stall":
            await asyncio.sleep(self.stall_seconds)
            server.transport.close()
            return "451 4.4.2 too late"
        if step != "accept":
            return step
        return await super().handle_DATA(server, session, envelope)

    async def _quorum(self, port: int) -> None:
        if self.processes < 2:
            return
        if port not in self.clients:
            self.clients[port] = client_pid(port)
        await _until(lambda: len(set(self.clients.values()) - {None}) >= self.processes)

    async def _held(self) -> None:
        if self.hold_after is not None and len(self.messages) >= self.hold_after:
            await _until(self.released.is_set)

    def hold(self, after: int) -> None:
        """Hold the answers again, from the ``after``-th message, until release()."""
        self.released.clear()
        self.hold_after = after

    def release(self) -> None:
        self.released.set()

    def received(self) -> Counter[str]:
        return Counter(m.rcpt_to[0] for m in self.messages)


async def _until(condition: Callable[[], bool], seconds: float = 60) -> None:
    """Wait until ``condition`` holds, a minute at most: then the test's own
    assertions judge what happened."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


def client_pid(port: int) -> int | None:
    """The local process whose TCP socket has ``port`` as its own port: the
    socket's inode from /proc/net/tcp, then the process holding that inode."""
    inode = ""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rpartition(":")[2], 16) == port and fields[9] != "0":
                inode = fields[9]
    if not inode:
        return None
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        with contextlib.suppress(OSError):  # a process or descriptor gone meanwhile
            if os.readlink(fd) == f"socket:[{inode}]":
                return int(fd.parts[2])
    return None


def mixed_faults(
    recipients: Sequence[str],
    handler: FaultHandler,
    *,
    temporary: float = 0.20,
    permanent: float = 0.05,
    dropped: float = 0.02,
    stalled: float = 0.0,
    rate_limited: float = 0.01,
    seed: int = 7,
) -> dict[str, str]:
    """Script a share of recipients with each kind of fault; return the expected
    end of each: ``sent``, or the permanent reply it must be failed with."""
    rng = random.Random(seed)
    expected: dict[str, str] = {}
    temporary_kinds = (TEMPORARY, FULL_TEMPORARY)
    for rcpt in recipients:
        roll = rng.random()
        if roll < rate_limited:  # the domain wants us slower: it pauses (MAIL-RULES 23)
            handler.script(rcpt, [RATE_LIMIT])
            expected[rcpt] = "sent"
            continue
        roll = rng.random()
        if roll < permanent:
            reply = PERMANENT[rng.randrange(len(PERMANENT))]
            handler.script(rcpt, [reply])
            expected[rcpt] = reply
            continue
        roll -= permanent
        if roll < temporary:
            handler.script(rcpt, [temporary_kinds[rng.randrange(2)]] * rng.randint(1, 2))
        elif roll < temporary + dropped:
            handler.script(rcpt, ["drop"])
        elif roll < temporary + dropped + stalled:
            handler.script(rcpt, ["stall"])
        expected[rcpt] = "sent"
    return expected


OUTAGE = "421 4.7.0 Try again later, closing connection"


class OutageHandler(FaultHandler):
    """A provider down for ``seconds`` from the first attempt to its ``domain``:
    every RCPT for it meets ``OUTAGE`` meanwhile (issue 25). ``refused`` and
    ``accepted`` say when each attempt for the domain came (monotonic seconds)."""

    def __init__(self, domain: str, seconds: float) -> None:
        super().__init__()
        self.domain, self.seconds = domain, seconds
        self.began: float | None = None
        self.refused: list[float] = []
        self.accepted: list[float] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address.endswith("@" + self.domain):
            now = time.monotonic()
            with self._script_lock:
                self.began = now if self.began is None else self.began
                down = now - self.began < self.seconds
                (self.refused if down else self.accepted).append(now)
            if down:
                return OUTAGE
        return await super().handle_RCPT(server, session, envelope, address, options)
