"""The sunset rule's questions (issue 28 §5): who has not clicked for months
though mail reached them, who was asked and stayed silent, and since when the
list has told readers' clicks apart at all."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Exists, and_, exists, func, select
from sqlalchemy.orm import Session, aliased

from digest.models import Delivery, DeliveryStatus, Event, EventKind, Subscriber, SubscriberStatus

# What counts as a reader's sign of life: a click on a letter's link, or the
# re-engagement letter's «keep sending».
ALIVE = (EventKind.CLICK, EventKind.KEEP)


def first_reader_click(session: Session) -> datetime | None:
    """The oldest click known by its reader: individual click tracking has been on
    since then (before it, nobody's silence means anything)."""
    return session.scalar(
        select(func.min(Event.at)).where(
            Event.kind == EventKind.CLICK, Event.subscriber_id.is_not(None)
        )
    )


def _event_since(kinds: tuple[EventKind, ...], since: datetime) -> Exists:
    return exists().where(
        Event.subscriber_id == Subscriber.id, Event.kind.in_(kinds), Event.at >= since
    )


def unengaged(session: Session, cutoff: datetime, after_id: int, limit: int) -> list[Subscriber]:
    """Active readers who joined before ``cutoff``, were sent mail since, and neither
    clicked nor were asked since: the ones to ask, in id order from ``after_id``."""
    joined = func.coalesce(Subscriber.confirmed_at, Subscriber.created_at)
    mailed = exists().where(
        Delivery.subscriber_id == Subscriber.id,
        Delivery.status == DeliveryStatus.SENT,
        Delivery.sent_at >= cutoff,
    )
    query = (
        select(Subscriber)
        .where(
            Subscriber.status == SubscriberStatus.ACTIVE,
            Subscriber.id > after_id,
            joined < cutoff,
            mailed,
            ~_event_since((*ALIVE, EventKind.REENGAGE), cutoff),
        )
        .order_by(Subscriber.id)
        .limit(limit)
    )
    return list(session.scalars(query))


def silent_since_asked(
    session: Session, cutoff: datetime, asked_before: datetime, after_id: int, limit: int
) -> list[Subscriber]:
    """Active readers asked (since ``cutoff``, before ``asked_before``) who have shown
    no sign of life since the asking."""
    asked = aliased(Event)
    later = aliased(Event)
    silent = exists().where(
        asked.subscriber_id == Subscriber.id,
        asked.kind == EventKind.REENGAGE,
        asked.at >= cutoff,
        asked.at < asked_before,
        ~exists().where(
            and_(
                later.subscriber_id == asked.subscriber_id,
                later.kind.in_(ALIVE),
                later.at > asked.at,
            )
        ),
    )
    query = (
        select(Subscriber)
        .where(Subscriber.status == SubscriberStatus.ACTIVE, Subscriber.id > after_id, silent)
        .order_by(Subscriber.id)
        .limit(limit)
    )
    return list(session.scalars(query))
