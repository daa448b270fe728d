"""Issue 32: the outcomes journal belongs to the database it was written for.

A send against database A is killed with SIGKILL mid-way, leaving its journal in
the folder's var/; then, from the same folder, an edition of database B is sent.
Every reader of B must get B's edition: nobody in B is marked sent by A's
journal. A's journal is kept for A, and A's own resume still finds it."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from digest.capture import CaptureServer
from tests.support.cli import (
    CONNECTIONS,
    digest,
    env_for,
    message_ids,
    setup_demo,
    start,
    status,
    wait_until,
)
from tests.support.faults import FaultHandler

# Enough that the kill lands mid-send with a journal left and B's deliveries' ids
# cover every id in A's journal; no more (each message costs the suite CPU).
READERS_A = 500
READERS_B = 400
KILL_AT = 200


def killed_mid_send(workdir: Path, url: str) -> tuple[str, FaultHandler]:
    """Database A's send, killed with SIGKILL once KILL_AT messages arrived."""
    label = setup_demo(workdir, READERS_A, DIGEST_DATABASE_URL=url)
    handler = FaultHandler(delay=0.002)
    with CaptureServer(handler) as server:
        proc = start(workdir, env_for(workdir, server, DIGEST_DATABASE_URL=url), "send")
        wait_until(lambda: len(handler.messages) >= KILL_AT or proc.poll() is not None, timeout=120)
        assert proc.poll() is None, "the send ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    assert KILL_AT <= len(handler.messages) < READERS_A
    return label, handler


def each_once(handler: FaultHandler, readers: int) -> None:
    received = Counter(m.rcpt_to[0] for m in handler.messages)
    assert len(received) == readers, f"{readers - len(received)} of {readers} got nothing"
    assert max(received.values()) == 1, "someone got the edition twice"
    assert all(len(ids) == 1 for ids in message_ids(handler).values())


def journals(workdir: Path) -> list[Path]:
    return sorted((workdir / "var" / "outcomes.journal").rglob("*.jsonl"))


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_a_journal_of_database_a_marks_nobody_of_database_b_as_sent(
    workdir: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    if backend == "postgres":
        make: Callable[[], str] = request.getfixturevalue("postgres_databases")
        url_a, url_b = make(), make()
    else:
        url_a, url_b = f"sqlite:///{workdir / 'a.db'}", f"sqlite:///{workdir / 'b.db'}"
    label_a, handler_a = killed_mid_send(workdir, url_a)
    assert journals(workdir), "the killed send left no journal"

    label_b = setup_demo(workdir, READERS_B, DIGEST_DATABASE_URL=url_b)
    handler_b = FaultHandler()
    with CaptureServer(handler_b) as server:
        env_b = env_for(workdir, server, DIGEST_DATABASE_URL=url_b)
        # Enqueued first, so B's deliveries exist when the next run looks at journals.
        assert digest(workdir, "send", "--enqueue-only", env=env_b).returncode == 0
        # Two workers share B's edition on PostgreSQL; one on SQLite.
        workers = [
            start(workdir, env_b, "worker", "--once")
            for _ in range(2 if backend == "postgres" else 1)
        ]
        for proc in workers:
            _out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-3000:]
    each_once(handler_b, READERS_B)
    report = status(workdir, label_b, env_b)
    assert report["counts"]["sent"] == READERS_B  # type: ignore[index]
    assert journals(workdir), "A's journal is kept for A"

    # A's own resume still replays it: everyone of A once, at most one repeat a
    # connection (a message accepted in the instant of the kill), same Message-ID.
    with CaptureServer(handler_a) as server:
        env_a = env_for(workdir, server, DIGEST_DATABASE_URL=url_a)
        resumed = digest(workdir, "resume", label_a, env=env_a, timeout=300)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
    received = Counter(m.rcpt_to[0] for m in handler_a.messages)
    assert len(received) == READERS_A
    assert sum(n - 1 for n in received.values()) <= CONNECTIONS
    assert all(len(ids) == 1 for ids in message_ids(handler_a).values())
    assert status(workdir, label_a, env_a)["counts"]["sent"] == READERS_A  # type: ignore[index]
    assert not journals(workdir), "replayed into A and removed"
