"""What the operators' views read: processes' heartbeats, and the figures
`/metrics` takes from the database at each scrape (queue depth, rates, ages)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.orm import Session

from digest.models import Delivery, DeliveryStatus, Edition, EditionStatus, Heartbeat
from digest.store.reading import delivery_counts, queue_now


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
    to come), waiting (queued for a later wave), by that name. Each edition's from
    the counts the database keeps (``reading.queue_now``): a scrape read the whole
    queue's rows, a million at the start of a large send (issue 31)."""
    depth = {"due": 0, "deferred": 0, "waiting": 0}
    sending = select(Edition.id).where(Edition.status == EditionStatus.SENDING)
    for edition_id in session.scalars(sending):
        counts = delivery_counts(session, edition_id)
        queue = queue_now(session, edition_id, counts, now)
        depth["due"] += queue.due
        depth["waiting"] += queue.waiting
        depth["deferred"] += counts.get(DeliveryStatus.DEFERRED, 0)
    return depth


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
