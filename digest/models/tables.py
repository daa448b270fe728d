"""The tables: SQLAlchemy 2 typed mappings. Queries live in ``store``."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    select,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from digest.kinds import (
    Block,
    DeliveryStatus,
    EditionStatus,
    EventKind,
    SubscriberStatus,
    edition_label,
    utcnow,
)
from digest.models.columns import UTCDateTime, stored_enum

GIVE_UP_MARGIN = timedelta(minutes=5)  # before the next edition is built


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, dict[str, Any]: JSON}


class Section(Base):
    __tablename__ = "section"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer, default=1000)


class Article(Base):
    __tablename__ = "article"

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(200), unique=True)
    url: Mapped[str] = mapped_column(Text)
    title: Mapped[str] = mapped_column(Text)
    lead: Mapped[str | None] = mapped_column(Text)
    image_url: Mapped[str | None] = mapped_column(Text)
    image_caption: Mapped[str | None] = mapped_column(Text)
    section_id: Mapped[int | None] = mapped_column(ForeignKey("section.id"))
    source: Mapped[str | None] = mapped_column(Text)
    published_at: Mapped[datetime] = mapped_column(index=True)
    views: Mapped[int] = mapped_column(BigInteger, default=0)
    rating: Mapped[int] = mapped_column(Integer, default=0)
    ingested_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # The site took it down (`"withdrawn": true`): never selected, dropped by a rebuild.
    withdrawn_at: Mapped[datetime | None]

    section: Mapped[Section | None] = relationship(lazy="joined")


class ArticleRevision(Base):
    """A correction ingest saw: the title, lead or URL changed, or the article was
    withdrawn (or put back). Editions compare their ``revision_mark`` with these ids."""

    __tablename__ = "article_revision"

    id: Mapped[int] = mapped_column(primary_key=True)
    article_id: Mapped[int] = mapped_column(
        ForeignKey("article.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime]
    # "changed", "withdrawn" or "restored".
    kind: Mapped[str] = mapped_column(String(16))
    # field → value, of the fields that changed (title, lead, url).
    before: Mapped[dict[str, Any] | None]
    after: Mapped[dict[str, Any] | None]


class Comment(Base):
    __tablename__ = "comment"
    __table_args__ = (
        UniqueConstraint("article_id", "number", name="uq_comment_article_number"),
        Index("ix_comment_posted_at_article", "posted_at", "article_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("article.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    author: Mapped[str | None] = mapped_column(String(200))
    posted_at: Mapped[datetime]
    body: Mapped[str] = mapped_column(Text, default="")
    votes: Mapped[int] = mapped_column(Integer, default=0)


class Subscriber(Base):
    __tablename__ = "subscriber"
    __table_args__ = (Index("ix_subscriber_status_id", "status", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[SubscriberStatus] = mapped_column(
        stored_enum(SubscriberStatus, "subscriber_status"), default=SubscriberStatus.PENDING
    )
    locale: Mapped[str] = mapped_column(String(16), default="ru")
    timezone: Mapped[str | None] = mapped_column(String(64))
    # Normalised, sorted, comma-joined section slugs; NULL means every section.
    sections: Mapped[str | None] = mapped_column(Text)
    frequency: Mapped[str] = mapped_column(String(16), default="daily")
    # "html" (multipart with HTML) or "text" (a text/plain message only).
    format: Mapped[str] = mapped_column(String(8), default="html", server_default="html")
    # Random, unguessable key that signed links carry instead of an id or address.
    token_key: Mapped[str] = mapped_column(String(32), unique=True)
    consent_at: Mapped[datetime | None]
    consent_source: Mapped[str | None] = mapped_column(String(200))
    # What was agreed to and where: the consent text's version and the page it was on.
    consent_version: Mapped[str | None] = mapped_column(String(40))
    consent_page: Mapped[str | None] = mapped_column(String(500))
    confirmed_at: Mapped[datetime | None]
    # When the double opt-in mail went out: `subscribers invite` sends it once per link life.
    invited_at: Mapped[datetime | None]
    unsubscribed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Edition(Base):
    __tablename__ = "edition"
    # The arbiter: two schedulers, a double click or a restart cannot make two editions
    # of a day; special editions (``number`` 1, 2 …) are numbered beside it.
    __table_args__ = (
        UniqueConstraint("schedule", "edition_date", "number", name="uq_edition_schedule_date"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    schedule: Mapped[str] = mapped_column(String(64))
    edition_date: Mapped[date] = mapped_column(Date)
    window_start: Mapped[datetime]
    window_end: Mapped[datetime]
    status: Mapped[EditionStatus] = mapped_column(
        stored_enum(EditionStatus, "edition_status"), default=EditionStatus.DRAFT
    )
    subject: Mapped[str] = mapped_column(Text, default="")
    preheader: Mapped[str] = mapped_column(Text, default="")
    intro: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    # When its send first started: who the edition is for. A reader who joined
    # later never gets it, however often it is resumed or retried (issue 28 §1).
    audience_at: Mapped[datetime | None]
    # Set by `digest pause`: senders stop claiming until `digest resume` clears it.
    paused_at: Mapped[datetime | None]
    # An editor shaped the draft: a rebuild re-renders it but keeps their selection.
    shaped_at: Mapped[datetime | None]
    # The subject an editor wrote (else the schedule's template makes it).
    custom_subject: Mapped[str | None] = mapped_column(Text)
    # The last article revision its variants took in (or that was ignored): a newer
    # one of its articles is a correction the send must not pass by.
    revision_mark: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Why it is paused, when not by ops: "correction".
    pause_reason: Mapped[str | None] = mapped_column(String(32))
    # 0: the schedule's edition of the day; 1, 2 …: a special edition an editor made
    # from chosen articles (issue 28 §6), for every reader of the list or of ``section``.
    number: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    section: Mapped[str | None] = mapped_column(String(100))

    items: Mapped[list[EditionItem]] = relationship(
        back_populates="edition", cascade="all, delete-orphan", order_by="EditionItem.position"
    )
    variants: Mapped[list[EditionVariant]] = relationship(
        back_populates="edition", cascade="all, delete-orphan"
    )

    @property
    def label(self) -> str:
        return edition_label(self.schedule, self.edition_date, self.number)

    @property
    def give_up_deadline(self) -> datetime:
        """MAIL-RULES 25: retries of an edition end before the next one is built
        (one window after this one's end), whatever DIGEST_GIVE_UP_AFTER says."""
        return self.window_end + (self.window_end - self.window_start) - GIVE_UP_MARGIN


class EditionItem(Base):
    __tablename__ = "edition_item"
    __table_args__ = (UniqueConstraint("edition_id", "article_id", name="uq_item_edition_article"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    edition_id: Mapped[int] = mapped_column(ForeignKey("edition.id", ondelete="CASCADE"))
    article_id: Mapped[int] = mapped_column(ForeignKey("article.id"))
    block: Mapped[Block] = mapped_column(stored_enum(Block, "item_block"))
    position: Mapped[int] = mapped_column(Integer)
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    # Also in the most-discussed ranking (shown once, in the day's list, marked).
    discussed: Mapped[bool] = mapped_column(Boolean, default=False)
    comments_in_window: Mapped[int] = mapped_column(Integer, default=0)
    comments_total: Mapped[int] = mapped_column(Integer, default=0)

    edition: Mapped[Edition] = relationship(back_populates="items")
    article: Mapped[Article] = relationship(lazy="joined")


class EditionVariant(Base):
    """One rendered, CSS-inlined form of an edition (per section choice), reused for
    every subscriber who shares that choice; only their links are spliced in."""

    __tablename__ = "edition_variant"
    __table_args__ = (
        UniqueConstraint("edition_id", "key", "version", name="uq_variant_edition_key_version"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    edition_id: Mapped[int] = mapped_column(ForeignKey("edition.id", ondelete="CASCADE"))
    # The subscriber's normalised section choice ("" = every section).
    key: Mapped[str] = mapped_column(Text, default="")
    html: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    preheader: Mapped[str] = mapped_column(Text, default="")
    articles: Mapped[int] = mapped_column(Integer, default=0)
    render_ms: Mapped[float] = mapped_column(default=0.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A rebuild renders version n + 1 and retires n: what was sent keeps pointing at n.
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    retired_at: Mapped[datetime | None]

    edition: Mapped[Edition] = relationship(back_populates="variants")


def _edition_date(context: Any) -> date:
    """A delivery made without its date takes its edition's (the enqueue names it)."""
    edition_id = context.get_current_parameters()["edition_id"]
    query = select(Edition.edition_date).where(Edition.id == edition_id)
    return context.connection.scalar(query)  # type: ignore[no-any-return]


# The rows a sender may still claim: what the claim index holds (issue 31 §4).
_WORK_LEFT = "status IN ('queued', 'deferred', 'sending')"
# The rows in a sender's hands: a few thousand of a million while it sends.
_IN_FLIGHT = "status = 'sending'"
# The few rows a report lists one by one: failures, retries, lines lost after DATA.
_TROUBLE = "status IN ('failed', 'deferred', 'bounced') OR ambiguous > 0"
# The sent rows by time: a report's last message and last minute's pace.
_SENT = "status = 'sent'"
# The queued rows held for their reader's hour (the waves): what is due is the rest.
_HELD = "status = 'queued' AND next_attempt_at IS NOT NULL"


def _partial(name: str, *columns: str, where: str) -> Index:
    """An index of the rows ``where`` holds, on both backends."""
    return Index(name, *columns, postgresql_where=text(where), sqlite_where=text(where))


class Delivery(Base):
    """One reader's copy of one edition. On PostgreSQL the table is partitioned
    by ``edition_date`` (a partition a day, ``store.partitions``): its primary key
    there is (id, edition_date), as PostgreSQL wants the partition key in every
    unique key; ``id`` alone is still unique (one sequence) and is the ORM's key."""

    __tablename__ = "delivery"
    # The arbiter again: a subscriber cannot get one edition twice from us. The
    # edition's date is its edition's, so the key is (edition, subscriber)'s.
    __table_args__ = (
        UniqueConstraint(
            "edition_id", "subscriber_id", "edition_date", name="uq_delivery_edition_subscriber"
        ),
        # Partial: a sent edition's rows leave it, so the claims of today's send
        # read an index of what is left to send, not of every row ever made.
        _partial("ix_delivery_work", "edition_id", "id", where=_WORK_LEFT),
        # Partial too: `digest status` finds an edition's failures without reading
        # its million sent rows.
        _partial("ix_delivery_trouble", "edition_id", "status", where=_TROUBLE),
        # Partial: each sender's heartbeat (every second) renews its claims, reads
        # which were unsubscribed since and who else sends; through the work index
        # each read the whole queue left (0.2 s a statement at a million queued).
        _partial("ix_delivery_claimed", "edition_id", "claimed_by", where=_IN_FLIGHT),
        Index("ix_delivery_message_id", "message_id"),
        # Partial, both: with the counts kept by status (``DeliveryCount``) they
        # answer the rest of `digest status` without reading the edition's rows.
        _partial("ix_delivery_sent", "edition_id", "sent_at", where=_SENT),
        _partial("ix_delivery_held", "edition_id", "next_attempt_at", where=_HELD),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    edition_id: Mapped[int] = mapped_column(ForeignKey("edition.id", ondelete="CASCADE"))
    # The edition's own date, copied: PostgreSQL's partition key (retention drops
    # a whole day), never set apart from ``edition_id``.
    edition_date: Mapped[date] = mapped_column(Date, default=_edition_date)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscriber.id", ondelete="CASCADE"))
    variant_id: Mapped[int | None] = mapped_column(ForeignKey("edition_variant.id"))
    status: Mapped[DeliveryStatus] = mapped_column(
        stored_enum(DeliveryStatus, "delivery_status"), default=DeliveryStatus.QUEUED
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    message_id: Mapped[str | None] = mapped_column(String(250))
    smtp_code: Mapped[int | None] = mapped_column(Integer)
    smtp_reply: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    claimed_until: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]
    # The give-up age counts from here (DIGEST_GIVE_UP_AFTER).
    first_attempt_at: Mapped[datetime | None]
    # Times the line dropped after the end of data (issue 25): it may have arrived twice.
    ambiguous: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class EditionChange(Base):
    """What an editor did to an edition, by whom and when."""

    __tablename__ = "edition_change"

    id: Mapped[int] = mapped_column(primary_key=True)
    edition_id: Mapped[int] = mapped_column(
        ForeignKey("edition.id", ondelete="CASCADE"), index=True
    )
    editor: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    action: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any] | None]


class EditionLink(Base):
    """A URL that was in an edition. Click tokens name a row here, so the redirect
    can only ever lead to a link the edition itself carried (no open redirect)."""

    __tablename__ = "edition_link"
    __table_args__ = (UniqueConstraint("edition_id", "url", name="uq_link_edition_url"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    edition_id: Mapped[int] = mapped_column(ForeignKey("edition.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(Text)


class Event(Base):
    __tablename__ = "event"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Opens and clicks name their edition; without individual tracking, nothing else.
    edition_id: Mapped[int | None] = mapped_column(
        ForeignKey("edition.id", ondelete="CASCADE"), index=True
    )
    # No foreign key: PostgreSQL cannot point one at a partitioned table's ``id``
    # alone. `digest db prune` and `forget` clear it when the delivery goes.
    delivery_id: Mapped[int | None] = mapped_column(Integer, index=True)
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscriber.id", ondelete="SET NULL"), index=True
    )
    kind: Mapped[EventKind] = mapped_column(stored_enum(EventKind, "event_kind"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    detail: Mapped[dict[str, Any] | None]


class EditionSummary(Base):
    """What an edition's deliveries said, kept for ever once `digest db prune`
    removed the rows (issue 31 §4): the counts by status, the failures grouped by
    reason as the report shows them, and messages accepted per minute."""

    __tablename__ = "edition_summary"

    edition_id: Mapped[int] = mapped_column(
        ForeignKey("edition.id", ondelete="CASCADE"), primary_key=True
    )
    counts: Mapped[dict[str, Any]]  # status → deliveries
    failures: Mapped[dict[str, Any]]  # track.reports.group_failures' answer
    minutes: Mapped[dict[str, Any]]  # "YYYY-MM-DDTHH:MM" (UTC) → messages accepted
    ambiguous: Mapped[int] = mapped_column(Integer, default=0)
    pruned_at: Mapped[datetime]


class Forgotten(Base):
    """What `digest subscribers forget` keeps: the SHA-256 of an erased address,
    so an import or a sign-up can refuse it without knowing who it was."""

    __tablename__ = "forgotten"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
