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
    probing: bool = False  # the pause is over: one probe delivery decides
    probe_out: bool = False  # this sender's probe is in flight
    probes: int = 0  # probes sent
    asking: bool = False  # asking the fleet for the probe
    granted: bool = False  # the fleet gave this sender the probe
    ask_after: float = 0.0  # another sender's probe is out: ask again then

    @property
    def limit(self) -> int:
        return max(1, int(self.concurrency))


class Fleet(Protocol):
    """The other senders of the edition, through the database (``send.limits``)."""

    def pause(self, domain: str, why: str) -> None:
        """Ask for a pause of ``domain``; the fleet's answer (the pause in force, or
        a new one at its back-off) comes back through ``DomainGate.decided``."""

    def take_probe(self, domain: str) -> asyncio.Future[bool]:
        """Whether this sender may send the domain's one probe."""

    def reopened(self, domain: str) -> None:
        """The probe succeeded: open for every sender."""

    def cleared(self, domain: str) -> None:
        """Back to full speed: the next pause starts short again."""


class DomainGate:
    """Per recipient domain, Postfix's concurrency feedback (SCHEDULER_README,
    MAIL-RULES 23): a success adds 1/concurrency, negative feedback (a 421, a line
    lost mid-session, a provider's rate limit, a policy refusal) takes 1/concurrency
    away, never below one. After a failed cohort (``cohort`` × concurrency
    negative replies in a row) the domain is dead for a back-off (``pause``
    seconds, doubled on every repeat up to ``max_pause``); when it ends, **one
    probe** delivery goes: an answer reopens the domain at one connection (then
    the usual ramp), negative feedback holds it again for twice as long. With a
    ``fleet`` the pause and the probe are the fleet's: one sender decides, every
    sender keeps it, one probe goes for all of them.
    A reply about one recipient (greylisting, no such user) changes nothing here.
    Fixed caps in messages per minute apply besides."""

    def __init__(
        self,
        *,
        pause: float = 5.0,
        max_pause: float = 600.0,
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
        self.fleet: Fleet | None = None  # a real send: the pauses and probes are shared
        self._now = 0.0  # the last time admit was asked (for the fleet's answers)

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
        self._now = now
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
            delay = ahead
        if st.probing and not self._may_probe(domain, st, now):
            return Decision.WAIT, 0.0
        if st.cap is not None:
            st.cap.take(now)
        st.in_flight += 1
        if st.probing:
            st.probe_out, st.probes = True, st.probes + 1
            log.info("%s: its back-off is over, one probe delivery goes", domain)
        return Decision.SEND, delay

    def _may_probe(self, domain: str, st: DomainState, now: float) -> bool:
        """This sender's turn to probe: at once alone; with a fleet, when the
        database gives it the probe (asked in the background, WAIT meanwhile)."""
        if self.fleet is None or st.granted:
            st.granted = False
            return True
        if st.asking or now < st.ask_after:
            return False
        st.asking = True
        self.fleet.take_probe(domain).add_done_callback(
            lambda answer: self._answered(domain, answer)
        )
        return False

    def _answered(self, domain: str, answer: asyncio.Future[bool]) -> None:
        st = self.state(domain)
        st.asking = False
        if not answer.cancelled() and answer.exception() is None and answer.result():
            st.granted = st.probing
        else:  # another sender's probe is out (or the database away): ask again soon
            st.ask_after = self._now + 1.0
        self.freed.set()

    def done(self, domain: str, kind: Kind | None, now: float, reply: str = "") -> None:
        """One message to ``domain`` is over: accepted (``kind`` None) or not (the
        server's ``reply`` is what a pause it decides is said with)."""
        st = self.state(domain)
        st.in_flight -= 1
        probe, st.probe_out = st.probe_out, False
        if kind is None or (probe and kind not in NEGATIVE_FEEDBACK):
            self._succeeded(domain, st)  # a probe the domain answered at all reopens it
        elif probe:
            self._dead(domain, st, f"the probe met: {reply or kind.value}", now)
        elif kind in NEGATIVE_FEEDBACK and st.paused_until <= now and not st.probing:
            self._slow(domain, st, reply or kind.value, now)
        self.freed.set()

    def release(self, domain: str) -> None:
        """A slot admitted but no message sent (the reader left; the letter did
        not compose): no feedback either way."""
        st = self.state(domain)
        st.in_flight -= 1
        st.probe_out = False
        self.freed.set()

    def _succeeded(self, domain: str, st: DomainState) -> None:
        st.failed_cohorts = 0.0
        if st.probing:
            st.probing = False
            log.info("%s answered the probe: open again at one connection", domain)
            if self.fleet is not None:
                self.fleet.reopened(domain)
            return
        if st.concurrency < self.connections:
            st.concurrency = min(self.connections, st.concurrency + 1 / st.concurrency)
            if st.concurrency >= self.connections and st.pauses:
                st.pauses = 0  # back to full speed: the next pause starts short again
                log.info("%s is back to full speed", domain)
                if self.fleet is not None:
                    self.fleet.cleared(domain)

    def _slow(self, domain: str, st: DomainState, reply: str, now: float) -> None:
        st.slowed += 1
        st.failed_cohorts += 1 / st.concurrency
        st.concurrency = max(1.0, st.concurrency - 1 / st.concurrency)
        if st.failed_cohorts >= self.cohort:
            self._dead(domain, st, f"a failed cohort, the last: {reply}", now)

    def _dead(self, domain: str, st: DomainState, why: str, now: float) -> None:
        """Hold the domain for its back-off, then one probe (Postfix's dead site)."""
        pause = min(self.pause * 2**st.pauses, self.max_pause)
        st.pauses += 1
        st.paused_until = now + pause
        st.concurrency, st.failed_cohorts = 1.0, 0.0
        st.probing, st.granted = True, False
        if self.fleet is not None:
            self.fleet.pause(domain, why)  # its answer is the pause
        else:
            _say_held(domain, why, pause)

    def decided(self, domain: str, left: float, why: str, now: float) -> None:
        """The fleet's answer to this sender's pause: the pause every sender keeps."""
        st = self.state(domain)
        st.paused_until = now + left
        _say_held(domain, why, left)

    def _hold(self, domain: str, left: float, now: float) -> None:
        """The fleet holds ``domain``: paused ``left`` more seconds, or (``left`` ≤ 0)
        its pause is over and one probe decides."""
        st = self.state(domain)
        if left > 0:
            if abs(st.paused_until - (now + left)) > 0.5:  # not what this sender knows
                if st.paused_until <= now:
                    log.info("%s is held by another sender for %.1f s", domain, left)
                st.paused_until = now + left
                st.concurrency, st.failed_cohorts = 1.0, 0.0
                st.probing, st.granted = True, False
        elif not st.probing:
            st.paused_until = min(st.paused_until, now)
            st.concurrency, st.failed_cohorts, st.probing = 1.0, 0.0, True

    def hold_all(self, held: dict[str, float], now: float) -> None:
        """What the fleet holds (each domain with its seconds left, ≤ 0 when its
        probe is due) is held here; what this sender holds and the fleet no longer
        does is open: another sender's probe succeeded (a pause this sender wrote
        is in the database long before it ends, so a running one is never taken
        for that)."""
        for domain, left in held.items():
            self._hold(domain, left, now)
        for domain, st in self.domains.items():
            if st.probing and domain not in held and st.paused_until <= now and not st.probe_out:
                st.probing = st.granted = False
                log.info("%s is open again (another sender's probe succeeded)", domain)
                self.freed.set()

    def paused(self, now: float) -> tuple[str, ...]:
        """Domains not to claim for now: paused, or probing with the probe out."""
        return tuple(
            sorted(
                d
                for d, st in self.domains.items()
                if st.paused_until > now
                or (st.probing and (st.probe_out or st.asking or now < st.ask_after))
            )
        )

    def resume_at(self, domain: str) -> float:
        return self.state(domain).paused_until


def _say_held(domain: str, why: str, seconds: float) -> None:
    log.warning("%s: %s; held for %.1f s, then one probe delivery", domain, why, seconds)


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
