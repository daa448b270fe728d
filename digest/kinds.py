"""The model's plain values: statuses and kinds, the clock, and the rows selection
reads (no SQLAlchemy here: every room may use them).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime


def utcnow() -> datetime:
    """The real clock. Entry points pass it down as a ``Clock``; below them the
    product reads time only through the clock it was handed, so a test can fix it."""
    return datetime.now(UTC)


Clock = Callable[[], datetime]

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


def edition_label(schedule: str, day: date, number: int = 0) -> str:
    """How people name an edition: ``daily/2026-11-25``, a special one
    ``daily/2026-11-25/special-1`` (what `digest status` and the desk take back)."""
    label = f"{schedule}/{day.isoformat()}"
    return f"{label}/special-{number}" if number else label


class SubscriberStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    # No click for DIGEST_SUNSET_AFTER months and none after the re-engagement
    # letter: kept, not mailed, back by the letter's link or an admin (issue 28 §5).
    PAUSED = "paused"


class EditionStatus(enum.StrEnum):
    DRAFT = "draft"
    APPROVED = "approved"
    SENDING = "sending"
    SENT = "sent"
    CANCELLED = "cancelled"
    # The scheduler was down past the grace time: not sent (stale news is worse
    # than none) unless ops run it by hand.
    MISSED = "missed"


class DeliveryStatus(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    BOUNCED = "bounced"
    SUPPRESSED = "suppressed"

    @property
    def final(self) -> bool:
        return self in FINAL_DELIVERY_STATES


FINAL_DELIVERY_STATES = frozenset(
    {DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.BOUNCED, DeliveryStatus.SUPPRESSED}
)


class Block(enum.StrEnum):
    LEAD = "lead"
    DAY = "day"
    DISCUSSED = "discussed"


class EventKind(enum.StrEnum):
    OPEN = "open"
    CLICK = "click"
    UNSUBSCRIBE = "unsubscribe"
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    CONFIRM = "confirm"
    RESUBSCRIBE = "resubscribe"  # back after an unsubscribe: undo, confirmed again, an admin
    ASKED_AGAIN = "asked_again"  # a reader who left asked the box again (the request's page)
    REENGAGE = "reengage"  # the sunset rule's letter went: «still reading?»
    KEEP = "keep"  # the reader answered it: keep sending (back from paused too)
    SUNSET = "sunset"  # no answer within the grace days: paused


@dataclass(frozen=True)
class Audience:
    """Who an edition is for: active readers of ``frequency`` (None: every
    frequency, as a special edition goes), of ``section`` (None: whatever their
    sections), subscribed by ``joined_by`` (None: now)."""

    frequency: str | None = None
    section: str | None = None
    joined_by: datetime | None = None


@dataclass(frozen=True)
class Candidate:
    """An article as selection sees it."""

    id: int
    external_id: str
    published_at: datetime
    views: int = 0
    has_image: bool = False
    section: str | None = None


@dataclass(frozen=True)
class Discussion:
    """Comments on one article inside the window, per commenter."""

    article: Candidate
    per_commenter: Mapping[str, int]
    comments_total: int

    @property
    def comments_in_window(self) -> int:
        return sum(self.per_commenter.values())


# What the desk shows for each state (issue 28 §4: every word a person reads is Russian).
STATE_WORDS: dict[str, str] = {
    # editions
    "draft": "черновик",
    "approved": "утверждён",
    "sending": "отправляется",
    "sent": "отправлен",
    "cancelled": "отменён",
    "missed": "пропущен",
    # deliveries
    "queued": "в очереди",
    "deferred": "отложено",
    "failed": "не доставлено",
    "bounced": "возврат",
    "suppressed": "не отправлялось",
    # readers
    "pending": "ждёт подтверждения",
    "active": "подписан",
    "unsubscribed": "отписан",
    "complained": "пожаловался",
    "paused": "на паузе (не читал)",
    # what happened to a reader (their page's evidence)
    "bounce": "возврат",
    "complaint": "жалоба",
    # how often a reader gets it
    "daily": "каждый день",
    "weekly": "раз в неделю",
}


def state_word(state: object) -> str:
    """«черновик» for ``draft``; a state without a word is shown as it is."""
    return STATE_WORDS.get(str(state), str(state))


# The HTTP API's scopes (issue 30), what each lets a token do: here, not in
# team.apikeys, so `digest tokens --help` needs no database library.
API_SCOPES = {
    "subscribers:read": "a reader's record by address",
    "subscribers:write": "subscribe (double opt-in), change choices, unsubscribe, forget",
    "subscribers:confirm": "subscribe as confirmed, with the site's record of consent",
    "editions:read": "editions, their counts, reasons, ETA and previews",
    "editions:send": "approve, start, pause, resume and cancel a send",
}
