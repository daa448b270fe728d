"""The ledger of one send: claims taken and handed back, outcomes written (with
soft-bounce suppression), pause and cancel read back; and returned mail applied.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from digest import store
from digest.db import Factory, Session, transaction
from digest.errors import Kind
from digest.models import (
    DeliveryStatus,
    Edition,
    EditionStatus,
    EventKind,
    SubscriberStatus,
)
from digest.track.outcomes import Outcome, SoftBouncePolicy


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


def record_bounces(
    session: Session,
    outcomes: Sequence[Outcome],
    policy: SoftBouncePolicy,
    *,
    source: str,
    evidence: dict[str, str] | None = None,
) -> None:
    """A hard bounce suppresses the address at once; soft ones are counted and
    suppress after ``policy.limit`` distinct days within ``policy.days``. The
    ``evidence`` (which report, what matched) is kept with each event."""
    store.add_events(
        session,
        [
            {
                "delivery_id": o.delivery_id or None,
                "subscriber_id": o.subscriber_id,
                "kind": EventKind.BOUNCE,
                "at": o.at,
                "detail": {
                    "soft": o.kind is Kind.SOFT_BOUNCE,
                    "code": o.code,
                    "reply": o.reply[:500],
                    "source": source,
                    **(evidence or {}),
                },
            }
            for o in outcomes
        ],
    )
    hard = {o.subscriber_id for o in outcomes if o.kind is Kind.HARD_BOUNCE and o.subscriber_id}
    store.set_subscriber_status(session, hard, SubscriberStatus.BOUNCED, outcomes[0].at)
    for o in outcomes:
        if o.kind is Kind.SOFT_BOUNCE and o.subscriber_id and o.subscriber_id not in hard:
            days = store.soft_bounce_days(
                session, o.subscriber_id, o.at - timedelta(days=policy.days)
            )
            if len(days) >= policy.limit:
                store.set_subscriber_status(
                    session, [o.subscriber_id], SubscriberStatus.BOUNCED, o.at
                )


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

    def claim(
        self, limit: int, now: datetime, skip_domains: Sequence[str] = ()
    ) -> tuple[list[store.Claim], int]:
        with transaction(self.factory) as session:
            if self.between_batches is not None and self.between_batches(session, self.edition_id):
                self.held = True
                return [], 0
            return store.claim_deliveries(
                session, self.edition_id, self.worker, now, now + self.lease, limit, skip_domains
            )

    def record(self, outcomes: Sequence[Outcome]) -> None:
        with transaction(self.factory) as session:
            store.record_outcomes(session, [o.row() for o in outcomes])
            bounces = [o for o in outcomes if o.kind in (Kind.HARD_BOUNCE, Kind.SOFT_BOUNCE)]
            if bounces:
                record_bounces(session, bounces, self.soft_bounces, source="smtp")

    def release(self, now: datetime) -> int:
        with transaction(self.factory) as session:
            released = store.release_claims(session, self.edition_id, self.worker, now)
            edition = session.get(Edition, self.edition_id)
            if edition is not None and edition.status is EditionStatus.CANCELLED:
                store.cancel_pending(session, self.edition_id, now)
            return released

    def heartbeat(self, now: datetime) -> Control:
        """Keep this worker's claims alive; read pause, cancel and unsubscribes."""
        with transaction(self.factory) as session:
            store.extend_claims(session, self.edition_id, self.worker, now, now + self.lease)
            edition = session.get(Edition, self.edition_id)
            if edition is None:
                return Control(cancelled=True)
            return Control(
                paused=edition.paused_at is not None or self.held,
                cancelled=edition.status is EditionStatus.CANCELLED,
                gone=frozenset(store.claims_gone(session, self.edition_id, self.worker)),
                senders=len(set(store.claimers(session, self.edition_id)) | {self.worker}),
            )

    def next_due(self) -> datetime | None:
        with self.factory() as session:
            return store.next_due(session, self.edition_id, exclude_worker=self.worker)


def apply_return(
    session: Session,
    finding: Any,
    now: datetime,
    soft_bounces: SoftBouncePolicy,
) -> str:
    """Apply one finding of returned mail (``bounces.Finding``); say what it did:
    bounced, soft, failed, complained, feedback, delayed, ignored or unattributed.

    MAIL-RULES 26: only a VERP token that verified (``finding.delivery_id``) or a
    Message-ID of ours that names exactly one delivery reaches a subscriber. The
    recipient a report names is never enough: anyone can write a DSN."""
    delivery = store.delivery_by_id(session, finding.delivery_id) if finding.delivery_id else None
    if delivery is None and finding.message_id:
        delivery = store.delivery_by_message_id(session, finding.message_id)
    if delivery is None or delivery.subscriber_id is None:
        return "unattributed"
    if finding.kind in ("delayed", "ignored"):
        return str(finding.kind)
    if finding.kind == "complaint":
        return _complaint(session, delivery.id, delivery.subscriber_id, finding, now)
    subscriber_id, delivery_id = delivery.subscriber_id, delivery.id
    kind = finding.bounce_kind or Kind.HARD_BOUNCE
    delivery.status = DeliveryStatus.BOUNCED if kind is Kind.HARD_BOUNCE else DeliveryStatus.FAILED
    delivery.smtp_code = finding.code
    delivery.smtp_reply = (finding.diagnostic or finding.status or "")[:2000]
    delivery.next_attempt_at = None
    delivery.updated_at = now
    outcome = Outcome(
        delivery_id,
        DeliveryStatus.BOUNCED,
        0,
        now,
        finding.code,
        finding.diagnostic or "",
        subscriber_id=subscriber_id,
        kind=kind,
    )
    if kind in (Kind.HARD_BOUNCE, Kind.SOFT_BOUNCE):
        record_bounces(session, [outcome], soft_bounces, source="dsn", evidence=_evidence(finding))
        return "bounced" if kind is Kind.HARD_BOUNCE else "soft"
    return "failed"


def _complaint(
    session: Session, delivery_id: int, subscriber_id: int, finding: Any, now: datetime
) -> str:
    """A feedback report: recorded; an abuse complaint also ends the subscription."""
    event = {
        "delivery_id": delivery_id,
        "subscriber_id": subscriber_id,
        "kind": EventKind.COMPLAINT,
        "at": now,
        "detail": {"feedback_type": finding.feedback_type, **_evidence(finding)},
    }
    store.add_events(session, [event])
    if finding.feedback_type != "abuse":
        return "feedback"
    # MAIL-RULES 26: at once and for good, even over an unsubscribe.
    store.set_subscriber_status(
        session, [subscriber_id], SubscriberStatus.COMPLAINED, now, also_unsubscribed=True
    )
    return "complained"


def _evidence(finding: Any) -> dict[str, str]:
    """Why a report reached this reader (issue 24): shown on the desk's reader page."""
    return {"report": finding.report, "matched": finding.matched}
