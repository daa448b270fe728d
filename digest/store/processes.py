"""What the operators' views read: processes' heartbeats, and the figures
`/metrics` takes from the database at each scrape (queue depth, rates, ages)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import case, delete, func, or_, select
from sqlalchemy.orm import Session

from digest.models import Delivery, DeliveryStatus, Edition, EditionStatus, Heartbeat


def beat(session: Session, name: str, kind: str, now: datetime) -> None:
    found = session.get(Heartbeat, name)
    if found is None:
        session.add(Heartbeat(name=name, kind=kind, at=now))
    else:
        found.at = now


def stop_beating(session: Session, name: str) -> None:
    """A clean stop: the process is gone on purpose, not stale."""
    session.execute(delete(Heartbeat).where(Heartbeat.name == name))


def heartbeats(session: Session, kind: str) -> dict[str, datetime]:
    rows = session.execute(select(Heartbeat.name, Heartbeat.at).where(Heartbeat.kind == kind))
    return {name: at for name, at in rows}


def queue_depth(session: Session, now: datetime) -> dict[str, int]:
    """Deliveries of editions being sent: due now (or claimed), deferred (a retry
    to come), waiting (queued for a later wave), by that name."""
    state = case(
        (Delivery.status == DeliveryStatus.DEFERRED, "deferred"),
        (Delivery.status == DeliveryStatus.SENDING, "due"),
        (
            or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
            "due",
        ),
        else_="waiting",
    )
    rows = session.execute(
        select(state, func.count())
        .join(Edition, Edition.id == Delivery.edition_id)
        .where(
            Edition.status == EditionStatus.SENDING,
            Delivery.status.in_(
                (DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED, DeliveryStatus.SENDING)
            ),
        )
        .group_by(state)
    )
    depth = {"due": 0, "deferred": 0, "waiting": 0}
    depth.update({str(k): int(n) for k, n in rows})
    return depth


def sent_per_minute(session: Session, now: datetime, since: datetime) -> int:
    """Messages accepted in [since, now): the send rate's numerator."""
    return int(
        session.scalar(
            select(func.count()).where(
                Delivery.status == DeliveryStatus.SENT,
                Delivery.sent_at >= since,
                Delivery.sent_at < now,
            )
        )
        or 0
    )


def last_sent(session: Session) -> dict[str, datetime]:
    """The newest sent edition's send time, per schedule."""
    rows = session.execute(
        select(Edition.schedule, func.max(Edition.sent_at))
        .where(Edition.sent_at.is_not(None))
        .group_by(Edition.schedule)
    )
    return {name: at for name, at in rows if at is not None}


def missed_editions(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(Edition.schedule, func.count())
        .where(Edition.status == EditionStatus.MISSED)
        .group_by(Edition.schedule)
    )
    return {name: int(n) for name, n in rows}
