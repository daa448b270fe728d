"""Site databases as sources, from ``sources/*.toml`` (issue 29): like schedules,
one file each, the editable outside. A file names the environment variable that
holds the database URL (never the URL: it carries a password), a preset or its own
queries, and each query's columns mapped to digest's fields.

A query takes ``:since`` and ``:until`` (UTC, naive values are read in the source's
``timezone``) and returns rows ordered by its watermark field; ``views`` takes only
``:since`` (articles published since then have their counters refreshed)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from digest.config import ZoneName
from digest.errors import SourceError
from digest.headers import clean_text
from digest.sources.presets import preset_queries

QueryName = Literal["articles", "comments", "sections", "views"]

# digest's fields per query; the first ones are required (a row without them is
# reported and skipped), the rest optional (a missing optional column is not read).
FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "articles": (
        ("id", "url", "title", "published_at", "updated_at"),
        ("lead", "section", "views", "rating", "image_url", "withdrawn"),
    ),
    "comments": (("article_id", "number", "posted_at"), ("author", "body", "votes")),
    "sections": (("title",), ("position",)),
    "views": (("article_id", "views"), ()),
}
# The field whose largest value read is kept as the query's watermark.
WATERMARK = {"articles": "updated_at", "comments": "posted_at"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Query(_Strict):
    sql: str = Field(min_length=1)
    # digest's field → the column the query returns for it; unnamed fields are read
    # from a column of their own name.
    columns: dict[str, str] = Field(default_factory=dict)


class WordPressSpec(_Strict):
    table_prefix: str = Field(default="wp_", pattern=r"^[A-Za-z0-9_]{0,20}$")
    # WordPress keeps no view counter; the usual plugins keep one in post meta.
    views_meta_key: str = Field(default="post_views_count", max_length=255)


class GenericSpec(_Strict):
    """The generic preset reads three tables (or views) with digest's own column
    names; see docs/SOURCES.md for each column."""

    articles: str = Field(default="digest_articles", pattern=r"^[A-Za-z0-9_.]{1,64}$")
    comments: str = Field(default="digest_comments", pattern=r"^[A-Za-z0-9_.]{1,64}$")
    # Optional: without it a section is known once an article names it.
    sections: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.]{1,64}$")


class Source(_Strict):
    name: str
    kind: Literal["sql"] = "sql"
    url_env: str = Field(pattern=r"^[A-Z][A-Z0-9_]{0,63}$")
    preset: Literal["wordpress", "generic"] | None = None
    # Minutes between syncs inside `digest scheduler`; 0: by hand and before builds.
    sync_every: int = Field(default=15, ge=0, le=24 * 60)
    # Seconds a statement may run on the site before its database cancels it.
    timeout: float = Field(default=10.0, gt=0, le=600)
    batch: int = Field(default=500, ge=10, le=10_000)
    # Each sync reads again this far before the watermark: a row committed late
    # with an earlier time is not missed (re-reading is idempotent).
    overlap_minutes: int = Field(default=10, ge=0, le=7 * 24 * 60)
    # The first sync reads this far back; `views` refreshes articles this recent.
    first_days: int = Field(default=30, ge=1, le=3650)
    views_days: int = Field(default=7, ge=1, le=365)
    timezone: ZoneName = "UTC"
    wordpress: WordPressSpec = WordPressSpec()
    generic: GenericSpec = GenericSpec()
    queries: dict[QueryName, Query] = Field(default_factory=dict)

    @field_validator("queries")
    @classmethod
    def _columns(cls, queries: dict[str, Query]) -> dict[str, Query]:
        for name, query in queries.items():
            known = set(sum(FIELDS[name], ()))
            unknown = set(query.columns) - known
            if unknown:
                raise ValueError(
                    f"{name}: no field {', '.join(sorted(unknown))} "
                    f"(known: {', '.join(sorted(known))})"
                )
        return queries

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def all_queries(self) -> dict[str, Query]:
        """The preset's queries, with the file's own in place of any it names."""
        queries = {name: Query(sql=sql) for name, sql in preset_queries(self.preset, self).items()}
        for name, query in self.queries.items():
            queries[name] = query
        return queries

    def url(self) -> str:
        value = os.environ.get(self.url_env, "").strip()
        if not value:
            raise SourceError(f"source {self.name}: {self.url_env} is not set (the database URL)")
        return value


def load_sources(directory: Path) -> dict[str, Source]:
    """Every ``directory/*.toml``; a bad file stops with its name and the reason."""
    found = {}
    for path in sorted(directory.glob("*.toml")) if directory.is_dir() else []:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SourceError(f"{path}: not valid TOML: {exc}") from None
        data.setdefault("name", path.stem)
        try:
            source = Source.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: "
                f"{str(e['msg']).removeprefix('Value error, ')}"
                for e in exc.errors()
            )
            raise SourceError(f"{path}: {problems}") from None
        if "articles" not in source.all_queries():
            raise SourceError(f"{path}: no articles query (name a preset or [queries.articles])")
        found[source.name] = source
    return found


def pick(sources: dict[str, Source], name: str | None) -> list[Source]:
    """All sources, or the one named (``name`` comes from a person: never a path)."""
    if name is None:
        return list(sources.values())
    if name not in sources:
        listed = ", ".join(sorted(sources)) or "none"
        raise SourceError(f"no source {clean_text(name, 60)!r} (known: {listed})")
    return [sources[name]]
