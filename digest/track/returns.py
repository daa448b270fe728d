"""What came back: bounces recorded (a hard one suppresses at once, soft ones
after enough days) and returned mail applied to its delivery and reader."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from digest import store
from digest.db import Session
from digest.errors import Kind
from digest.models import (
    DeliveryStatus,
    EventKind,
    SubscriberStatus,
)
from digest.track.outcomes import Outcome, SoftBouncePolicy


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
