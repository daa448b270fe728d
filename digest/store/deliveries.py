"""Deliveries as ops move them: what is due, requeue and cancel, a delivery by its
keys; the open ones a journal line names. What a report reads of them (counts,
rates, reasons) is ``store.reading``'s."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import NamedTuple

from sqlalchemy import (
    func,
    select,
    update,
)
from sqlalchemy.orm import Session

from digest.models import (
    Delivery,
    DeliveryStatus,
    Edition,
    Event,
    EventKind,
)
from digest.store.partitions import of_edition
from digest.store.reading import next_retry


class Due(NamedTuple):
    """When an edition next has something to send, and whether that is only the
    lease end of claims another sender holds (it is sending them: nothing to say)."""

    at: datetime
    claimed: bool = False


def next_due(session: Session, edition_id: int, exclude_worker: str | None = None) -> Due | None:
    """When the edition next has something to send: now-ish for queued rows, the
    earliest retry for deferred ones, the earliest lease end for claimed ones;
    None when every delivery is final."""
    queued = session.scalar(
        select(func.min(func.coalesce(Delivery.next_attempt_at, Delivery.updated_at))).where(
            *of_edition(edition_id), Delivery.status == DeliveryStatus.QUEUED
        )
    )
    if queued is not None:
        return Due(queued)
    deferred = next_retry(session, edition_id)
    leased_rows = select(func.min(Delivery.claimed_until)).where(
        *of_edition(edition_id), Delivery.status == DeliveryStatus.SENDING
    )
    if exclude_worker is not None:
        # A sender's own claims are in its hands, not waiting for a lease to end.
        leased_rows = leased_rows.where(Delivery.claimed_by != exclude_worker)
    leased = session.scalar(leased_rows)
    if leased is not None and (deferred is None or leased < deferred):
        return Due(leased, claimed=True)
    return Due(deferred) if deferred is not None else None


def requeue(
    session: Session, edition_id: int, statuses: Sequence[DeliveryStatus], now: datetime
) -> int:
    """``digest retry``: the given states go back to the queue, due now, with a new
    give-up clock. Subscribers no longer active are suppressed at claim time."""
    result = session.execute(
        update(Delivery)
        .where(*of_edition(edition_id), Delivery.status.in_(list(statuses)))
        .values(
            status=DeliveryStatus.QUEUED,
            next_attempt_at=None,
            first_attempt_at=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def cancel_pending(session: Session, edition_id: int, now: datetime) -> int:
    """``digest cancel``: what was not sent is accounted for as suppressed."""
    result = session.execute(
        update(Delivery)
        .where(
            *of_edition(edition_id),
            Delivery.status.in_([DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED]),
        )
        .values(
            status=DeliveryStatus.SUPPRESSED,
            smtp_reply="edition cancelled",
            next_attempt_at=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def delivery_id_for(session: Session, edition_id: int, subscriber_id: int) -> int | None:
    return session.scalar(
        select(Delivery.id).where(*of_edition(edition_id), Delivery.subscriber_id == subscriber_id)
    )


def delivery_by_id(session: Session, delivery_id: int) -> Delivery | None:
    return session.get(Delivery, delivery_id)


def delivery_by_message_id(session: Session, message_id: str) -> Delivery | None:
    """The one delivery that carried ``message_id``; None if none did, or several."""
    found = session.scalars(select(Delivery).where(Delivery.message_id == message_id).limit(2))
    rows = list(found)
    return rows[0] if len(rows) == 1 else None


def unsubscribes_since(session: Session, since: datetime) -> int:
    query = (
        select(func.count())
        .select_from(Event)
        .where(Event.kind == EventKind.UNSUBSCRIBE, Event.at >= since)
    )
    return int(session.scalar(query) or 0)


def sent_by_minute(session: Session, edition_id: int) -> dict[datetime, int]:
    """Messages of the edition accepted in each UTC minute, counted in the database:
    a million sent deliveries come back as a few hundred rows, not a million times
    (the desk's delivery chart read every one into the web process)."""
    postgres = session.get_bind().dialect.name == "postgresql"
    # PostgreSQL: date_trunc on the timestamp itself; formatting each of a million
    # rows' times as text (to_char) took most of the query (about 1 s a million).
    # Every zone's offset is whole minutes, so the session zone's minute is a UTC one.
    minute = (
        func.date_trunc("minute", Delivery.sent_at)
        if postgres
        else func.substr(Delivery.sent_at, 1, 16)  # stored as 'YYYY-MM-DD HH:MM:SS…' UTC
    )
    rows = session.execute(
        select(minute, func.count())
        .where(*of_edition(edition_id), Delivery.sent_at.is_not(None))
        .group_by(minute)
    ).all()
    if postgres:
        return {m.astimezone(UTC): int(n) for m, n in rows if m is not None}
    return {
        datetime.strptime(m, "%Y-%m-%d %H:%M").replace(tzinfo=UTC): int(n) for m, n in rows if m
    }


@dataclass(frozen=True)
class Settled:
    """What the database holds of a delivery a journal line names (issue 32): the
    line is applied only where all of it matches."""

    edition_id: int
    subscriber_id: int
    schedule: str
    edition_date: date


def open_deliveries(session: Session, ids: Sequence[int]) -> dict[int, Settled]:
    """The deliveries among ``ids`` that are still open (queued, sending or
    deferred: a bounce that came since stays), with what a journal line must match."""
    open_ = (DeliveryStatus.QUEUED, DeliveryStatus.SENDING, DeliveryStatus.DEFERRED)
    found: dict[int, Settled] = {}
    for at in range(0, len(ids), 500):  # a bounded IN list on either database
        query = (
            select(
                Delivery.id,
                Delivery.edition_id,
                Delivery.subscriber_id,
                Edition.schedule,
                Edition.edition_date,
            )
            .join(Edition, Edition.id == Delivery.edition_id)
            .where(Delivery.id.in_(ids[at : at + 500]), Delivery.status.in_(open_))
        )
        for id_, edition_id, subscriber_id, schedule, day in session.execute(query):
            found[id_] = Settled(edition_id, subscriber_id, schedule, day)
    return found
