"""Safe retries for the HTTP API (issue 30): a POST with an ``Idempotency-Key``.

A script that timed out does not know whether its call took effect; it sends the
same call again with the same key. The first call claims the key (one row,
unique on token × key) before it does anything; its answer is kept with it, and
every later call with that key from that token gets that answer, without a second
effect. The same key with another request (method, path or body) is refused, as
is a key whose first call is still running. A first call that failed before it
changed anything frees its key. Keys are kept for ``KEEP``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from digest import store
from digest.db import Factory, transaction
from digest.models import Clock

KEY = re.compile(r"[\x21-\x7e]{1,200}")  # printable ASCII, as the IETF draft's examples
KEEP = timedelta(hours=24)
PRUNE_ONE_IN = 200  # calls: old keys are removed now and then, by whoever comes


@dataclass(frozen=True)
class Earlier:
    """The call that holds the key already."""

    status: int | None  # None: still running
    body: str
    same: bool  # the same request (method, path, body) as this one


def fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(b"\0".join((method.encode(), path.encode(), body))).hexdigest()


class Idempotency:
    def __init__(self, factory: Factory, clock: Clock) -> None:
        self.factory, self.clock = factory, clock

    def begin(self, token_id: int, key: str, print_: str) -> Earlier | None:
        """Claim ``key`` (None: run the call, then ``finish`` or ``abandon``), or the
        earlier call that holds it."""
        now = self.clock()
        with transaction(self.factory) as session:
            if secrets.randbelow(PRUNE_ONE_IN) == 0:
                store.prune_calls(session, now - KEEP)
            found = store.reserve_call(session, token_id, key, print_, now)
            if found is not None and found.created_at < now - KEEP:
                store.drop_call(session, token_id, key)  # expired: the key is new again
                found = store.reserve_call(session, token_id, key, print_, now)
            if found is None:
                return None
            return Earlier(found.status, found.body or "", found.fingerprint == print_)

    def finish(self, token_id: int, key: str, status: int, body: str) -> None:
        with transaction(self.factory) as session:
            store.answer_call(session, token_id, key, status, body)

    def abandon(self, token_id: int, key: str) -> None:
        with transaction(self.factory) as session:
            store.drop_call(session, token_id, key)
