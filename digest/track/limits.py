"""The limits a send shares with every other sender, read and written in the
database (``store.limits``): grants from the global rate's bucket, and the
domains' pauses. Synchronous: a send's database thread calls it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from digest import store
from digest.db import Factory, transaction

GLOBAL = "global"  # the bucket of DIGEST_SMTP_RATE
CAP = "cap:"  # and a capped domain's schedule: CAP + domain


class SharedLimits:
    def __init__(self, factory: Factory) -> None:
        self.factory = factory

    def take(
        self, name: str, rate: float, want: int, clock: Callable[[], datetime]
    ) -> tuple[int, float]:
        """Up to ``want`` tokens of the bucket ``name`` at ``rate`` per second; the
        bucket holds a tenth of a second's worth at most, so what a fleet sends in
        any window stays within a few tokens of rate × window. The time is read
        inside the transaction, once the bucket is ours."""
        burst = max(1.0, rate / 10)
        with transaction(self.factory) as session:
            return store.take_tokens(session, name, rate, burst, want, clock)

    def slots(
        self, name: str, interval: float, count: int, clock: Callable[[], datetime]
    ) -> datetime:
        """``count`` slots of the schedule ``name``: when the first is."""
        with transaction(self.factory) as session:
            return store.reserve_slots(session, name, interval, count, clock)

    def pause(
        self, domain: str, first: float, longest: float, reason: str, now: datetime
    ) -> store.DomainHold:
        """The fleet's pause of ``domain`` (the one in force, or a new one)."""
        with transaction(self.factory) as session:
            return store.pause_domain(session, domain, first, longest, reason, now)

    def take_probe(self, domain: str, now: datetime) -> bool:
        with transaction(self.factory) as session:
            return store.take_probe(session, domain, now)

    def reopen(self, domain: str, now: datetime) -> None:
        with transaction(self.factory) as session:
            store.reopen_domain(session, domain, now)

    def clear(self, domain: str) -> None:
        with transaction(self.factory) as session:
            store.clear_domain(session, domain)

    def pauses(self, now: datetime) -> dict[str, float]:
        """Each held domain and the seconds its pause has to run (≤ 0: its probe
        is due)."""
        with self.factory() as session:
            found = store.domain_pauses(session, now)
        return {domain: (h.until - now).total_seconds() for domain, h in found.items()}
