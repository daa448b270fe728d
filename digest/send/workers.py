"""Who is sending: a worker's name, and claims handed back when their worker died."""

from __future__ import annotations

import os
import socket
from datetime import datetime
from pathlib import Path

from digest import store
from digest.db import Factory, transaction
from digest.send.journal import replay


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def reclaim_dead(factory: Factory, now: datetime) -> int:
    """Hand back at once the claims of processes of this machine that no longer
    exist (a ``kill -9``); other machines' claims wait for their lease."""
    host = socket.gethostname()
    with transaction(factory) as session:
        dead = [w for w in store.claimers(session) if not _alive_here(w, host)]
        return store.release_claims_of(session, dead, now)


def _alive_here(worker: str, host: str) -> bool:
    name, _, pid = worker.rpartition(":")
    if name != host or not pid.isdigit():
        return True  # another machine's: its lease decides
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def settle_journals(factory: Factory, folder: Path) -> int:
    """The messages the relay accepted for processes of this machine that died
    before their outcomes reached the database (issue 18), written as sent."""

    def settle(rows: list[tuple[object, ...]]) -> int:
        with transaction(factory) as session:
            return store.settle_sent(session, rows)

    host = socket.gethostname()
    # A journal is named HOST-PID, a worker HOST:PID: one liveness rule for both.
    return replay(folder, settle, lambda stem: not _alive_here(":".join(stem.rsplit("-", 1)), host))
