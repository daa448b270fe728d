"""The delivery queue's hot path: enqueue, claim, record outcomes, release.

Claims are leases: a worker owns a row until it records an outcome, releases it or
its lease runs out (then another worker may take it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    String,
    and_,
    case,
    exists,
    literal,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.orm import Session

from digest.models import (
    Audience,
    Delivery,
    DeliveryStatus,
    Edition,
    EditionStatus,
    EditionVariant,
    Subscriber,
    SubscriberStatus,
)
from digest.store.audience import audience_filter, variant_key_column
from digest.store.bulk import analyse, insert_ignoring
from digest.store.partitions import of_edition

ENQUEUE_BATCH = 50_000  # subscribers an INSERT … SELECT reads: one range of the primary key
ANALYSE_AFTER = 10_000  # rows an enqueue added that the planner is told of at once


def enqueue_deliveries(
    session: Session,
    edition_id: int,
    now: datetime,
    audience: Audience,
    batch: int = ENQUEUE_BATCH,
) -> int:
    """A ``Delivery`` row for every active subscriber of the edition's audience
    (subscribed by its ``joined_by``) who has none for this edition; returns how
    many were added. Subscribers whose section choice leaves the edition empty get
    a ``suppressed`` row: they are accounted for, not mailed.

    One INSERT … SELECT per range of subscriber ids, and the unique (edition,
    subscriber) key skips who already has a row (ON CONFLICT DO NOTHING): no
    statement reads the rows it writes. The anti-join it replaces (WHERE NOT
    EXISTS a delivery) was planned while the edition had none, so right after an
    import each probe scanned what the statement had written so far: quadratic,
    six minutes for a quarter of 200 000 readers (issue 31)."""
    day = session.scalar(select(Edition.edition_date).where(Edition.id == edition_id))
    added, low = 0, 0
    while True:
        high = session.scalar(
            select(Subscriber.id)
            .where(Subscriber.id > low)
            .order_by(Subscriber.id)
            .offset(batch - 1)
            .limit(1)
        )
        ids = Subscriber.id > low if high is None else Subscriber.id.between(low + 1, high)
        added += _enqueue_range(session, (edition_id, day), now, audience, ids)
        if high is None:
            break
        low = high
    if added >= ANALYSE_AFTER:
        analyse(session, Delivery)  # the status counts and claims that follow plan on it
    return added


def _enqueue_range(
    session: Session, edition: tuple[int, date | None], now: datetime, audience: Audience, ids: Any
) -> int:
    edition_id, day = edition
    has_content = EditionVariant.articles > 0
    source = (
        select(
            literal(edition_id),
            literal(day, type_=Delivery.edition_date.type),
            Subscriber.id,
            EditionVariant.id,
            case((has_content, DeliveryStatus.QUEUED.value), else_=DeliveryStatus.SUPPRESSED.value),
            literal(0),
            case((has_content, None), else_="nothing in the chosen sections"),
            literal(now, type_=Delivery.updated_at.type),
        )
        .join(
            EditionVariant,
            and_(
                EditionVariant.edition_id == edition_id,
                EditionVariant.key == variant_key_column(),
                EditionVariant.retired_at.is_(None),
            ),
        )
        .where(ids, audience_filter(audience))
    )
    columns = ["edition_id", "edition_date", "subscriber_id", "variant_id", "status", "attempts"]
    statement = insert_ignoring(session, Delivery).from_select(
        [*columns, "smtp_reply", "updated_at"], source
    )
    # SQLAlchemy keeps an INSERT's row count only when asked.
    result = session.execute(statement, execution_options={"preserve_rowcount": True})
    return int(result.rowcount)  # type: ignore[attr-defined]  # a CursorResult


@dataclass(frozen=True)
class Claim:
    delivery_id: int
    attempts: int
    variant_id: int | None
    subscriber_id: int
    email: str
    name: str | None
    token_key: str
    first_attempt_at: datetime | None = None

    @property
    def domain(self) -> str:
        return self.email.rpartition("@")[2].lower()


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _due(now: datetime) -> Any:
    return or_(
        # A queued row may wait for its wave (the reader's local send time).
        and_(
            Delivery.status == DeliveryStatus.QUEUED,
            or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
        ),
        and_(Delivery.status == DeliveryStatus.DEFERRED, Delivery.next_attempt_at <= now),
        # A claim whose lease ran out belongs to a worker that died: take it back.
        and_(Delivery.status == DeliveryStatus.SENDING, Delivery.claimed_until < now),
    )


def claim_deliveries(
    session: Session,
    edition_id: int,
    worker: str,
    now: datetime,
    lease_until: datetime,
    limit: int,
    skip_domains: Sequence[str] = (),
) -> tuple[list[Claim], int]:
    """Claim up to ``limit`` due deliveries for ``worker`` and return them with
    their subscribers, plus how many were suppressed because the subscriber is
    no longer active (an unsubscribe takes effect mid-send). On PostgreSQL
    ``FOR UPDATE SKIP LOCKED`` lets many workers claim side by side. Mail to
    ``skip_domains`` (paused by the sender) stays in the queue."""
    claimed = list(
        session.scalars(
            update(Delivery)
            .where(
                *of_edition(edition_id),  # one partition's rows locked and written
                Delivery.id.in_(_due_ids(edition_id, now, limit, skip_domains)),
            )
            .values(
                status=DeliveryStatus.SENDING,
                claimed_by=worker,
                claimed_until=lease_until,
                updated_at=now,
            )
            .returning(Delivery.id)
            .execution_options(synchronize_session=False)
        )
    )
    if not claimed:
        return [], 0
    rows = _claimed_rows(session, claimed)
    claims = [
        Claim(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7])
        for r in rows
        if r[8] == SubscriberStatus.ACTIVE
    ]
    gone = [
        {
            "id": r[0],
            "status": DeliveryStatus.SUPPRESSED,
            "smtp_reply": f"subscriber is {r[8]}",
            "claimed_by": None,
            "claimed_until": None,
            "updated_at": now,
        }
        for r in rows
        if r[8] != SubscriberStatus.ACTIVE
    ]
    if gone:
        session.execute(update(Delivery), gone)
    return claims, len(gone)


def _due_ids(edition_id: int, now: datetime, limit: int, skip_domains: Sequence[str]) -> Any:
    """The ids to claim: due, of an edition being sent and not paused, skipping
    locked rows (another worker's) and paused domains."""
    open_edition = exists().where(
        Edition.id == edition_id,
        Edition.status == EditionStatus.SENDING,
        Edition.paused_at.is_(None),
    )
    due_ids = select(Delivery.id).where(*of_edition(edition_id), _due(now), open_edition)
    if skip_domains:
        due_ids = due_ids.join(Subscriber, Subscriber.id == Delivery.subscriber_id).where(
            *(~Subscriber.email.like(f"%@{_like(d)}", escape="\\") for d in skip_domains)
        )
    due_ids = (
        due_ids.order_by(Delivery.id).limit(limit).with_for_update(of=Delivery, skip_locked=True)
    )
    return due_ids.scalar_subquery()


def _claimed_rows(session: Session, claimed: list[int]) -> Sequence[Any]:
    return session.execute(
        select(
            Delivery.id,
            Delivery.attempts,
            Delivery.variant_id,
            Subscriber.id,
            Subscriber.email,
            Subscriber.name,
            Subscriber.token_key,
            Delivery.first_attempt_at,
            # Compared as text: per-row enum conversion is measurable at this volume.
            type_coerce(Subscriber.status, String),
        )
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.id.in_(claimed))
        .order_by(Delivery.id)
    ).all()


