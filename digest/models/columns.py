"""Column types the tables share: aware UTC datetimes on every backend, enums by value."""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from sqlalchemy import (
    DateTime,
    Dialect,
    TypeDecorator,
)
from sqlalchemy import Enum as SAEnum


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every backend.

    SQLite keeps no offset, so values are stored there as naive UTC (in one
    format, so SQL comparisons stay correct); PostgreSQL gets timestamptz.
    A naive datetime is a bug upstream and is refused rather than guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return _as_stored(value, dialect.name)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _as_stored(value: datetime | None, dialect_name: str) -> datetime | None:
    """The one rule for stored times: aware only, in UTC, without offset on SQLite."""
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: store aware datetimes only")
    value = value.astimezone(UTC)
    return value.replace(tzinfo=None) if dialect_name == "sqlite" else value


def stored_utc(value: datetime | None, dialect_name: str) -> datetime | str | None:
    """What ``UTCDateTime`` writes, for statements that bypass SQLAlchemy's type
    processing on the hot path: on SQLite the exact string SQLAlchemy's DATETIME
    stores (so comparisons in SQL stay right), on PostgreSQL the aware value."""
    stored = _as_stored(value, dialect_name)
    if stored is not None and dialect_name == "sqlite":
        return stored.isoformat(" ", "microseconds")
    return stored


def stored_enum(cls: type[enum.StrEnum], name: str) -> SAEnum:
    # VARCHAR + CHECK rather than a native PostgreSQL ENUM: adding a state
    # later is then an ordinary migration on both backends.
    return SAEnum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda e: [m.value for m in e],
    )
