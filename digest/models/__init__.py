"""The data model: plain values (``kinds``), column types (``columns``) and the
tables (``tables``, SQLAlchemy 2 typed mappings). Queries live in ``store``."""

from __future__ import annotations

from digest.models.columns import UTCDateTime, stored_utc
from digest.models.kinds import (
    FINAL_DELIVERY_STATES,
    Block,
    Candidate,
    Clock,
    DeliveryStatus,
    Discussion,
    EditionStatus,
    EventKind,
    SubscriberStatus,
    utcnow,
)
from digest.models.tables import (
    Article,
    ArticleRevision,
    Base,
    Comment,
    Delivery,
    DeskSession,
    Edition,
    EditionChange,
    EditionItem,
    EditionLink,
    EditionVariant,
    Event,
    Forgotten,
    LoginFailure,
    Section,
    SignupAttempt,
    Subscriber,
)

__all__ = [
    "FINAL_DELIVERY_STATES",
    "Article",
    "ArticleRevision",
    "Base",
    "Block",
    "Candidate",
    "Clock",
    "Comment",
    "Delivery",
    "DeliveryStatus",
    "DeskSession",
    "Discussion",
    "Edition",
    "EditionChange",
    "EditionItem",
    "EditionLink",
    "EditionStatus",
    "EditionVariant",
    "Event",
    "EventKind",
    "Forgotten",
    "LoginFailure",
    "Section",
    "SignupAttempt",
    "Subscriber",
    "SubscriberStatus",
    "UTCDateTime",
    "stored_utc",
    "utcnow",
]
