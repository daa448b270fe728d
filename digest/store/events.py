"""Engagement events, soft-bounce history, the desk's failed logins and the
subscription box's requests (what its limits count)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.orm import Session

from digest.models import (
    Delivery,
    DeliveryStatus,
    Event,
    EventKind,
    LoginFailure,
)
from digest.models.tables import SignupAttempt


def engagement(session: Session, edition_id: int) -> dict[str, int]:
    """Opens and clicks of an edition, with distinct readers where they are known."""
    rows = session.execute(
        select(Event.kind, func.count(), func.count(func.distinct(Event.subscriber_id)))
        .where(Event.edition_id == edition_id, Event.kind.in_([EventKind.OPEN, EventKind.CLICK]))
        .group_by(Event.kind)
    ).all()
    counts = {"opens": 0, "clicks": 0, "readers_opened": 0, "readers_clicked": 0}
    for kind, total, readers in rows:
        name = "opens" if kind is EventKind.OPEN else "clicks"
        counts[name] = int(total)
        counts["readers_opened" if name == "opens" else "readers_clicked"] = int(readers)
    return counts


def add_events(session: Session, events: Sequence[dict[str, Any]]) -> None:
    if events:
        session.execute(insert(Event), list(events))


def soft_bounce_days(session: Session, subscriber_id: int, since: datetime) -> set[date]:
    """The distinct (UTC) days with a soft bounce since ``since`` and since the
    address last accepted a message: a success resets the count (MAIL-RULES 24)."""
    last_sent = session.scalar(
        select(func.max(Delivery.sent_at)).where(
            Delivery.subscriber_id == subscriber_id, Delivery.status == DeliveryStatus.SENT
        )
    )
    start = max(since, last_sent) if last_sent is not None else since
    events = session.execute(
        select(Event.at, Event.detail).where(
            Event.subscriber_id == subscriber_id,
            Event.kind == EventKind.BOUNCE,
            Event.at > start,
        )
    ).all()
    return {at.date() for at, detail in events if (detail or {}).get("soft")}


def login_failures(
    session: Session, editor: str, ip: str, since: datetime
) -> tuple[int, datetime | None]:
    """Failed logins since ``since`` for this name or from this address (whichever
    has more), and the latest of them."""
    counts = []
    for column, value in ((LoginFailure.editor, editor), (LoginFailure.ip, ip)):
        count, last = session.execute(
            select(func.count(), func.max(LoginFailure.at)).where(
                column == value, LoginFailure.at >= since
            )
        ).one()
        counts.append((int(count), last))
    return max(counts, key=lambda c: c[0])


def failed_logins_since(session: Session, since: datetime) -> int:
    return int(session.scalar(select(func.count()).where(LoginFailure.at >= since)) or 0)


def clear_login_failures(session: Session, editor: str) -> None:
    session.execute(delete(LoginFailure).where(LoginFailure.editor == editor))


def signups_since(session: Session, ip: str, since: datetime) -> int:
    query = select(func.count()).where(SignupAttempt.ip == ip, SignupAttempt.at >= since)
    return int(session.scalar(query) or 0)


def add_signup(session: Session, ip: str, at: datetime) -> None:
    """Count a request to the subscription box; rows older than a day go (the
    limit looks back an hour)."""
    session.execute(delete(SignupAttempt).where(SignupAttempt.at < at - timedelta(days=1)))
    session.add(SignupAttempt(ip=ip, at=at))
