"""One reader's rows: by address or token, the pending to invite, sections to
choose from, and everything held about them (for export)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, insert, or_, select
from sqlalchemy.orm import Session

from digest.models import (
    AuditEntry,
    Delivery,
    Edition,
    Editor,
    Event,
    Forgotten,
    Section,
    Subscriber,
    SubscriberStatus,
)


def subscriber_by_token(session: Session, token_key: str) -> Subscriber | None:
    return session.scalar(select(Subscriber).where(Subscriber.token_key == token_key))


def subscriber_id_by_token(session: Session, token_key: str) -> int | None:
    return session.scalar(select(Subscriber.id).where(Subscriber.token_key == token_key))


def pending_to_invite(
    session: Session, expired: datetime | None, limit: int | None, only: str | None
) -> list[Subscriber]:
    """Pending subscribers never invited, and (with ``expired``) those whose link
    was sent before it."""
    due: ColumnElement[bool] = Subscriber.invited_at.is_(None)
    if expired is not None:
        due = or_(due, Subscriber.invited_at < expired)
    query = (
        select(Subscriber)
        .where(Subscriber.status == SubscriberStatus.PENDING, due)
        .order_by(Subscriber.id)
        .limit(limit)
    )
    if only is not None:
        query = query.where(Subscriber.email == only)
    return list(session.scalars(query))


def sections(session: Session) -> list[tuple[str, str]]:
    """(slug, title) of every section, in the site's order."""
    rows = session.execute(
        select(Section.slug, Section.title).order_by(Section.position, Section.title)
    )
    return [(slug, title) for slug, title in rows]


def section_slugs(session: Session) -> set[str]:
    return set(session.scalars(select(Section.slug)))


def subscribers(session: Session, status: SubscriberStatus | None) -> Iterator[Subscriber]:
    query = select(Subscriber).order_by(Subscriber.id)
    if status is not None:
        query = query.where(Subscriber.status == status)
    yield from session.scalars(query)


def deliveries_of(session: Session, subscriber_id: int) -> list[tuple[Delivery, Edition]]:
    rows = session.execute(
        select(Delivery, Edition)
        .join(Edition, Edition.id == Delivery.edition_id)
        .where(Delivery.subscriber_id == subscriber_id)
        .order_by(Delivery.id)
    )
    return [(delivery, edition) for delivery, edition in rows]


def events_of(session: Session, subscriber_id: int) -> list[Event]:
    return list(
        session.scalars(
            select(Event).where(Event.subscriber_id == subscriber_id).order_by(Event.id)
        )
    )


def known_emails(session: Session, emails: list[str]) -> set[str]:
    return set(session.scalars(select(Subscriber.email).where(Subscriber.email.in_(emails))))


def add_subscribers(session: Session, rows: list[dict[str, Any]]) -> None:
    """Bulk insert (the demo's and the benches' readers)."""
    if rows:
        session.execute(insert(Subscriber), rows)


def search_subscribers(session: Session, fragment: str, limit: int) -> list[Subscriber]:
    """Readers whose address contains ``fragment`` (case-insensitive), by address."""
    escaped = fragment.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return list(
        session.scalars(
            select(Subscriber)
            .where(Subscriber.email.like(f"%{escaped}%", escape="\\"))
            .order_by(Subscriber.email)
            .limit(limit)
        )
    )


def add_audit(
    session: Session,
    at: datetime,
    editor: str,
    action: str,
    subject: str | None,
    detail: dict[str, Any] | None,
) -> None:
    session.add(AuditEntry(at=at, editor=editor, action=action, subject=subject, detail=detail))


def audit_of(session: Session, subject: str, limit: int = 50) -> list[AuditEntry]:
    return list(
        session.scalars(
            select(AuditEntry)
            .where(AuditEntry.subject == subject)
            .order_by(AuditEntry.id.desc())
            .limit(limit)
        )
    )


def forget_address(session: Session, address_hash: str, at: datetime) -> None:
    """Keep the hash of an erased address, so it is refused from now on."""
    if not is_forgotten(session, address_hash):
        session.add(Forgotten(hash=address_hash, at=at))


def add_subscriber(session: Session, subscriber: Subscriber) -> Subscriber:
    session.add(subscriber)
    session.flush()
    return subscriber


def is_forgotten(session: Session, address_hash: str) -> bool:
    return session.get(Forgotten, address_hash) is not None


def editors(session: Session) -> list[Editor]:
    return list(session.scalars(select(Editor).order_by(Editor.name)))


def editor_named(session: Session, name: str) -> Editor | None:
    return session.scalar(select(Editor).where(Editor.name == name))


def audit_log(session: Session, limit: int = 200, before: int | None = None) -> list[AuditEntry]:
    """The whole audit log, newest first, a page at a time (``before``: an id)."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if before is not None:
        query = query.where(AuditEntry.id < before)
    return list(session.scalars(query))
