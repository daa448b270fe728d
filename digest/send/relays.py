"""Relay failover: the configured relays in order, a failed one rests, the next takes over."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from digest.config import SmtpTarget
from digest.errors import (
    DeliveryError,
    Kind,
    RelayUnavailable,
)
from digest.send.smtp import SmtpConnection, probe

log = logging.getLogger(__name__)


class RelayState:
    """One relay's health: failures in a row, and when it may be tried again."""

    def __init__(self, target: SmtpTarget) -> None:
        self.target = target
        self.weight = target.weight
        self.current = 0  # smooth weighted round robin (nginx's)
        self.failures = 0
        self.outages = 0
        self.down_until = 0.0
        # After a rest a relay is probed (one connection opened and closed) before
        # messages go to it again, so an outage is not paid for in deferred messages.
        self.checked = True
        self.checking = False


class RelayPool:
    """The configured relays, weighted. A relay that fails is taken out for a
    cool-down that doubles with each outage (up to 10 minutes) and its share goes
    to the others; after the cool-down it is tried again."""

    MAX_COOLDOWN = 600.0

    def __init__(
        self,
        targets: Sequence[SmtpTarget],
        *,
        cooldown: float = 30.0,
        failures_to_rest: int = 3,
        outage_limit: float = 900.0,
    ) -> None:
        if not targets:
            raise RelayUnavailable("no relay configured (DIGEST_SMTP_URL)")
        self.relays = [RelayState(t) for t in targets]
        self.cooldown = cooldown
        self.failures_to_rest = failures_to_rest
        self.outage_limit = outage_limit
        self.outage_since: float | None = None

    def usable(self, now: float) -> list[RelayState]:
        return [r for r in self.relays if r.down_until <= now and r.checked]

    def signature(self, now: float) -> tuple[int, ...]:
        """Changes when a relay goes out or comes back: workers then pick again."""
        return tuple(id(r) for r in self.usable(now))

    def to_check(self, now: float) -> RelayState | None:
        """A relay whose rest is over and that nobody is probing yet."""
        for r in self.relays:
            if r.down_until <= now and not r.checked and not r.checking:
                return r
        return None

    def rest(self, relay: RelayState, now: float, why: object) -> None:
        rest = min(self.cooldown * 2**relay.outages, self.MAX_COOLDOWN)
        relay.outages += 1
        relay.failures = 0
        relay.down_until = now + rest
        relay.checked = False
        log.warning("relay %s rests %.1f s: %s", relay.target, rest, why)

    def pick(self, now: float) -> RelayState | None:
        usable = self.usable(now)
        if not usable:
            if self.outage_since is None:
                self.outage_since = now
            return None
        self.outage_since = None
        total = sum(r.weight for r in usable)
        for r in usable:
            r.current += r.weight
        best = max(usable, key=lambda r: r.current)
        best.current -= total
        return best

    def next_back(self) -> float:
        return min(r.down_until for r in self.relays)

    def outage_too_long(self, now: float) -> bool:
        return self.outage_since is not None and now - self.outage_since >= self.outage_limit

    def succeeded(self, relay: RelayState) -> None:
        relay.failures = 0
        relay.outages = 0

    def failed(self, relay: RelayState, error: DeliveryError, now: float) -> None:
        if relay.down_until > now:
            return  # already resting: the other connections' failures are the same outage
        relay.failures += 1
        # Back from a rest, one failure sends it back: it has not proved itself yet.
        threshold = 1 if relay.outages else self.failures_to_rest
        if error.kind is Kind.RELAY or relay.failures >= threshold:
            self.rest(relay, now, error)


async def probe_relays(pool: RelayPool, connect: Callable[[SmtpTarget], SmtpConnection]) -> None:
    """Every relay is tried before anything is claimed. One that is down rests (its
    share goes to the others); when none answers, nothing changes state."""
    problems = []
    now = asyncio.get_running_loop().time()
    for relay in pool.relays:
        try:
            await probe(connect(relay.target))
        except RelayUnavailable as exc:
            problems.append(str(exc))
            pool.rest(relay, now, f"down at start, the others take its share: {exc}")
    if len(problems) == len(pool.relays):
        raise RelayUnavailable("; ".join(problems))
