"""Engagement events, soft-bounce history, the desk's failed logins and the
subscription box's requests (what its limits count)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    delete,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.orm import Session

from digest.models import (
    Delivery,
    DeliveryStatus,
    Event,
    EventKind,
    LoginFailure,
    Subscriber,
)
from digest.models.people import SignupAttempt, SignupRequest


def clicks_by_url(session: Session, edition_id: int) -> list[tuple[str, int, int]]:
    """(url, clicks, distinct readers) of an edition's tracked links, most clicked first."""
    url = Event.detail["url"].as_string()
    rows = session.execute(
        select(url, func.count(), func.count(func.distinct(Event.subscriber_id)))
        .where(Event.edition_id == edition_id, Event.kind == EventKind.CLICK)
        .group_by(url)
        .order_by(func.count().desc(), url)
    ).all()
    return [(str(u), int(n), int(r)) for u, n, r in rows if u]


def _day(session: Session, column: Any) -> Any:
    """A UTC timestamp column's day, in SQL (PostgreSQL's ``date()`` would use the
    session's zone)."""
    if session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone("UTC", column))
    return func.date(column)


def per_day(session: Session, column: Any, since: datetime, *where: Any) -> dict[date, int]:
    """How many rows have ``column`` on each UTC day since ``since``: the growth
    charts' figures, grouped in the database (a million readers are not read)."""
    day = _day(session, column)
    rows = session.execute(
        select(day, func.count()).where(column >= since, *where).group_by(day)
    ).all()
    return {_as_date(d): int(n) for d, n in rows if d is not None}


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def growth_days(session: Session, since: datetime) -> dict[str, dict[date, int]]:
    """The list's comings and goings per UTC day since ``since``: sign-ups (rows
    made), confirmations, and the events that end a subscription."""

    def events(kind: EventKind) -> dict[date, int]:
        return per_day(session, Event.at, since, Event.kind == kind)

    return {
        "signups": per_day(session, Subscriber.created_at, since),
        "confirmations": per_day(session, Subscriber.confirmed_at, since),
        "unsubscribes": events(EventKind.UNSUBSCRIBE),
        "bounces": events(EventKind.BOUNCE),
        "complaints": events(EventKind.COMPLAINT),
    }


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


def serialize(session: Session, *names: str) -> None:
    """Make check-then-count one step for ``names`` (issue 24: 30 requests at once got
    18 past a limit of 10): on PostgreSQL a transaction-scoped advisory lock per name,
    taken in one order so two never deadlock; SQLite's transactions already begin
    IMMEDIATE, one writer at a time."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for name in sorted(set(names)):
        session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:n, 0))"), {"n": name})


def login_failures(
    session: Session, editor: str, ip: str, since: datetime
) -> tuple[int, datetime | None, int]:
    """Failed logins since ``since`` for this name from this address, the latest of
    them, and the failures from this address for any name (issue 24: counted by
    name alone, a stranger could lock an editor out from anywhere)."""
    pair, last = session.execute(
        select(func.count(), func.max(LoginFailure.at)).where(
            LoginFailure.editor == editor, LoginFailure.ip == ip, LoginFailure.at >= since
        )
    ).one()
    from_ip = session.scalar(
        select(func.count()).where(LoginFailure.ip == ip, LoginFailure.at >= since)
    )
    return int(pair), last, int(from_ip or 0)


def failed_logins_since(session: Session, since: datetime) -> int:
    return int(session.scalar(select(func.count()).where(LoginFailure.at >= since)) or 0)


def clear_login_failures(session: Session, editor: str, ip: str) -> None:
    """A right password from ``ip``: that pair starts afresh (other addresses'
    failures for the name stay: they may be an attack going on)."""
    session.execute(
        delete(LoginFailure).where(LoginFailure.editor == editor, LoginFailure.ip == ip)
    )


def latest_login_failure(session: Session, ip: str) -> datetime | None:
    return session.scalar(select(func.max(LoginFailure.at)).where(LoginFailure.ip == ip))


def signups_since(session: Session, key: str, since: datetime) -> int:
    query = select(func.count()).where(SignupAttempt.ip == key, SignupAttempt.at >= since)
    return int(session.scalar(query) or 0)


def add_signup(session: Session, keys: Iterable[str], at: datetime) -> None:
    """Count a request to the subscription box under each of its keys (the asker's
    network, the target mailbox, everyone); rows older than a day go (the limits
    look back a day at most)."""
    session.execute(delete(SignupAttempt).where(SignupAttempt.at < at - timedelta(days=1)))
    session.add_all(SignupAttempt(ip=key, at=at) for key in keys)


def queue_signup(session: Session, request: SignupRequest) -> None:
    session.add(request)


def take_signups(session: Session, limit: int) -> list[SignupRequest]:
    """The oldest waiting requests, taken out of the queue (``SKIP LOCKED``: two
    processes never take one)."""
    query = select(SignupRequest).order_by(SignupRequest.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    taken = list(session.scalars(query))
    for request in taken:
        session.delete(request)
    return taken


def waiting_signups(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(SignupRequest)) or 0)
