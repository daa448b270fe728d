"""Pacing: how fast, and to which domains now (MAIL-RULES 23, 26, 27 and the Postfix model).

``DomainGate`` slows a domain that defers or refuses for policy, like Postfix's
per-destination concurrency; ``Pacer`` keeps the configured global rate.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from digest.errors import (
    Kind,
)
from digest.track.replies import NEGATIVE_FEEDBACK

log = logging.getLogger(__name__)


class Decision(enum.Enum):
    SEND = "send"
    WAIT = "wait"  # the domain is at its connection limit: take another claim
    DEFER = "defer"  # the domain is paused or capped: back to the queue, due later


class Slots(Protocol):
    """A domain's cap: when its next message may start."""

    def ahead(self, now: float) -> float | None:
        """Seconds from ``now`` to the next slot (not taken); None while slots are
        being fetched."""

    def take(self, now: float) -> None:
        """The next slot is used."""


@dataclass
class DomainState:
    concurrency: float  # messages in flight allowed (Postfix's destination window)
    in_flight: int = 0
    failed_cohorts: float = 0.0  # negative feedback since the last success, in cohorts
    paused_until: float = 0.0
    pauses: int = 0
    cap: Slots | None = None  # DIGEST_DOMAIN_CAPS: this domain's own slots
    deferred: int = 0  # messages held back while paused or capped
    slowed: int = 0  # negative feedback received

    @property
    def limit(self) -> int:
        return max(1, int(self.concurrency))


class DomainGate:
    """Per recipient domain, Postfix's concurrency feedback (SCHEDULER_README,
    MAIL-RULES 23): a success adds 1/concurrency, negative feedback (a 421, a line
    lost mid-session, a provider's rate limit, a policy refusal) takes 1/concurrency
    away, never below one. After a failed cohort (``cohort`` × concurrency
    negative replies in a row) the domain pauses: ``pause`` seconds, doubled on
    every repeat up to ``max_pause``, then it starts again at one connection.
    A reply about one recipient (greylisting, no such user) changes nothing here.
    Fixed caps in messages per minute apply besides."""

    def __init__(
        self,
        *,
        pause: float = 600.0,
        max_pause: float = 3600.0,
        cohort: float = 1.0,
        connections: int = 8,
        caps: dict[str, int] | None = None,
        horizon: float = 5.0,
    ) -> None:
        self.pause = pause
        self.max_pause = max_pause
        self.cohort = cohort
        self.connections = connections
        self.caps = caps or {}
        # Senders of the edition now (this one included, from every heartbeat): a
        # domain's window is the fleet's, each keeps 1/senders of it.
        self.senders = 1
        # Where a capped domain's slots come from: its own Pacer, or (a real send)
        # one schedule in the database every sender leases from.
        self.cap_slots: Callable[[str, int], Slots] = lambda _domain, cap: Pacer(cap / 60.0)
        self.horizon = horizon  # a capped message waits this long at most; later ones defer
        self.domains: dict[str, DomainState] = {}
        self.freed = asyncio.Event()
        # Told of each pause this gate decides (domain, seconds, why): a send with a
        # database shares it with every other sender, which ``hold`` it in turn.
        self.on_pause: Callable[[str, float, str], object] | None = None

    def state(self, domain: str) -> DomainState:
        st = self.domains.get(domain)
        if st is None:
            cap = self.caps.get(domain)
            st = self.domains[domain] = DomainState(
                float(self.connections), cap=self.cap_slots(domain, cap) if cap else None
            )
        return st

    def admit(self, domain: str, now: float) -> tuple[Decision, float]:
        """SEND (after the returned delay), WAIT, or DEFER (for the returned seconds)."""
        st = self.state(domain)
        if st.paused_until > now:
            st.deferred += 1
            return Decision.DEFER, st.paused_until - now
        if st.in_flight >= max(1, st.limit // self.senders):
            return Decision.WAIT, 0.0
        delay = 0.0
        if st.cap is not None:
            ahead = st.cap.ahead(now)
            if ahead is None:
                return Decision.WAIT, 0.0  # its slots are on their way
            if ahead > self.horizon:
                st.deferred += 1  # the slot stays for a message that comes back then
                return Decision.DEFER, ahead
            st.cap.take(now)
            delay = ahead
        st.in_flight += 1
        return Decision.SEND, delay

    def done(self, domain: str, kind: Kind | None, now: float) -> None:
        """One message to ``domain`` is over: accepted (``kind`` None) or not."""
        st = self.state(domain)
        st.in_flight -= 1
        if kind is None:
            st.failed_cohorts = 0.0
            if st.concurrency < self.connections:
                st.concurrency = min(self.connections, st.concurrency + 1 / st.concurrency)
                if st.concurrency >= self.connections and st.pauses:
                    st.pauses = 0  # back to full speed: the next pause starts short again
                    log.info("%s is back to full speed", domain)
        elif kind in NEGATIVE_FEEDBACK and st.paused_until <= now:
            self._slow(domain, st, kind, now)
        self.freed.set()

    def _slow(self, domain: str, st: DomainState, kind: Kind, now: float) -> None:
        st.slowed += 1
        st.failed_cohorts += 1 / st.concurrency
        st.concurrency = max(1.0, st.concurrency - 1 / st.concurrency)
        if st.failed_cohorts < self.cohort:
            return
        pause = min(self.pause * 2**st.pauses, self.max_pause)
        st.pauses += 1
        st.paused_until = now + pause
        st.concurrency, st.failed_cohorts = 1.0, 0.0
        if self.on_pause is not None:
            self.on_pause(domain, pause, f"{kind.value} from {domain}")
        log.warning(
            "%s failed a cohort of deliveries (last: %s): pausing it for %.0f s, "
            "then one connection",
            domain,
            kind,
            pause,
        )

    def hold(self, domain: str, seconds: float, now: float) -> None:
        """Another sender paused ``domain``: this one holds it for as long."""
        st = self.state(domain)
        if st.paused_until < now + seconds - 0.5:  # half a second: not our own echo
            st.paused_until = now + seconds
            st.concurrency, st.failed_cohorts = 1.0, 0.0
            log.info("%s is paused by another sender for %.0f s", domain, seconds)

    def paused(self, now: float) -> tuple[str, ...]:
        return tuple(sorted(d for d, st in self.domains.items() if st.paused_until > now))

    def resume_at(self, domain: str) -> float:
        return self.state(domain).paused_until


class Pacer:
    """Message slots exactly 1/rate apart (DIGEST_SMTP_RATE across all connections,
    or one domain's cap), so any 10-second window holds rate × 10 ± 1 messages:
    no bursts to repay."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.next_slot = 0.0

    def ahead(self, now: float) -> float:
        """Seconds from ``now`` to the next slot, not taken."""
        return max(now, self.next_slot) - now if self.interval else 0.0

    def take(self, now: float) -> None:
        if self.interval:
            self.next_slot = max(now, self.next_slot) + self.interval

    def reserve(self, now: float) -> float:
        """Seconds from ``now`` to wait before the next message may start (taken)."""
        delay = self.ahead(now)
        self.take(now)
        return delay
