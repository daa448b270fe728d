"""What a report reads: an edition, its counts, rate, reasons, holds and
corrections, in SQLAlchemy Core over ``store.light``'s tables, so `digest status`
answers without loading the ORM (issue 31). Each query takes a plain connection
or an ORM session (the desk's and the API's pages read the same)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import Connection, and_, func, select

from digest.kinds import DeliveryStatus, EditionStatus, EventKind, edition_label, row_id
from digest.store.light import (
    delivery,
    delivery_count,
    domain_pause,
    edition,
    edition_variant,
    event,
    of_edition,
    subscriber,
)
from digest.store.light import (
    edition_summary as summary_table,
)

# The sent rows, as the partial index ix_delivery_sent is made of them.
_SENT = delivery.c.status == DeliveryStatus.SENT

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from digest.models import Edition

    # What each query reads through: the command's plain connection, or the
    # desk's and the API's session (which answers the same Core statements).
    Reader = Connection | Session


@dataclass(frozen=True)
class EditionFacts:
    """What a report says of the edition itself."""

    id: int
    schedule: str
    edition_date: date
    number: int
    status: EditionStatus
    subject: str
    window_start: datetime
    window_end: datetime
    created_at: datetime
    sent_at: datetime | None
    paused_at: datetime | None
    pause_reason: str | None
    revision_mark: int

    @classmethod
    def of(cls, edition: Edition) -> EditionFacts:
        """The facts of an edition its caller has read already (no query)."""
        return cls(*(getattr(edition, name) for name in cls.__dataclass_fields__))

    @property
    def label(self) -> str:
        return edition_label(self.schedule, self.edition_date, self.number)


_FACTS = select(*(edition.c[name] for name in EditionFacts.__dataclass_fields__))


def edition_facts(db: Reader, ref: str) -> EditionFacts | None:
    """An edition by id (``12``) or label (``daily/2026-11-25``, a special one
    ``daily/2026-11-25/special-1``); None when there is none."""
    ident = row_id(ref)
    if ident is not None:
        return _facts(db, edition.c.id == ident)
    if ref.isdigit():
        return None
    schedule, _, rest = ref.partition("/")
    day, _, special = rest.partition("/special-")
    try:
        number = int(special) if special else 0
        on = date.fromisoformat(day)
    except ValueError:
        return None
    where = and_(edition.c.schedule == schedule, edition.c.edition_date == on)
    return _facts(db, and_(where, edition.c.number == number))


def _facts(db: Reader, where: Any) -> EditionFacts | None:
    row = db.execute(_FACTS.where(where)).one_or_none()
    return None if row is None else EditionFacts(*row)


def recent_facts(db: Reader, limit: int = 10) -> list[EditionFacts]:
    """The latest editions by date, newest first."""
    query = _FACTS.order_by(edition.c.edition_date.desc(), edition.c.id.desc()).limit(limit)
    return [EditionFacts(*row) for row in db.execute(query)]


class Summary(NamedTuple):
    """What `digest db prune` kept of an edition's deliveries (``store.retention``)."""

    counts: dict[str, Any]
    failures: dict[str, Any]
    minutes: dict[str, Any]
    ambiguous: int


def edition_summary(db: Reader, edition_id: int) -> Summary | None:
    s = summary_table.c
    query = select(s.counts, s.failures, s.minutes, s.ambiguous).where(s.edition_id == edition_id)
    row = db.execute(query).one_or_none()
    return None if row is None else Summary(row[0], row[1], row[2], int(row[3] or 0))


def variant_count(db: Reader, edition_id: int) -> int:
    """The edition's current variants (a rebuild retires the ones it replaced)."""
    v = edition_variant.c
    query = select(func.count()).where(v.edition_id == edition_id, v.retired_at.is_(None))
    return int(db.scalar(query) or 0)


def delivery_counts(db: Reader, edition_id: int) -> dict[DeliveryStatus, int]:
    """The edition's deliveries by status, as the database keeps them (issue 31:
    ``delivery_count``, kept by triggers on every statement that writes a
    delivery): a few rows read, however many deliveries."""
    c = delivery_count.c
    rows = db.execute(
        select(c.status, func.sum(c.n)).where(c.edition_id == edition_id).group_by(c.status)
    ).all()
    return {DeliveryStatus(status): int(n) for status, n in rows if n}


