"""The tables the reports read, described for SQLAlchemy Core alone: the columns
a report asks for, with the types the mapped tables give them.

`digest status` is a command a person waits for, and on a machine whose cores
the workers hold, loading the ORM and building every mapped class was a third
of it (issue 31: 0.93–1.03 s at a million deliveries while sending, its queries
0.20 s of that). The report's queries (``store.reading``) are written against
these lightweight tables, which need only SQLAlchemy's core; the desk and the
API run the same queries through their ORM sessions.

They describe, never define: the schema is ``models.tables``' and the
migrations'. ``tests/unit/test_light_tables.py`` holds each column here to the
mapped table's name and type.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Date, Integer, String, Text, column, select, table

from digest.kinds import DeliveryStatus, EditionStatus, EventKind
from digest.models.columns import UTCDateTime, stored_enum

edition = table(
    "edition",
    column("id", Integer),
    column("schedule", String),
    column("edition_date", Date),
    column("number", Integer),
    column("status", stored_enum(EditionStatus, "edition_status")),
    column("subject", Text),
    column("window_start", UTCDateTime()),
    column("window_end", UTCDateTime()),
    column("created_at", UTCDateTime()),
    column("sent_at", UTCDateTime()),
    column("paused_at", UTCDateTime()),
    column("pause_reason", String),
    column("revision_mark", Integer),
)

delivery = table(
    "delivery",
    column("id", Integer),
    column("edition_id", Integer),
    column("edition_date", Date),
    column("subscriber_id", Integer),
    column("status", stored_enum(DeliveryStatus, "delivery_status")),
    column("next_attempt_at", UTCDateTime()),
    column("sent_at", UTCDateTime()),
    column("smtp_code", Integer),
    column("smtp_reply", Text),
    column("ambiguous", Integer),
)

subscriber = table("subscriber", column("id", Integer), column("email", String))

delivery_count = table(
    "delivery_count",
    column("edition_id", Integer),
    column("status", String),
    column("shard", Integer),
    column("n", BigInteger),
)

edition_summary = table(
    "edition_summary",
    column("edition_id", Integer),
    column("counts", JSON),
    column("failures", JSON),
    column("minutes", JSON),
    column("ambiguous", Integer),
)

edition_variant = table(
    "edition_variant",
    column("edition_id", Integer),
    column("retired_at", UTCDateTime()),
)

edition_item = table("edition_item", column("edition_id", Integer), column("article_id", Integer))

article = table("article", column("id", Integer), column("title", Text))

article_revision = table(
    "article_revision",
    column("id", Integer),
    column("article_id", Integer),
    column("at", UTCDateTime()),
    column("kind", String),
    column("before", JSON),
    column("after", JSON),
)

event = table(
    "event",
    column("edition_id", Integer),
    column("subscriber_id", Integer),
    column("kind", stored_enum(EventKind, "event_kind")),
)

domain_pause = table(
    "domain_pause",
    column("domain", String),
    column("reason", String),
    column("since", UTCDateTime()),
    column("until", UTCDateTime()),
)

TABLES = (
    edition,
    delivery,
    subscriber,
    delivery_count,
    edition_summary,
    edition_variant,
    edition_item,
    article,
    article_revision,
    event,
    domain_pause,
)


def edition_day(edition_id: int) -> Any:
    """The edition's date, as a sub-select: named beside the edition's id, it lets
    PostgreSQL read only the partition that holds the edition's deliveries."""
    # Never correlated: inside a query of editions it is still this edition's date.
    return (
        select(edition.c.edition_date)
        .where(edition.c.id == edition_id)
        .correlate(None)
        .scalar_subquery()
    )


def of_edition(edition_id: int) -> tuple[Any, Any]:
    """The edition's deliveries (of the table above), its date named too."""
    return delivery.c.edition_id == edition_id, delivery.c.edition_date == edition_day(edition_id)
