"""Deliveries as ops see them: what is due, counts, rates, reasons, requeue and cancel;
the open ones a journal line names."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    and_,
    func,
    or_,
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
    Subscriber,
)
from digest.store.partitions import of_edition


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


def next_retry(
    session: Session, edition_id: int, held: Mapping[str, datetime] | None = None
) -> datetime | None:
    """When the edition's next deferred delivery is tried: a reader at a domain
    ``held`` (domain → when its hold ends) waits for the end of the hold."""
    held = held or {}

    def first(*where: Any) -> datetime | None:
        return session.scalar(
            select(func.min(Delivery.next_attempt_at))
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(
                *of_edition(edition_id),
                Delivery.status == DeliveryStatus.DEFERRED,
                *where,
            )
        )

    at_domain = {d: _at_domain(d) for d in held}
    found = [first(*(~c for c in at_domain.values()))]
    found += [max(at, held[d]) if (at := first(c)) else None for d, c in at_domain.items()]
    return min((at for at in found if at is not None), default=None)


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


def delivery_counts(session: Session, edition_id: int) -> dict[DeliveryStatus, int]:
    return delivery_tally(session, edition_id)[0]  # the same reading; its max() rides along


def delivery_tally(
    session: Session, edition_id: int
) -> tuple[dict[DeliveryStatus, int], datetime | None]:
    """The counts by status and when the last message went, in one reading of the
    edition's rows (a million-row edition is a scan per question)."""
    rows = session.execute(
        select(Delivery.status, func.count(), func.max(Delivery.sent_at))
        .where(*of_edition(edition_id))
        .group_by(Delivery.status)
    ).all()
    counts = {DeliveryStatus(status): n for status, n, _ in rows}
    last = next((at for status, _, at in rows if status == DeliveryStatus.SENT), None)
    return counts, last


class Tally(NamedTuple):
    """An edition's rows as `digest status` and the desk show them, in one reading."""

    counts: dict[DeliveryStatus, int]
    last_sent: datetime | None
    due: int  # queued and due, or claimed
    next_wave: datetime | None  # the earliest of the readers queued for a later hour
    rate: float | None  # messages/s, as recent_rate reads it


def edition_tally(
    session: Session, edition_id: int, now: datetime, window: timedelta = timedelta(seconds=60)
) -> Tally:
    """The counts, what is due now, the next wave and the recent rate in one scan of
    the edition's rows, where each was a scan of its own (issue 31: four readings of
    a million rows for one `digest status`). The rate is read over the part of the
    last minute of sending that falls in the clock's last minute; a send that is not
    sending now (its last message older than that) reads its own last minute."""
    since = now - window
    # Each condition the plainest the rows allow, as it is tested on each of them
    # (a million): grouped by status, which status each answer belongs to is
    # picked below.
    due = or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now)
    rows = session.execute(
        select(
            Delivery.status,
            func.count(),
            func.max(Delivery.sent_at),
            func.count().filter(due),
            func.min(Delivery.next_attempt_at).filter(Delivery.next_attempt_at > now),
            func.count().filter(Delivery.sent_at >= since),
            func.min(Delivery.sent_at).filter(Delivery.sent_at >= since),
        )
        .where(*of_edition(edition_id))
        .group_by(Delivery.status)
    ).all()
    by = {DeliveryStatus(row[0]): row for row in rows}
    counts = {status: int(row[1]) for status, row in by.items()}
    queued, sent = by.get(DeliveryStatus.QUEUED), by.get(DeliveryStatus.SENT)
    last, in_window, first = (sent[2], int(sent[5]), sent[6]) if sent else (None, 0, None)
    rate = None
    if last is not None and since <= last <= now:  # none later than now: last is the latest
        rate = _pace(in_window, first, last)
    elif last is not None:
        rate = recent_rate(session, edition_id, window, last)
    # Due: the queued whose time has come, and every claimed one.
    due_now = (int(queued[3]) if queued else 0) + counts.get(DeliveryStatus.SENDING, 0)
    return Tally(counts, last, due_now, queued[4] if queued else None, rate)


def recent_rate(
    session: Session,
    edition_id: int,
    window: timedelta = timedelta(seconds=60),
    last: datetime | None = None,
) -> float | None:
    """Messages per second over the last ``window`` of sending (not since the first
    message: a send resumed hours later must not read as a slow one). ``last``: the
    last sent message's time, when the caller has read it already."""
    sent = and_(*of_edition(edition_id), Delivery.status == DeliveryStatus.SENT)
    if last is None:
        last = session.scalar(select(func.max(Delivery.sent_at)).where(sent))
    if last is None:
        return None
    first, count = session.execute(
        select(func.min(Delivery.sent_at), func.count()).where(
            sent, Delivery.sent_at >= last - window
        )
    ).one()
    return _pace(count, first, last)


def _pace(count: int, first: datetime | None, last: datetime) -> float | None:
    """Messages per second from the first to the last of ``count`` messages."""
    seconds = (last - first).total_seconds() if first is not None else 0.0
    return (count - 1) / seconds if count > 1 and seconds > 0 else None


def failure_reasons(
    session: Session, edition_id: int, limit: int = 10_000
) -> list[tuple[str, int | None, str, int]]:
    """Failure replies by their exact text, commonest first: (status, code, reply, count)."""
    rows = session.execute(
        select(Delivery.status, Delivery.smtp_code, Delivery.smtp_reply, func.count())
        .where(
            *of_edition(edition_id),
            Delivery.status.in_(
                [DeliveryStatus.FAILED, DeliveryStatus.DEFERRED, DeliveryStatus.BOUNCED]
            ),
        )
        .group_by(Delivery.status, Delivery.smtp_code, Delivery.smtp_reply)
        .order_by(func.count().desc())
        .limit(limit)
    ).all()
    return [(str(s), code, reply or "", n) for s, code, reply, n in rows]


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


def waiting_in(session: Session, edition_id: int, domains: list[str]) -> dict[str, int]:
    """The edition's deliveries not yet final whose reader is at each domain."""
    found = {}
    for domain in domains:
        query = (
            select(func.count())
            .select_from(Delivery)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(
                *of_edition(edition_id),
                Delivery.status.in_(
                    (DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED, DeliveryStatus.SENDING)
                ),
                _at_domain(domain),
            )
        )
        found[domain] = int(session.scalar(query) or 0)
    return found


def _at_domain(domain: str) -> Any:
    """The reader's address is at ``domain`` (join ``Subscriber``)."""
    return func.lower(Subscriber.email).like(f"%@{domain.lower()}")


def ambiguous_count(session: Session, edition_id: int) -> int:
    """Deliveries whose line dropped at least once after the end of data."""
    query = (
        select(func.count())
        .select_from(Delivery)
        .where(*of_edition(edition_id), Delivery.ambiguous > 0)
    )
    return int(session.scalar(query) or 0)


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