# The most messages a rate is read from: a few seconds of a fast send. A minute
# of one at 2 000 msg/s is 120 000 rows, a third of a second read through the
# index while PostgreSQL checks each row's visibility in the table (issue 31).
PACE_ROWS = 5000


def newest_sent(db: Reader, edition_id: int, most: int = PACE_ROWS) -> list[datetime]:
    """When the edition's last ``most`` messages went, newest first: the sent rows'
    partial index read in its own order and stopped there. Asked as the newest
    rows, never as max(): right after a send PostgreSQL's statistics still say
    no row is sent, and it planned max() as a reading of every sent row (0.11 s
    at 300 000, 0.33 s at a million) where the newest is one step of the index."""
    day = db.scalar(select(edition.c.edition_date).where(edition.c.id == edition_id))
    if day is None:
        return []
    d = delivery.c
    # The day as a value, not as the sub-select of_edition names: PostgreSQL then
    # plans for that day's partition alone and reads its index backwards; with
    # the day known only when it runs, it planned a sort of every partition's
    # rows for the first ``most`` (the partitions' rows merged in no order).
    query = (
        select(d.sent_at)
        .where(d.edition_id == edition_id, d.edition_date == day, _SENT)
        .order_by(d.sent_at.desc())
        .limit(most)
    )
    return [at for at in db.scalars(query) if at is not None]


class Tally(NamedTuple):
    """An edition's rows as `digest status` and the desk show them."""

    counts: dict[DeliveryStatus, int]
    last_sent: datetime | None
    due: int  # queued and due, or claimed
    next_wave: datetime | None  # the earliest of the readers queued for a later hour
    rate: float | None  # messages/s, as recent_rate reads it


def edition_tally(
    db: Reader, edition_id: int, now: datetime, window: timedelta = timedelta(seconds=60)
) -> Tally:
    """The counts, what is due now, the next wave and the recent rate, none of them
    a reading of the edition's rows (issue 31: a scan of a million rows was most of
    a `digest status` while two workers sent): the counts as the database keeps
    them, the rest through partial indexes of the sent rows and of the queued rows
    held for their reader's hour. The rate is read over the part of the last minute
    of sending that falls in the clock's last minute (its last 5 000 messages at
    most); a send that is not sending now (its last message older than that)
    reads its own last minute."""
    counts = delivery_counts(db, edition_id)
    newest = newest_sent(db, edition_id) if counts.get(DeliveryStatus.SENT) else []
    last, since, rate = newest[0] if newest else None, now - window, None
    if last is not None:  # none later than now: last is the latest
        rate = _pace(newest, since if since <= last <= now else last - window)
    queue = queue_now(db, edition_id, counts, now)
    return Tally(counts, last, queue.due, queue.next_wave, rate)


class Queue(NamedTuple):
    """What is left of an edition's send now."""

    due: int  # queued and due, or claimed
    waiting: int  # queued for a later hour (their reader's wave)
    next_wave: datetime | None  # the earliest of those hours


def queue_now(
    db: Reader, edition_id: int, counts: Mapping[DeliveryStatus, int], now: datetime
) -> Queue:
    """The edition's queue from its ``counts`` (``delivery_counts``) and the index
    of the rows held for a later hour: what is due is the rest."""
    queued = counts.get(DeliveryStatus.QUEUED, 0)
    later, wave = _held(db, edition_id, now) if queued else (0, None)
    return Queue(queued - later + counts.get(DeliveryStatus.SENDING, 0), later, wave)


def _held(db: Reader, edition_id: int, now: datetime) -> tuple[int, datetime | None]:
    """The queued deliveries held for a later hour (their reader's wave), and the
    earliest of those hours."""
    d = delivery.c
    later, first = db.execute(
        select(func.count(), func.min(d.next_attempt_at)).where(
            *of_edition(edition_id), d.status == DeliveryStatus.QUEUED, d.next_attempt_at > now
        )
    ).one()
    return int(later), first


def recent_rate(
    db: Reader, edition_id: int, window: timedelta = timedelta(seconds=60)
) -> float | None:
    """Messages per second over the last ``window`` of sending (not since the first
    message: a send resumed hours later must not read as a slow one)."""
    newest = newest_sent(db, edition_id)
    return _pace(newest, newest[0] - window) if newest else None


