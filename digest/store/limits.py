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
    """``want`` tokens from the bucket ``name`` (refilled at ``rate`` per second,
    holding at most ``burst``), or none: how many were granted, and when none
    were, the seconds until there are enough. The row is locked for the
    transaction, so two senders never take the same token."""
    bucket = _bucket(session, name, clock())
    now = clock()  # after the lock: the row's last count is never in our future
    # Time only moves forward here: a sender whose ``now`` is older than the last
    # count (it waited for the lock, or its clock is behind) must not count the
    # same seconds twice.
    elapsed = max(0.0, (now - bucket.at).total_seconds())
    tokens = min(burst, bucket.tokens + elapsed * rate)
    # A whole grant or nothing: granted what had dripped in since the last ask, a
    # sender asked again every few milliseconds for a token or two (a transaction
    # per message, a core's worth at 730 a second).
    whole = min(want, max(1, int(burst)))
    granted = min(want, int(tokens)) if tokens >= whole else 0
    bucket.tokens, bucket.at = tokens - granted, max(bucket.at, now)
    wait = 0.0 if granted else (whole - tokens) / rate
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


@dataclass(frozen=True)
class DomainHold:
    """A domain held for the fleet: paused until ``until``, then one probe decides."""

    until: datetime
    backoff: float  # the seconds of the pause in force (or the last one)
    reason: str


STALE = timedelta(days=1)  # a hold's row that ended longer ago is only history


def pause_domain(
    session: Session, domain: str, first: float, longest: float, reason: str, now: datetime
) -> DomainHold:
    """The fleet's pause of ``domain`` after a failed cohort (or a failed probe).
    A pause in force stands: every sender keeps the one decided first, whatever
    its own count. Otherwise the back-off doubles the last one, from ``first`` up
    to ``longest``; a domain open again for longer than ``longest`` starts short."""
    session.execute(delete(DomainPause).where(DomainPause.until <= now - STALE))
    found = session.get(DomainPause, domain, with_for_update=True)
    if found is None:
        try:
            with session.begin_nested():
                session.add(
                    DomainPause(
                        domain=domain,
                        until=now + timedelta(seconds=first),
                        reason=reason[:300],
                        since=now,
                        backoff=first,
                    )
                )
            return DomainHold(now + timedelta(seconds=first), first, reason[:300])
        except IntegrityError:  # another sender paused it in the same instant: theirs
            found = session.get(DomainPause, domain, with_for_update=True, populate_existing=True)
            assert found is not None
    if found.until <= now:
        reopened = _open(found)
        rested = reopened and now - (found.opened_at or now) > timedelta(seconds=longest)
        backoff = first if rested or not found.backoff else min(found.backoff * 2, longest)
        if reopened:
            found.since = now  # a new hold; a failed probe continues the old one
        found.until, found.backoff = now + timedelta(seconds=backoff), backoff
        found.reason, found.probe_at, found.opened_at = reason[:300], None, None
    return DomainHold(found.until, found.backoff, found.reason)


PROBE_LEASE = timedelta(seconds=180)  # a sender that took the probe and died frees it then


def take_probe(session: Session, domain: str, now: datetime) -> bool:
    """May this sender send the one probe of a held domain whose pause is over?
    Yes when nobody holds it (or its holder's lease ran out), or the domain is
    open; no while the pause runs or another sender's probe is out."""
    found = session.get(DomainPause, domain, with_for_update=True)
    if found is None or _open(found):
        return True
    if found.until > now or (found.probe_at is not None and found.probe_at > now - PROBE_LEASE):
        return False
    found.probe_at = now
    return True


def reopen_domain(session: Session, domain: str, now: datetime) -> None:
    """The probe succeeded: the domain is open again, for every sender."""
    found = session.get(DomainPause, domain, with_for_update=True)
    if found is not None and found.until <= now:
        found.opened_at, found.probe_at = now, None


def clear_domain(session: Session, domain: str) -> None:
    """Back to full speed after a reopen: the next pause starts short again."""
    session.execute(
        delete(DomainPause).where(
            DomainPause.domain == domain,
            DomainPause.opened_at.is_not(None),
            DomainPause.opened_at >= DomainPause.until,
        )
    )


def _open(row: DomainPause) -> bool:
    return row.opened_at is not None and row.opened_at >= row.until


def domain_pauses(session: Session, now: datetime) -> dict[str, DomainHold]:
    """The domains held now (paused, or waiting for their probe), each with its
    hold (a read: every sender asks at every heartbeat)."""
    rows = session.scalars(select(DomainPause).where(DomainPause.until > now - STALE))
    return {r.domain: DomainHold(r.until, r.backoff, r.reason) for r in rows if not _open(r)}
