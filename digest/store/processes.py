"""What the operators' views read: processes' heartbeats, and the figures
`/metrics` takes from the database at each scrape (queue depth, rates, ages)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.orm import Session

from digest.models import (
    Delivery,
    DeliveryCount,
    DeliveryStatus,
    Edition,
    EditionStatus,
    Heartbeat,
)


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


_OPEN = (DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED, DeliveryStatus.SENDING)


def queue_depth(session: Session, now: datetime) -> dict[str, int]:
    """Deliveries of editions being sent: due now (or claimed), deferred (a retry
    to come), waiting (queued for a later wave), by that name. From the counts the
    database keeps and the index of the rows held for a later hour: a scrape read
    the whole queue's rows, a million at the start of a large send (issue 31)."""
    sending = select(Edition.id).where(Edition.status == EditionStatus.SENDING)
    c = DeliveryCount
    rows = session.execute(
        select(c.status, func.sum(c.n))
        .where(c.edition_id.in_(sending), c.status.in_([s.value for s in _OPEN]))
        .group_by(c.status)
    )
    counts = {str(status): int(n or 0) for status, n in rows}
    waiting = session.scalar(
        select(func.count()).where(
            Delivery.edition_id.in_(sending),
            Delivery.status == DeliveryStatus.QUEUED,
            Delivery.next_attempt_at > now,
        )
    )
    later = int(waiting or 0)
    return {
        "due": counts.get("queued", 0) - later + counts.get("sending", 0),
        "deferred": counts.get("deferred", 0),
        "waiting": later,
    }


def sent_per_minute(session: Session, now: datetime, since: datetime) -> int:
    """Messages accepted in [since, now): the send rate's numerator. Read through
    the sent rows' index of the editions that can have sent since (being sent,
    cancelled, or finished since), not through every sent row ever kept."""
    recent = select(Edition.id).where(
        or_(
            Edition.status.in_((EditionStatus.SENDING, EditionStatus.CANCELLED)),
            and_(Edition.status == EditionStatus.SENT, Edition.sent_at >= since),
        )
    )
    return int(
        session.scalar(
            select(func.count()).where(
                Delivery.edition_id.in_(recent),
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