def _pace(newest: list[datetime], since: datetime) -> float | None:
    """Messages per second from the first to the last of the ``newest`` (newest
    first) that went at ``since`` or later."""
    went = [at for at in newest if at >= since]
    seconds = (went[0] - went[-1]).total_seconds() if went else 0.0
    return (len(went) - 1) / seconds if len(went) > 1 and seconds > 0 else None


_TROUBLE = (DeliveryStatus.FAILED, DeliveryStatus.DEFERRED, DeliveryStatus.BOUNCED)
_OPEN = (DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED, DeliveryStatus.SENDING)


def failure_reasons(
    db: Reader, edition_id: int, limit: int = 10_000
) -> list[tuple[str, int | None, str, int]]:
    """Failure replies by their exact text, commonest first: (status, code, reply, count)."""
    d = delivery.c
    rows = db.execute(
        select(d.status, d.smtp_code, d.smtp_reply, func.count())
        .where(*of_edition(edition_id), d.status.in_(_TROUBLE))
        .group_by(d.status, d.smtp_code, d.smtp_reply)
        .order_by(func.count().desc())
        .limit(limit)
    ).all()
    return [(str(s), code, reply or "", n) for s, code, reply, n in rows]


def ambiguous_count(db: Reader, edition_id: int) -> int:
    """Deliveries whose line dropped at least once after the end of data."""
    query = select(func.count()).where(*of_edition(edition_id), delivery.c.ambiguous > 0)
    return int(db.scalar(query) or 0)


def waiting_in(db: Reader, edition_id: int, domains: list[str]) -> dict[str, int]:
    """The edition's deliveries not yet final whose reader is at each domain."""
    found = {}
    for domain in domains:
        query = (
            select(func.count())
            .select_from(delivery.join(subscriber, subscriber.c.id == delivery.c.subscriber_id))
            .where(*of_edition(edition_id), delivery.c.status.in_(_OPEN), _at_domain(domain))
        )
        found[domain] = int(db.scalar(query) or 0)
    return found


def _at_domain(domain: str) -> Any:
    """The reader's address is at ``domain`` (join ``subscriber``)."""
    return func.lower(subscriber.c.email).like(f"%@{domain.lower()}")


def next_retry(
    db: Reader, edition_id: int, held: Mapping[str, datetime] | None = None
) -> datetime | None:
    """When the edition's next deferred delivery is tried: a reader at a domain
    ``held`` (domain → when its hold ends) waits for the end of the hold."""
    held = held or {}

    def first(*where: Any) -> datetime | None:
        at: datetime | None = db.scalar(
            select(func.min(delivery.c.next_attempt_at))
            .select_from(delivery.join(subscriber, subscriber.c.id == delivery.c.subscriber_id))
            .where(*of_edition(edition_id), delivery.c.status == DeliveryStatus.DEFERRED, *where)
        )
        return at

    at_domain = {d: _at_domain(d) for d in held}
    found = [first(*(~c for c in at_domain.values()))]
    found += [max(at, held[d]) if (at := first(c)) else None for d, c in at_domain.items()]
    return min((at for at in found if at is not None), default=None)


def engagement(db: Reader, edition_id: int) -> dict[str, int]:
    """Opens and clicks of an edition, with distinct readers where they are known."""
    e = event.c
    rows = db.execute(
        select(e.kind, func.count(), func.count(func.distinct(e.subscriber_id)))
        .where(e.edition_id == edition_id, e.kind.in_([EventKind.OPEN, EventKind.CLICK]))
        .group_by(e.kind)
    ).all()
    counts = {"opens": 0, "clicks": 0, "readers_opened": 0, "readers_clicked": 0}
    for kind, total, readers in rows:
        name = "opens" if kind is EventKind.OPEN else "clicks"
        counts[name] = int(total)
        counts["readers_opened" if name == "opens" else "readers_clicked"] = int(readers)
    return counts


@dataclass(frozen=True)
class Hold:
    """A domain held back for every sender, as `digest status` and the desk show it."""

    domain: str
    reason: str
    since: datetime | None
    until: datetime


def holds(db: Reader, now: datetime) -> list[Hold]:
    p = domain_pause.c
    rows = db.execute(
        select(p.domain, p.reason, p.since, p.until).where(p.until > now).order_by(p.domain)
    )
    return [Hold(domain, reason, since, until) for domain, reason, since, until in rows]
