"""A site's rows as digest's records: each query's columns mapped to digest's
fields, checked once against what the query returned, and each value made what
ingest validates (a naive time read in the source's zone, bytes as UTF-8, a
0/1 flag as a boolean). Validation itself is ingest's: one set of rules for a
JSON line, a feed item and a database row."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from digest.errors import SourceError
from digest.sources.files import FIELDS, Query


@dataclass(frozen=True)
class Mapping:
    """digest's field → the column that holds it, for one query of one source."""

    source: str
    query: str
    columns: dict[str, str]
    required: frozenset[str]
    zone: ZoneInfo

    @classmethod
    def of(cls, source: str, name: str, query: Query, zone: ZoneInfo) -> Mapping:
        required, optional = FIELDS[name]
        columns = {field: field for field in (*required, *optional)}
        columns.update(query.columns)
        # A column the file names is required too: a typo must not read as "absent".
        return cls(source, name, columns, frozenset(required) | set(query.columns), zone)

    def check(self, returned: list[str]) -> None:
        """Stop the source with one line naming the query and the column."""
        have = set(returned)
        missing = [f for f in self.columns if f in self.required and self.columns[f] not in have]
        if missing:
            named = ", ".join(f"{self.columns[f]} (digest's {f})" for f in missing)
            raise SourceError(
                f"source {self.source}, query {self.query}: no column {named} in its result "
                f"(it returns {', '.join(returned) or 'nothing'})"
            )

    def record(self, row: dict[str, Any]) -> dict[str, Any]:
        """The row as ingest's record: only the fields whose column is there."""
        return {
            field: self._value(row[column])
            for field, column in self.columns.items()
            if column in row
        }

    def _value(self, value: Any) -> Any:
        if isinstance(value, datetime):
            aware = value if value.tzinfo else value.replace(tzinfo=self.zone)
            return aware.astimezone(UTC)
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value).decode("utf-8", errors="replace")
        if isinstance(value, Decimal):
            return int(value) if value == value.to_integral_value() else float(value)
        return value

    def where(self, row: dict[str, Any]) -> str:
        """How a row is named in a report: the source, the query, the site's id."""
        key = "article_id" if self.query in ("comments", "views") else "id"
        ident = row.get(self.columns.get(key, key))
        number = row.get(self.columns.get("number", "number")) if self.query == "comments" else None
        tail = f", comment {number}" if number is not None else ""
        return f"source {self.source}, {self.query} id {ident}{tail}"


def as_article(record: dict[str, Any]) -> dict[str, Any]:
    """An articles row as ingest reads a line: a withdrawn one in the short form
    (``{"id", "withdrawn": true}``: only a known article is touched), a flag of
    0/1 as a boolean, the watermark field dropped."""
    record.pop("updated_at", None)
    flag = record.get("withdrawn")
    if flag is not None and not isinstance(flag, bool):
        flag = record["withdrawn"] = str(flag).strip().lower() not in ("0", "false", "f", "")
    if flag:
        return {"id": record.get("id"), "withdrawn": True}
    return record


def bind(
    postgres: bool, zone: ZoneInfo, since: datetime, until: datetime, views_key: str = ""
) -> dict[str, Any]:
    """A query's parameters, its times as the site's columns hold them: aware on
    PostgreSQL, naive in the source's zone on MariaDB/MySQL (DATETIME has no zone)."""

    def local(at: datetime) -> datetime:
        return at if postgres else at.astimezone(zone).replace(tzinfo=None)

    return {"since": local(since), "until": local(until), "views_key": views_key}


def mark(record: dict[str, Any], field: str) -> datetime | None:
    """The row's watermark value, when it is a time (a bad one is ingest's to name)."""
    value = record.get(field)
    return value if isinstance(value, datetime) else None
