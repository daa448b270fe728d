"""What a send is told (``SendOptions``, from the settings) and what it did
(``RunResult``; a worker's passes over every edition: ``WorkReport``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from digest.models import DeliveryStatus
from digest.send.journal import JournalPlace
from digest.send.pacing import DomainState
from digest.track.outcomes import RetryPolicy


@dataclass
class RunResult:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    bounced: int = 0
    suppressed: int = 0
    claimed: int = 0
    ambiguous: int = 0  # lines that dropped after the end of data: may have arrived twice
    stopped: str | None = None  # paused, cancelled, stopped (a signal)
    aborted: str | None = None  # no relay usable for too long
    domains: dict[str, DomainState] = field(default_factory=dict)

    def then(self, later: RunResult) -> RunResult:
        """This run's counts and a later run's, how the later one ended."""
        for name in ("sent", "deferred", "failed", "bounced", "suppressed", "claimed", "ambiguous"):
            setattr(later, name, getattr(self, name) + getattr(later, name))
        return later

    def add(self, status: DeliveryStatus) -> None:
        if status is DeliveryStatus.SENT:
            self.sent += 1
        elif status is DeliveryStatus.DEFERRED:
            self.deferred += 1
        elif status is DeliveryStatus.BOUNCED:
            self.bounced += 1
        elif status is DeliveryStatus.SUPPRESSED:
            self.suppressed += 1
        else:
            self.failed += 1


@dataclass
class SendOptions:
    """How one send behaves (from the settings)."""

    connections: int = 8
    batch_size: int = 500
    limit: int | None = None
    wait: bool = False  # keep going until every delivery is final, retrying on schedule
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    edition_deadline: datetime | None = None
    rate: float | None = None
    heartbeat: float = 1.0
    max_idle_sleep: float = 30.0
    kind: str = ""  # the edition's schedule, as metrics label it; "": not counted (dry run)
    # Issue 18: how long the database may be away before the send gives up (None:
    # at once, as a dry run), and where accepted messages are journaled meanwhile.
    outage_limit: float | None = None
    journal: JournalPlace | None = None


@dataclass
class WorkReport:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    bounced: int = 0
    ambiguous: int = 0
    editions: set[str] = field(default_factory=set)
    aborted: str | None = None

    def add(self, label: str, result: RunResult) -> None:
        if result.claimed:
            self.editions.add(label)
        self.sent += result.sent
        self.deferred += result.deferred
        self.failed += result.failed
        self.bounced += result.bounced
        self.ambiguous += result.ambiguous

    def summary(self) -> str:
        return (
            f"sent {self.sent}, deferred {self.deferred}, failed {self.failed}, "
            f"bounced {self.bounced} in {len(self.editions)} edition(s)"
            + (f"; {self.ambiguous} ambiguous (may arrive twice)" if self.ambiguous else "")
        )
