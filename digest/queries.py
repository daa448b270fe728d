"""Named queries: the only module that speaks SQL (through SQLAlchemy Core/ORM).

Every statement here runs unchanged on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    String,
    and_,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.orm import Session

from digest.models import (
    Article,
    Comment,
    Delivery,
    DeliveryStatus,
    Edition,
    EditionItem,
    EditionLink,
    EditionStatus,
    EditionVariant,
    Event,
    EventKind,
    LoginFailure,
    Section,
    Subscriber,
    SubscriberStatus,
    stored_utc,
)
from digest.select import Candidate, Discussion

# -- articles and sections ------------------------------------------------------


def section_id(session: Session, slug: str, title: str) -> int:
    found = session.scalar(select(Section.id).where(Section.slug == slug))
    if found is not None:
        return found
    section = Section(slug=slug, title=title)
    session.add(section)
    session.flush()
    return section.id


def article_by_external_id(session: Session, external_id: str) -> Article | None:
    return session.scalar(select(Article).where(Article.external_id == external_id))


def comment_numbers(session: Session, article_id: int) -> dict[int, tuple[int, int]]:
    """number → (comment id, votes) of the comments an article already has."""
    rows = session.execute(
        select(Comment.number, Comment.id, Comment.votes).where(Comment.article_id == article_id)
    )
    return {number: (cid, votes) for number, cid, votes in rows}


# -- selection ------------------------------------------------------------------


def _candidate_columns() -> tuple[Any, ...]:
    return (
        Article.id,
        Article.external_id,
        Article.published_at,
        Article.views,
        Article.image_url.is_not(None),
        Section.slug,
    )


def _candidate(row: Sequence[Any]) -> Candidate:
    return Candidate(row[0], row[1], row[2], row[3] or 0, bool(row[4]), row[5])


def day_candidates(session: Session, start: datetime, end: datetime) -> list[Candidate]:
    """Articles published in [start, end)."""
    stmt = (
        select(*_candidate_columns())
        .outerjoin(Section, Section.id == Article.section_id)
        .where(Article.published_at >= start, Article.published_at < end)
    )
    return [_candidate(row) for row in session.execute(stmt)]


def discussions(
    session: Session, start: datetime, end: datetime, published_since: datetime
) -> list[Discussion]:
    """Articles published since ``published_since`` with comments in [start, end),
    counted per commenter (authors compared case-insensitively; anonymous
    comments count as one commenter)."""
    author = func.coalesce(Comment.author, "")
    per_author = session.execute(
        select(Comment.article_id, author, func.count())
        .join(Article, Article.id == Comment.article_id)
        .where(
            Comment.posted_at >= start,
            Comment.posted_at < end,
            Article.published_at >= published_since,
            Article.published_at < end,
        )
        .group_by(Comment.article_id, author)
    ).all()
    counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for article_id, name, n in per_author:
        counts[article_id][str(name).strip().lower()] += n
    if not counts:
        return []
    ids = list(counts)
    totals = dict(
        session.execute(
            select(Comment.article_id, func.count())
            .where(Comment.article_id.in_(ids), Comment.posted_at < end)
            .group_by(Comment.article_id)
        ).all()
    )
    articles = session.execute(
        select(*_candidate_columns())
        .outerjoin(Section, Section.id == Article.section_id)
        .where(Article.id.in_(ids))
    )
    return [
        Discussion(_candidate(row), dict(counts[row[0]]), totals.get(row[0], 0)) for row in articles
    ]


def already_sent(
    session: Session,
    schedule: str,
    before: date,
    article_ids: Iterable[int],
    until: datetime,
) -> dict[int, int]:
    """Of ``article_ids``, those an earlier edition of ``schedule`` carried, each with
    the number of comments posted since (from the end of the last such window
    to ``until``)."""
    ids = list(set(article_ids))
    if not ids:
        return {}
    last = (
        select(EditionItem.article_id, func.max(Edition.window_end).label("last_end"))
        .join(Edition, Edition.id == EditionItem.edition_id)
        .where(
            Edition.schedule == schedule,
            Edition.edition_date < before,
            Edition.status.in_([EditionStatus.SENDING, EditionStatus.SENT]),
            EditionItem.article_id.in_(ids),
        )
        .group_by(EditionItem.article_id)
        .subquery()
    )
    since = dict.fromkeys(session.scalars(select(last.c.article_id)), 0)
    new = session.execute(
        select(Comment.article_id, func.count())
        .join(last, last.c.article_id == Comment.article_id)
        .where(Comment.posted_at >= last.c.last_end, Comment.posted_at < until)
        .group_by(Comment.article_id)
    ).all()
    since.update(dict(new))
    return since


def top_comments(
    session: Session, article_ids: Iterable[int], start: datetime, end: datetime
) -> dict[int, Comment]:
    """The most voted comment inside the window, per article (ties: the earlier)."""
    ids = list(set(article_ids))
    if not ids:
        return {}
    rows = session.scalars(
        select(Comment)
        .where(Comment.article_id.in_(ids), Comment.posted_at >= start, Comment.posted_at < end)
        .order_by(Comment.article_id, Comment.votes.desc(), Comment.posted_at, Comment.number)
    )
    best: dict[int, Comment] = {}
    for comment in rows:
        best.setdefault(comment.article_id, comment)
    return best


# -- editions -------------------------------------------------------------------


def edition_for(
    session: Session, schedule: str, edition_date: date, *, lock: bool = False
) -> Edition | None:
    """``lock``: hold the row until commit (PostgreSQL), so a draft refresh and the
    start of its send, in two processes, take turns instead of interleaving."""
    query = select(Edition).where(
        Edition.schedule == schedule, Edition.edition_date == edition_date
    )
    return session.scalar(query.with_for_update() if lock else query)


MAX_ID = 2**31 - 1  # the id columns are 32-bit on PostgreSQL


def row_id(value: str | int) -> int | None:
    """A row id as a person or a URL gives it: ASCII digits within the column's
    range, else None. (``"²".isdigit()`` is true and ``int("²")`` raises; an id
    past 2³¹ − 1 makes PostgreSQL raise: both once reached people as tracebacks.)"""
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()) or len(value) > 10:
            return None
        value = int(value)
    return value if 0 < value <= MAX_ID else None


def find_edition(session: Session, ref: str) -> Edition | None:
    """An edition by id (``12``) or label (``daily/2026-11-25``)."""
    ident = row_id(ref)
    if ident is not None:
        return session.get(Edition, ident)
    if ref.isdigit():
        return None
    schedule, _, day = ref.partition("/")
    try:
        return edition_for(session, schedule, date.fromisoformat(day))
    except ValueError:
        return None


def last_edition(session: Session, schedule: str) -> Edition | None:
    return session.scalar(
        select(Edition)
        .where(Edition.schedule == schedule)
        .order_by(Edition.edition_date.desc())
        .limit(1)
    )


def recent_editions(session: Session, limit: int = 10) -> list[Edition]:
    return list(
        session.scalars(select(Edition).order_by(Edition.edition_date.desc(), Edition.id.desc()))
        .unique()
        .all()[:limit]
    )


def _variant_key() -> Any:
    """A subscriber's variant in SQL: ``render.variant_key(sections, format)``."""
    return func.coalesce(Subscriber.sections, "") + case(
        (Subscriber.format == "text", "|text"), else_=""
    )


