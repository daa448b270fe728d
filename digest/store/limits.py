"""Limits every sender shares through the database (issue 16): token buckets for
the global rate and the domains' caps, and the domains' pauses. PostgreSQL is the
one coordination point; each call is one short transaction on one row."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from digest.models import DomainPause, RateBucket


def take_tokens(
    session: Session,
    name: str,
    rate: float,
    burst: float,
    want: int,
    clock: Callable[[], datetime],
) -> tuple[int, float]:
    """Up to ``want`` tokens from the bucket ``name`` (refilled at ``rate`` per
    second, holding at most ``burst``): how many were granted, and when none were,
    the seconds until the next one. The row is locked for the transaction, so two
    senders never take the same token."""
    bucket = _bucket(session, name, clock())
    now = clock()  # after the lock: the row's last count is never in our future
    # Time only moves forward here: a sender whose ``now`` is older than the last
    # count (it waited for the lock, or its clock is behind) must not count the
    # same seconds twice.
    elapsed = max(0.0, (now - bucket.at).total_seconds())
    tokens = min(burst, bucket.tokens + elapsed * rate)
    granted = min(want, int(tokens))
    bucket.tokens, bucket.at = tokens - granted, max(bucket.at, now)
    wait = 0.0 if granted else (1.0 - tokens) / rate
    return granted, wait


def reserve_slots(
    session: Session, name: str, interval: float, count: int, clock: Callable[[], datetime]
) -> datetime:
    """The next ``count`` slots, ``interval`` seconds apart, of the schedule ``name``
    (one capped domain's, every sender's): when the first is. The bucket's time is
    where the schedule has got to; its tokens are not used."""
    bucket = _bucket(session, name, clock())
    start = max(clock(), bucket.at)  # the clock read after the lock, as in take_tokens
    bucket.at = start + timedelta(seconds=interval * count)
    return start


def _bucket(session: Session, name: str, now: datetime) -> RateBucket:
    found = session.get(RateBucket, name, with_for_update=True)
    if found is not None:
        return found
    try:
        # A new bucket starts empty: a fleet that starts together gets no burst.
        with session.begin_nested():
            session.add(RateBucket(name=name, tokens=0.0, at=now))
    except IntegrityError:
        pass  # another sender made it first
    found = session.get(RateBucket, name, with_for_update=True, populate_existing=True)
    assert found is not None
    return found


def pause_domain(
    session: Session, domain: str, until: datetime, reason: str, now: datetime
) -> None:
    """Pause ``domain`` for every sender until ``until`` (a later pause wins); pauses
    that have ended are cleared here, where pauses are written, not at each read."""
    session.execute(delete(DomainPause).where(DomainPause.until <= now))
    found = session.get(DomainPause, domain, with_for_update=True)
    if found is None:
        session.add(DomainPause(domain=domain, until=until, reason=reason[:300], since=now))
    elif found.until < until:
        found.until, found.reason = until, reason[:300]


def domain_pauses(session: Session, now: datetime) -> dict[str, datetime]:
    """The domains paused now, each with when its pause ends (a read: every sender
    asks at every heartbeat)."""
    rows = session.execute(
        select(DomainPause.domain, DomainPause.until).where(DomainPause.until > now)
    )
    return {domain: until for domain, until in rows}


@dataclass(frozen=True)
class Hold:
    """A domain held back for every sender, as `digest status` and the desk show it."""

    domain: str
    reason: str
    since: datetime | None
    until: datetime


def holds(session: Session, now: datetime) -> list[Hold]:
    rows = session.scalars(
        select(DomainPause).where(DomainPause.until > now).order_by(DomainPause.domain)
    )
    return [Hold(p.domain, p.reason, p.since, p.until) for p in rows]
