"""The ledger of one send: claims taken and handed back, outcomes written (bounces
recorded by ``track.returns``), pause, cancel and the other senders read back.
Synchronous: the send runs it on its database thread (``send.writer``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from digest import store
from digest.db import Factory, Session, transaction
from digest.errors import Kind
from digest.models import EditionStatus
from digest.track.outcomes import Outcome, SoftBouncePolicy
from digest.track.returns import record_bounces

# A claim's age when the heartbeat renews it (half the lease where that is shorter):
# a claim is sent within seconds, and renewing each one at every heartbeat (each
# second) made a send write 2.40 row versions a delivery on PostgreSQL where claim
# and outcome are 2.00 (`bench/million.py`). A live sender's claims keep all but
# those seconds of their lease.
RENEW_AFTER = timedelta(seconds=10)


@dataclass(frozen=True)
class Control:
    """What ops have said about the edition since the send started."""

    paused: bool = False
    cancelled: bool = False
    # Claimed deliveries whose subscriber has since unsubscribed, bounced or complained.
    gone: frozenset[int] = frozenset()
    # Processes holding claims of the edition now, this one included: each keeps
    # 1/senders of every domain's window.
    senders: int = 1

    @property
    def stop(self) -> str | None:
        return "cancelled" if self.cancelled else "paused" if self.paused else None


class DeliveryStore:
    """The send loop's view of the database: claim, record, release, heartbeat.
    Synchronous; the sender runs it on one worker thread so the event loop keeps sending."""

    def __init__(
        self,
        factory: Factory,
        edition_id: int,
        worker: str,
        lease: timedelta = timedelta(minutes=2),
        soft_bounces: SoftBouncePolicy | None = None,
        between_batches: Callable[[Session, int], bool] | None = None,
    ) -> None:
        """``between_batches(session, edition_id)``: asked before each claim; True
        stops claiming (``edition.corrections``: an article changed, it paused)."""
        self.between_batches = between_batches
        # The check between batches paused the edition for this run: the run stops
        # for that pause even if a rebuild lifts it before the run's last heartbeat
        # (the run ended its claiming; `digest send` then starts the next one).
        self.held = False
        self.factory = factory
        self.edition_id = edition_id
        self.worker = worker
        self.lease = lease
        self.soft_bounces = soft_bounces or SoftBouncePolicy()
        self.day: date | None = None  # the edition's date: its rows' partition

    def claim(
        self, limit: int, now: datetime, skip_domains: Sequence[str] = ()
    ) -> tuple[list[store.Claim], int]:
        with transaction(self.factory) as session:
            if self.between_batches is not None and self.between_batches(session, self.edition_id):
                self.held = True
                return [], 0
            if self.day is None:
                edition = store.edition_by_id(session, self.edition_id)
                self.day = edition.edition_date if edition is not None else None
            return store.claim_deliveries(
                session, self.edition_id, self.worker, now, now + self.lease, limit, skip_domains
            )

    def record(self, outcomes: Sequence[Outcome]) -> None:
        with transaction(self.factory) as session:
            store.record_outcomes(session, [o.row() for o in outcomes], self.day)
            bounces = [o for o in outcomes if o.kind in (Kind.HARD_BOUNCE, Kind.SOFT_BOUNCE)]
            if bounces:
                record_bounces(session, bounces, self.soft_bounces, source="smtp")

    def release(self, now: datetime) -> int:
        with transaction(self.factory) as session:
            released = store.release_claims(session, self.edition_id, self.worker, now)
            edition = store.edition_by_id(session, self.edition_id)
            if edition is not None and edition.status is EditionStatus.CANCELLED:
                store.cancel_pending(session, self.edition_id, now)
            return released

    def heartbeat(self, now: datetime) -> Control:
        """Keep this worker's claims alive; read pause, cancel and unsubscribes."""
        until = now + self.lease
        renew_before = until - min(self.lease / 2, RENEW_AFTER)
        with transaction(self.factory) as session:
            store.extend_claims(session, self.edition_id, self.worker, renew_before, until)
            edition = store.edition_by_id(session, self.edition_id)
            if edition is None:
                return Control(cancelled=True)
            return Control(
                paused=edition.paused_at is not None or self.held,
                cancelled=edition.status is EditionStatus.CANCELLED,
                gone=frozenset(store.claims_gone(session, self.edition_id, self.worker)),
                senders=len(set(store.claimers(session, self.edition_id)) | {self.worker}),
            )

    def next_due(self) -> store.Due | None:
        with self.factory() as session:
            return store.next_due(session, self.edition_id, exclude_worker=self.worker)
