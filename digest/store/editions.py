"""Editions, their rendered variants and their links."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    delete,
    func,
    select,
    update,
)
from sqlalchemy.orm import Session

from digest.models import (
    Delivery,
    DeliveryStatus,
    Edition,
    EditionChange,
    EditionItem,
    EditionLink,
    EditionStatus,
    EditionVariant,
    Subscriber,
)
from digest.store.partitions import of_edition
from digest.store.reading import edition_facts


def edition_for(
    session: Session, schedule: str, edition_date: date, *, lock: bool = False, number: int = 0
) -> Edition | None:
    """The schedule's edition of the day (``number`` 0; a special one is 1, 2 …).
    ``lock``: hold the row until commit (PostgreSQL), so a draft refresh and the
    start of its send, in two processes, take turns instead of interleaving."""
    query = select(Edition).where(
        Edition.schedule == schedule,
        Edition.edition_date == edition_date,
        Edition.number == number,
    )
    return session.scalar(query.with_for_update() if lock else query)


def find_edition(session: Session, ref: str) -> Edition | None:
    """An edition by id (``12``) or label (``daily/2026-11-25``, a special one
    ``daily/2026-11-25/special-1``), as ``store.edition_facts`` reads it."""
    found = edition_facts(session, ref)
    return None if found is None else session.get(Edition, found.id)


def next_special_number(session: Session, schedule: str, edition_date: date) -> int:
    """The number a new special edition of that day takes (1 for the first)."""
    latest = session.scalar(
        select(func.max(Edition.number)).where(
            Edition.schedule == schedule, Edition.edition_date == edition_date
        )
    )
    return int(latest or 0) + 1


def last_edition(session: Session, schedule: str) -> Edition | None:
    """The schedule's latest edition of a day (a special one is not the schedule's)."""
    return session.scalar(
        select(Edition)
        .where(Edition.schedule == schedule, Edition.number == 0)
        .order_by(Edition.edition_date.desc())
        .limit(1)
    )


def recent_editions(session: Session, limit: int = 10) -> list[Edition]:
    return list(
        session.scalars(select(Edition).order_by(Edition.edition_date.desc(), Edition.id.desc()))
        .unique()
        .all()[:limit]
    )


def editions_where(
    session: Session,
    schedule: str | None,
    status: EditionStatus | None,
    since: date | None,
    until: date | None,
    limit: int,
    before_id: int | None = None,
) -> list[Edition]:
    """Editions newest first, by schedule, status and date (both ends included);
    ``before_id``: the page after the one that ended with that edition."""
    query = select(Edition)
    if schedule is not None:
        query = query.where(Edition.schedule == schedule)
    if status is not None:
        query = query.where(Edition.status == status)
    if since is not None:
        query = query.where(Edition.edition_date >= since)
    if until is not None:
        query = query.where(Edition.edition_date <= until)
    if before_id is not None:
        query = query.where(Edition.id < before_id)
    return list(session.scalars(query.order_by(Edition.id.desc()).limit(limit)).unique())


def variants(session: Session, edition_id: int, *, retired: bool = False) -> list[EditionVariant]:
    """The edition's current variants (a rebuild retires the ones it replaces; with
    ``retired``, those too: a sender may hold claims that point at them)."""
    query = select(EditionVariant).where(EditionVariant.edition_id == edition_id)
    if not retired:
        query = query.where(EditionVariant.retired_at.is_(None))
    return list(session.scalars(query))


def set_waves(
    session: Session, edition_id: int, default_zone: str, waves: dict[str, datetime]
) -> None:
    """Hold each queued delivery until its reader's zone's send time."""
    for zone, at in waves.items():
        readers = select(Subscriber.id).where(
            func.coalesce(Subscriber.timezone, default_zone) == zone
        )
        session.execute(
            update(Delivery)
            .where(
                *of_edition(edition_id),
                Delivery.status == DeliveryStatus.QUEUED,
                Delivery.subscriber_id.in_(readers),
            )
            .values(next_attempt_at=at)
            .execution_options(synchronize_session=False)
        )


def sending_editions(session: Session) -> list[Edition]:
    """Editions workers should send: sending, not paused, oldest first."""
    return list(
        session.scalars(
            select(Edition)
            .where(Edition.status == EditionStatus.SENDING, Edition.paused_at.is_(None))
            .order_by(Edition.id)
        )
    )


def link_ids(session: Session, edition_id: int, urls: Iterable[str]) -> dict[str, int]:
    """The edition's row id for each URL, made on first sight (tracked links name it)."""
    wanted = set(urls)
    if not wanted:
        return {}
    rows = session.execute(
        select(EditionLink.url, EditionLink.id).where(
            EditionLink.edition_id == edition_id, EditionLink.url.in_(wanted)
        )
    )
    found = {url: link_id for url, link_id in rows}
    new = [EditionLink(edition_id=edition_id, url=url) for url in sorted(wanted - set(found))]
    if new:
        session.add_all(new)
        session.flush()
        found.update({link.url: link.id for link in new})
    return found


def edition_exists(session: Session, edition_id: int) -> bool:
    return session.get(Edition, edition_id) is not None


def clear_selection(session: Session, edition: Edition) -> None:
    """Drop an edition's items and variants: a draft is selected afresh."""
    session.execute(delete(EditionItem).where(EditionItem.edition_id == edition.id))
    session.execute(delete(EditionVariant).where(EditionVariant.edition_id == edition.id))
    session.expire(edition, ["items", "variants"])


def add_change(
    session: Session,
    edition_id: int,
    editor: str,
    at: datetime,
    action: str,
    detail: dict[str, Any] | None,
) -> None:
    """The edition's change log: who did what, when (the desk lists it)."""
    session.add(
        EditionChange(edition_id=edition_id, editor=editor, at=at, action=action, detail=detail)
    )


def edition_changes(session: Session, edition_id: int) -> list[EditionChange]:
    """The desk's change log, newest first."""
    return list(
        session.scalars(
            select(EditionChange)
            .where(EditionChange.edition_id == edition_id)
            .order_by(EditionChange.id.desc())
        )
    )


ARCHIVED = (EditionStatus.SENDING, EditionStatus.SENT)
# The public archive holds the schedules' editions; a special one (a section's
# breaking news) is the letter only (its page would share the day's address).
_PUBLIC = (Edition.status.in_(ARCHIVED), Edition.number == 0)


def archived_editions(session: Session, limit: int, offset: int = 0) -> list[Edition]:
    """Editions the public archive shows (sending or sent), newest first."""
    return list(
        session.scalars(
            select(Edition)
            .where(*_PUBLIC)
            .order_by(Edition.edition_date.desc(), Edition.id.desc())
            .limit(limit)
            .offset(offset)
        )
    )


def archived_count(session: Session) -> int:
    query = select(func.count()).select_from(Edition).where(*_PUBLIC)
    return int(session.scalar(query) or 0)