def _audience(frequency: str | None) -> Any:
    """Active subscribers, and of them those who chose this schedule's frequency."""
    active = Subscriber.status == SubscriberStatus.ACTIVE
    return active if frequency is None else and_(active, Subscriber.frequency == frequency)


def active_variant_keys(session: Session, frequency: str | None = None) -> list[str]:
    """Distinct (sections, format) choices of the audience: one variant each."""
    rows = session.scalars(select(_variant_key()).where(_audience(frequency)).distinct())
    return sorted(rows)


def variants(session: Session, edition_id: int) -> list[EditionVariant]:
    return list(
        session.scalars(select(EditionVariant).where(EditionVariant.edition_id == edition_id))
    )


# -- deliveries -----------------------------------------------------------------


def enqueue_deliveries(
    session: Session, edition_id: int, now: datetime, frequency: str | None = None
) -> int:
    """A ``Delivery`` row for every active subscriber who has none for this edition,
    in one INSERT … SELECT. Subscribers whose section choice leaves the
    edition empty get a ``suppressed`` row: they are accounted for, not mailed."""
    has_content = EditionVariant.articles > 0
    source = (
        select(
            literal(edition_id),
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
                EditionVariant.key == _variant_key(),
            ),
        )
        .where(
            _audience(frequency),
            ~exists().where(
                Delivery.edition_id == edition_id, Delivery.subscriber_id == Subscriber.id
            ),
        )
    )
    before = _delivery_total(session, edition_id)
    session.execute(
        insert(Delivery).from_select(
            [
                "edition_id",
                "subscriber_id",
                "variant_id",
                "status",
                "attempts",
                "smtp_reply",
                "updated_at",
            ],
            source,
        )
    )
    # Counted, not read from rowcount: psycopg reports -1 for INSERT … SELECT here.
    return _delivery_total(session, edition_id) - before


def _delivery_total(session: Session, edition_id: int) -> int:
    return int(
        session.scalar(
            select(func.count()).select_from(Delivery).where(Delivery.edition_id == edition_id)
        )
        or 0
    )


