"""Who an edition goes to: the active subscribers of a frequency, their variants and zones."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    and_,
    case,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from digest.models import (
    Audience,
    Delivery,
    Subscriber,
    SubscriberStatus,
)
from digest.store.partitions import of_edition


def variant_key_column() -> Any:
    """A subscriber's variant in SQL: ``render.variant_key(sections, format)``."""
    return func.coalesce(Subscriber.sections, "") + case(
        (Subscriber.format == "text", "|text"), else_=""
    )


def audience_filter(audience: Audience) -> Any:
    """Active subscribers, and of them those who chose the audience's frequency, who
    read its section (or every section), and were subscribed by its ``joined_by``."""
    active = Subscriber.status == SubscriberStatus.ACTIVE
    if audience.frequency is not None:
        active = and_(active, Subscriber.frequency == audience.frequency)
    if audience.section is not None:
        chosen = func.coalesce(Subscriber.sections, "")
        # Sections are stored sorted and comma-joined; none chosen means every one.
        reads = ("," + chosen + ",").contains(f",{audience.section},", autoescape=True)
        active = and_(active, or_(chosen == "", reads))
    if audience.joined_by is not None:
        since = func.coalesce(Subscriber.confirmed_at, Subscriber.created_at)
        active = and_(active, since <= audience.joined_by)
    return active


def active_variant_keys(session: Session, audience: Audience) -> list[str]:
    """Distinct (sections, format) choices of the audience: one variant each."""
    rows = session.scalars(select(variant_key_column()).where(audience_filter(audience)).distinct())
    return sorted(rows)


def audience_zones(session: Session, audience: Audience, default_zone: str) -> list[str]:
    """The time zones of a schedule's readers (theirs, or the schedule's when unset)."""
    zone = func.coalesce(Subscriber.timezone, default_zone)
    return sorted(session.scalars(select(zone).where(audience_filter(audience)).distinct()))


def unqueued_active_subscribers(session: Session, edition_id: int, audience: Audience) -> int:
    """Active subscribers without a delivery for the edition (a variant was missing)."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(Subscriber)
            .where(
                audience_filter(audience),
                ~exists().where(*of_edition(edition_id), Delivery.subscriber_id == Subscriber.id),
            )
        )
        or 0
    )


def active_subscribers(
    session: Session, after_id: int, limit: int, audience: Audience
) -> list[tuple[int, str, str | None, str, str]]:
    """Active subscribers by id checkpoint: (id, email, name, token_key, variant key)."""
    rows = session.execute(
        select(
            Subscriber.id,
            Subscriber.email,
            Subscriber.name,
            Subscriber.token_key,
            variant_key_column(),
        )
        .where(audience_filter(audience), Subscriber.id > after_id)
        .order_by(Subscriber.id)
        .limit(limit)
    ).all()
    return list(rows)


def subscriber_by_email(session: Session, email: str) -> Subscriber | None:
    return session.scalar(select(Subscriber).where(Subscriber.email == email.strip().lower()))


def set_subscriber_status(
    session: Session,
    subscriber_ids: Iterable[int],
    status: SubscriberStatus,
    now: datetime,
    *,
    also_unsubscribed: bool = False,
) -> int:
    """Suppress addresses (bounced, complained); only active or pending ones change,
    so a later bounce never turns an unsubscribe into something else (a complaint
    may: it is the stronger word)."""
    ids = list(subscriber_ids)
    if not ids:
        return 0
    changeable = [SubscriberStatus.ACTIVE, SubscriberStatus.PENDING]
    if also_unsubscribed:
        changeable.append(SubscriberStatus.UNSUBSCRIBED)
    result = session.execute(
        update(Subscriber)
        .where(Subscriber.id.in_(ids), Subscriber.status.in_(changeable))
        .values(status=status)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
