"""A dry run is the real send, captured: the same claim loop, composition, DKIM
and connections, with a ledger that walks the audience without writing and a
connection that keeps the bytes instead of sending them."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from digest import store
from digest.compose import Message
from digest.db import Factory
from digest.models import Audience, DeliveryStatus
from digest.send.ledger import Control
from digest.store import Claim, Due
from digest.track.outcomes import Outcome


@dataclass
class DryLedger:
    """Claims for every active reader of the ``audience`` by id checkpoint; readers
    whose sections leave the edition empty are skipped (as a send suppresses them).
    Nothing is written: outcomes are only counted."""

    factory: Factory
    audience: Audience
    variant_ids: dict[str, int]  # variant key → id, for variants with articles
    problems: list[str] = field(default_factory=list)
    _after: int = 0

    def claim(
        self, limit: int, now: datetime, skip_domains: Sequence[str] = ()
    ) -> tuple[list[Claim], int]:
        with self.factory() as session:
            batch = store.active_subscribers(session, self._after, limit, self.audience)
        claims, skipped = [], 0
        for sid, email, name, token_key, key in batch:
            self._after = sid
            variant = self.variant_ids.get(key)
            if variant is None:
                skipped += 1
                continue
            # No delivery row exists: 0 stands in (its VERP token is made, never sent).
            claims.append(Claim(0, 0, variant, sid, email, name, token_key))
        return claims, skipped

    def record(self, outcomes: Sequence[Outcome]) -> None:
        self.problems.extend(o.reply for o in outcomes if o.status is not DeliveryStatus.SENT)

    def release(self, now: datetime) -> int:
        return 0

    def heartbeat(self, now: datetime) -> Control:
        return Control()

    def next_due(self) -> Due | None:
        return None


@dataclass
class CapturingConnection:
    """Takes every message as a relay would (250) and keeps only its size."""

    messages: int = 0
    bytes: int = 0

    async def open(self) -> None:
        return None

    async def send(
        self, message: Message, before_data: Awaitable[None] | None = None
    ) -> tuple[int, str]:
        if before_data is not None:
            await before_data  # the same durability rule as a send
        self.messages += 1
        self.bytes += len(message.data)
        return 250, "2.0.0 captured (dry run)"

    async def close(self) -> None:
        return None