def audience_zones(session: Session, frequency: str | None, default_zone: str) -> list[str]:
    """The time zones of a schedule's readers (theirs, or the schedule's when unset)."""
    zone = func.coalesce(Subscriber.timezone, default_zone)
    return sorted(session.scalars(select(zone).where(_audience(frequency)).distinct()))


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
                Delivery.edition_id == edition_id,
                Delivery.status == DeliveryStatus.QUEUED,
                Delivery.subscriber_id.in_(readers),
            )
            .values(next_attempt_at=at)
            .execution_options(synchronize_session=False)
        )


def unqueued_active_subscribers(
    session: Session, edition_id: int, frequency: str | None = None
) -> int:
    """Active subscribers without a delivery for the edition (a variant was missing)."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(Subscriber)
            .where(
                _audience(frequency),
                ~exists().where(
                    Delivery.edition_id == edition_id, Delivery.subscriber_id == Subscriber.id
                ),
            )
        )
        or 0
    )


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
    open_edition = exists().where(
        Edition.id == edition_id,
        Edition.status == EditionStatus.SENDING,
        Edition.paused_at.is_(None),
    )
    due_ids = select(Delivery.id).where(Delivery.edition_id == edition_id, _due(now), open_edition)
    if skip_domains:
        due_ids = due_ids.join(Subscriber, Subscriber.id == Delivery.subscriber_id).where(
            *(~Subscriber.email.like(f"%@{_like(d)}", escape="\\") for d in skip_domains)
        )
    due_ids = (
        due_ids.order_by(Delivery.id).limit(limit).with_for_update(of=Delivery, skip_locked=True)
    )
    claimed = list(
        session.scalars(
            update(Delivery)
            .where(Delivery.id.in_(due_ids.scalar_subquery()))
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
    rows = session.execute(
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


_RECORD_COLUMNS = (
    "status",
    "attempts",
    "smtp_code",
    "smtp_reply",
    "message_id",
    "sent_at",
    "next_attempt_at",
    "updated_at",
)


def record_outcomes(session: Session, rows: Sequence[Sequence[Any]]) -> None:
    """Write a batch of outcomes in one executemany, not one statement per message.

    Each row holds the values of ``_RECORD_COLUMNS`` and then the delivery id.
    This is the hottest statement of a send, so it goes to the driver directly:
    SQLAlchemy's per-row type processing cost more than SQLite's own work;
    datetimes are converted by ``stored_utc``, the same rule ``UTCDateTime`` uses."""
    if not rows:
        return
    connection = session.connection()
    dialect = connection.dialect
    if dialect.name == "postgresql":
        # Like SQLite's WAL with synchronous=NORMAL: the commit survives our process
        # dying at any moment (what the kill window counts on) without waiting for
        # the disk; only a crash of the database host could lose the last instant,
        # and its messages would go again with the same Message-ID.
        connection.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    assignments = ", ".join(f"{column} = {mark}" for column in _RECORD_COLUMNS)
    sql = (
        f"UPDATE delivery SET {assignments}, claimed_by = NULL, claimed_until = NULL, "
        f"first_attempt_at = COALESCE(first_attempt_at, {mark}) WHERE id = {mark}"
    )
    name = dialect.name
    params = [
        (
            status,
            attempts,
            code,
            reply,
            message_id,
            stored_utc(sent_at, name),
            stored_utc(next_at, name),
            stored_utc(at, name),
            stored_utc(first_at, name),
            id_,
        )
        for status, attempts, code, reply, message_id, sent_at, next_at, at, first_at, id_ in rows
    ]
    connection.exec_driver_sql(sql, params)


def _claimed_by(edition_id: int, worker: str) -> tuple[Any, ...]:
    return (
        Delivery.edition_id == edition_id,
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
    session: Session, edition_id: int, worker: str, now: datetime, until: datetime
) -> int:
    """The heartbeat: a live worker keeps its claims; a dead one's run out."""
    result = session.execute(
        update(Delivery)
        .where(*_claimed_by(edition_id, worker))
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


def claimers(session: Session) -> list[str]:
    """Workers that hold claims right now."""
    return list(
        session.scalars(
            select(Delivery.claimed_by)
            .where(Delivery.status == DeliveryStatus.SENDING, Delivery.claimed_by.is_not(None))
            .distinct()
        )
    )


def next_due(
    session: Session, edition_id: int, exclude_worker: str | None = None
) -> datetime | None:
    """When the edition next has something to send: now-ish for queued rows, the
    earliest retry for deferred ones, the earliest lease end for claimed ones;
    None when every delivery is final."""
    queued = session.scalar(
        select(func.min(func.coalesce(Delivery.next_attempt_at, Delivery.updated_at))).where(
            Delivery.edition_id == edition_id, Delivery.status == DeliveryStatus.QUEUED
        )
    )
    if queued is not None:
        return queued
    deferred = next_retry(session, edition_id)
    leased_rows = select(func.min(Delivery.claimed_until)).where(
        Delivery.edition_id == edition_id, Delivery.status == DeliveryStatus.SENDING
    )
    if exclude_worker is not None:
        # A sender's own claims are in its hands, not waiting for a lease to end.
        leased_rows = leased_rows.where(Delivery.claimed_by != exclude_worker)
    leased = session.scalar(leased_rows)
    times = [t for t in (deferred, leased) if t is not None]
    return min(times) if times else None


def next_retry(session: Session, edition_id: int) -> datetime | None:
    return session.scalar(
        select(func.min(Delivery.next_attempt_at)).where(
            Delivery.edition_id == edition_id, Delivery.status == DeliveryStatus.DEFERRED
        )
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


def requeue(
    session: Session, edition_id: int, statuses: Sequence[DeliveryStatus], now: datetime
) -> int:
    """``digest retry``: the given states go back to the queue, due now, with a new
    give-up clock. Subscribers no longer active are suppressed at claim time."""
    result = session.execute(
        update(Delivery)
        .where(Delivery.edition_id == edition_id, Delivery.status.in_(list(statuses)))
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
            Delivery.edition_id == edition_id,
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
    rows = session.execute(
        select(Delivery.status, func.count())
        .where(Delivery.edition_id == edition_id)
        .group_by(Delivery.status)
    ).all()
    return {DeliveryStatus(status): n for status, n in rows}


def recent_rate(
    session: Session, edition_id: int, window: timedelta = timedelta(seconds=60)
) -> float | None:
    """Messages per second over the last ``window`` of sending (not since the first
    message: a send resumed hours later must not read as a slow one)."""
    sent = and_(Delivery.edition_id == edition_id, Delivery.status == DeliveryStatus.SENT)
    last = session.scalar(select(func.max(Delivery.sent_at)).where(sent))
    if last is None:
        return None
    first, count = session.execute(
        select(func.min(Delivery.sent_at), func.count()).where(
            sent, Delivery.sent_at >= last - window
        )
    ).one()
    seconds = (last - first).total_seconds() if first is not None else 0.0
    return (count - 1) / seconds if count > 1 and seconds > 0 else None


def failure_reasons(
    session: Session, edition_id: int, limit: int = 10_000
) -> list[tuple[str, int | None, str, int]]:
    """Failure replies by their exact text, commonest first: (status, code, reply, count)."""
    rows = session.execute(
        select(Delivery.status, Delivery.smtp_code, Delivery.smtp_reply, func.count())
        .where(
            Delivery.edition_id == edition_id,
            Delivery.status.in_(
                [DeliveryStatus.FAILED, DeliveryStatus.DEFERRED, DeliveryStatus.BOUNCED]
            ),
        )
        .group_by(Delivery.status, Delivery.smtp_code, Delivery.smtp_reply)
        .order_by(func.count().desc())
        .limit(limit)
    ).all()
    return [(str(s), code, reply or "", n) for s, code, reply, n in rows]


def active_subscribers(
    session: Session, after_id: int, limit: int, frequency: str | None = None
) -> list[tuple[int, str, str | None, str, str]]:
    """Active subscribers by id checkpoint: (id, email, name, token_key, variant key)."""
    rows = session.execute(
        select(
            Subscriber.id,
            Subscriber.email,
            Subscriber.name,
            Subscriber.token_key,
            _variant_key(),
        )
        .where(_audience(frequency), Subscriber.id > after_id)
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


def link_id(session: Session, edition_id: int, url: str) -> int:
    """The edition's row for ``url``, made on first sight (tracked links name it)."""
    found = session.scalar(
        select(EditionLink.id).where(EditionLink.edition_id == edition_id, EditionLink.url == url)
    )
    if found is not None:
        return found
    link = EditionLink(edition_id=edition_id, url=url)
    session.add(link)
    session.flush()
    return link.id


def edition_exists(session: Session, edition_id: int) -> bool:
    return session.get(Edition, edition_id) is not None


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


def delivery_id_for(session: Session, edition_id: int, subscriber_id: int) -> int | None:
    return session.scalar(
        select(Delivery.id).where(
            Delivery.edition_id == edition_id, Delivery.subscriber_id == subscriber_id
        )
    )


def delivery_by_id(session: Session, delivery_id: int) -> Delivery | None:
    return session.get(Delivery, delivery_id)


def delivery_by_message_id(session: Session, message_id: str) -> Delivery | None:
    """The one delivery that carried ``message_id``; None if none did, or several."""
    found = session.scalars(select(Delivery).where(Delivery.message_id == message_id).limit(2))
    rows = list(found)
    return rows[0] if len(rows) == 1 else None


# -- the desk's logins ------------------------------------------------------------------


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