def _claimed_by(edition_id: int, worker: str) -> tuple[Any, ...]:
    return (
        *of_edition(edition_id),
        Delivery.claimed_by == worker,
        Delivery.status == DeliveryStatus.SENDING,
    )


def release_claims(session: Session, edition_id: int, worker: str, now: datetime) -> int:
    """Give back what ``worker`` claimed but did not send (a clean stop)."""
    result = session.execute(
        update(Delivery)
        .where(*_claimed_by(edition_id, worker))
        .values(status=DeliveryStatus.QUEUED, claimed_by=None, claimed_until=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def extend_claims(
    session: Session, edition_id: int, worker: str, ending_before: datetime, until: datetime
) -> int:
    """The heartbeat: ``worker``'s claims that end before ``ending_before`` now end at
    ``until``; a dead worker's run out (``send.ledger`` says which are due)."""
    result = session.execute(
        update(Delivery)
        .where(*_claimed_by(edition_id, worker), Delivery.claimed_until < ending_before)
        .values(claimed_until=until)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def claims_gone(session: Session, edition_id: int, worker: str) -> list[int]:
    """This worker's claimed deliveries whose subscriber is no longer active."""
    return list(
        session.scalars(
            select(Delivery.id)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(*_claimed_by(edition_id, worker), Subscriber.status != SubscriberStatus.ACTIVE)
        )
    )


def release_claims_of(session: Session, workers: Iterable[str], now: datetime) -> int:
    """Hand back the claims of workers known to be dead, without waiting for the lease."""
    names = list(workers)
    if not names:
        return 0
    result = session.execute(
        update(Delivery)
        .where(Delivery.claimed_by.in_(names), Delivery.status == DeliveryStatus.SENDING)
        .values(status=DeliveryStatus.QUEUED, claimed_by=None, claimed_until=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def claimers(session: Session, edition_id: int | None = None) -> list[str]:
    """Workers that hold claims right now (of that edition: an indexed read of the
    few rows being sent)."""
    query = select(Delivery.claimed_by).where(
        Delivery.status == DeliveryStatus.SENDING, Delivery.claimed_by.is_not(None)
    )
    if edition_id is not None:
        query = query.where(*of_edition(edition_id))
    return list(session.scalars(query.distinct()))
