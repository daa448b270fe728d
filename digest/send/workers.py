"""Who is sending: a worker's name, and claims handed back when their worker died."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from digest import store
from digest.db import Factory, transaction
from digest.send.journal import Entry, replay

log = logging.getLogger(__name__)


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


def settle_journals(
    factory: Factory,
    root: Path,
    database: str,
    message_id_of: Callable[[store.Settled], str | None],
) -> int:
    """The messages the relay accepted for processes of this machine that died
    before their outcomes reached the database (issue 18), written as sent: only
    where the line's database, edition, delivery, reader and Message-ID are all this
    database's (issue 32), and never over a final state (a bounce that came since)."""

    def settle(entries: list[Entry]) -> int:
        with transaction(factory) as session:
            found = store.open_deliveries(session, [e.delivery for e in entries])
            wanted = [e for e in entries if _matches(e, found.get(e.delivery), message_id_of)]
            store.record_outcomes(session, [e.row() for e in wanted])
        if mismatched := sum(e.delivery in found for e in entries) - len(wanted):
            log.warning(
                "%d journal lines name deliveries that are not theirs: not applied", mismatched
            )
        return len(wanted)

    host = socket.gethostname()
    # A journal is owned by HOST-PID, a worker is HOST:PID: one liveness rule for both.
    return replay(
        root, database, settle, lambda owner: not _alive_here(":".join(owner.rsplit("-", 1)), host)
    )


def _matches(
    entry: Entry,
    found: store.Settled | None,
    message_id_of: Callable[[store.Settled], str | None],
) -> bool:
    return (
        found is not None
        and found.edition_id == entry.edition
        and found.subscriber_id == entry.subscriber
        and message_id_of(found) == entry.message_id
    )
