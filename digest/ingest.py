"""Ingest: articles and their comments from JSON Lines and RSS/Atom feeds.

A bad record is reported with where it came from (file and line, or feed
entry) and why; every other record is loaded. Re-ingesting an article
updates it and adds only the comments it did not have (by number), so
counts never double.
"""

from __future__ import annotations

import calendar
import json
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import feedparser
from lxml import html as lxml_html
from lxml.etree import ParserError
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from digest import store
from digest.db import DatabaseError, Factory, Session
from digest.headers import clean_text
from digest.models import Article, Clock, utcnow

log = logging.getLogger(__name__)

MAX_TITLE = 1000
MAX_LEAD = 20_000
MAX_COMMENT = 50_000
MAX_LINE = 50 * 1024 * 1024  # one article with its comments; far over any real one
FEED_SUFFIXES = (".xml", ".rss", ".atom", ".rdf")


def _one_line(value: Any) -> Any:
    # Titles, sections, authors are one line: CR/LF and controls become spaces.
    # A value far over any limit is left for the length check to reject.
    if isinstance(value, str) and len(value) <= 4 * MAX_TITLE:
        return clean_text(value, limit=4 * MAX_TITLE)
    return value


def _text(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "").strip()
    return value


def _id(value: Any) -> Any:
    return (
        str(value).strip()
        if isinstance(value, int | str) and not isinstance(value, bool)
        else value
    )


OneLine = Annotated[str, BeforeValidator(_one_line)]
Text = Annotated[str, BeforeValidator(_text)]


def _http_url(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in value):
        raise ValueError("must be an absolute http(s) URL")
    if len(value) > 2000:
        raise ValueError("longer than 2000 characters")
    return value


class CommentIn(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    number: int = Field(ge=1)
    author: OneLine | None = Field(default=None, max_length=200)
    posted_at: AwareDatetime
    body: Text = Field(default="", max_length=MAX_COMMENT)
    votes: int = 0


class ArticleIn(BaseModel):
    """One article line. Only id, url, title and published_at are required."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    id: Annotated[str, BeforeValidator(_id)] = Field(min_length=1, max_length=200)
    url: str
    title: OneLine = Field(min_length=1, max_length=MAX_TITLE)
    published_at: AwareDatetime
    lead: Text | None = Field(default=None, max_length=MAX_LEAD)
    section: OneLine | None = Field(default=None, max_length=100)
    views: int = Field(default=0, ge=0)
    rating: int = 0
    image_url: str | None = None
    image_caption: OneLine | None = Field(default=None, max_length=500)
    source: OneLine | None = Field(default=None, max_length=500)
    comments: list[Any] = Field(default_factory=list)  # each one is validated on its own

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        checked = _http_url(value)
        if checked is None:
            raise ValueError("is required")
        return checked

    @field_validator("image_url")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        return _http_url(value)


@dataclass
class Problem:
    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass
class IngestReport:
    loaded: int = 0
    updated: int = 0
    rejected: int = 0
    comments_added: int = 0
    comments_rejected: int = 0
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def merge(self, other: IngestReport) -> None:
        self.loaded += other.loaded
        self.updated += other.updated
        self.rejected += other.rejected
        self.comments_added += other.comments_added
        self.comments_rejected += other.comments_rejected
        self.problems += other.problems
        self.warnings += other.warnings


def describe(exc: ValidationError) -> str:
    """A validation error in a line a person can read: ``title: too long (…)``."""
    parts = []
    for error in exc.errors():
        loc = ".".join(str(p) for p in error["loc"]) or "record"
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "string_too_long":
            given = error.get("input")
            size = f"{len(given)} characters; " if isinstance(given, str) else ""
            message = f"too long ({size}at most {error['ctx']['max_length']})"
        elif error["type"] == "missing":
            message = "is required"
        parts.append(f"{loc}: {message}")
    return "; ".join(parts)


class Ingester:
    """Loads validated records into the store, one savepoint per record."""

    def __init__(self, factory: Factory, commit_every: int = 200, clock: Clock = utcnow) -> None:
        self.factory = factory
        self.clock = clock
        self.commit_every = commit_every

    def load(self, records: Iterable[tuple[str, dict[str, Any] | Problem]]) -> IngestReport:
        """``records``: (where, raw dict or a Problem found while reading)."""
        report = IngestReport()
        with self.factory() as session:
            pending = 0
            for where, raw in records:
                if isinstance(raw, Problem):
                    report.rejected += 1
                    report.problems.append(raw)
                    continue
                self._load_one(session, where, raw, report)
                pending += 1
                if pending >= self.commit_every:
                    session.commit()
                    pending = 0
            session.commit()
        return report

    def _load_one(
        self, session: Session, where: str, raw: dict[str, Any], report: IngestReport
    ) -> None:
        try:
            article = ArticleIn.model_validate(raw)
        except ValidationError as exc:
            report.rejected += 1
            report.problems.append(Problem(where, describe(exc)))
            return
        except RecursionError:
            report.rejected += 1
            report.problems.append(Problem(where, "nested too deeply"))
            return
        comments = []
        for index, item in enumerate(article.comments):
            try:
                comments.append(CommentIn.model_validate(item))
            except ValidationError as exc:
                report.comments_rejected += 1
                number = item.get("number", index + 1) if isinstance(item, dict) else index + 1
                report.warnings.append(
                    Problem(f"{where} (id {article.id}, comment {number})", describe(exc))
                )
        try:
            with session.begin_nested():
                created, added = _store(session, article, comments, self.clock())
        except DatabaseError as exc:
            report.rejected += 1
            report.problems.append(Problem(where, f"id {article.id}: database refused it: {exc}"))
            return
        report.loaded += created
        report.updated += not created
        report.comments_added += added


def _store(
    session: Session, data: ArticleIn, comments: list[CommentIn], now: datetime
) -> tuple[bool, int]:
    section_id = None
    if data.section:
        section_id = store.section_id(session, _slug(data.section), data.section)
    fields = {
        "url": data.url,
        "title": data.title,
        "lead": data.lead,
        "image_url": data.image_url,
        "image_caption": data.image_caption,
        "section_id": section_id,
        "source": data.source,
        "published_at": data.published_at,
        "views": data.views,
        "rating": data.rating,
    }
    article = store.article_by_external_id(session, data.id)
    created = article is None
    if article is None:
        article = Article(external_id=data.id, **fields)
        session.add(article)
        session.flush()
    else:
        for key, value in fields.items():
            setattr(article, key, value)
        article.updated_at = now
    existing = store.comment_numbers(session, article.id) if not created else {}
    new_rows, changed = [], []
    for c in {c.number: c for c in comments}.values():
        if c.number in existing:
            cid, votes = existing[c.number]
            if votes != c.votes:
                changed.append({"id": cid, "votes": c.votes})
            continue
        new_rows.append(
            {
                "article_id": article.id,
                "number": c.number,
                "author": c.author,
                "posted_at": c.posted_at,
                "body": c.body,
                "votes": c.votes,
            }
        )
    store.add_comments(session, new_rows, changed)
    return created, len(new_rows)


def _slug(section: str) -> str:
    return re.sub(r"[^\w]+", "-", section.lower()).strip("-") or "other"


# -- readers --------------------------------------------------------------------


def read_jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any] | Problem]]:
    """One article per line; blank lines are skipped; a bad line is a Problem.
    Lines are read with a bound: a longer one is skipped in chunks, never held."""
    with path.open("rb") as handle:
        number = 0
        while line := handle.readline(MAX_LINE + 1):
            number += 1
            where = f"{path}:{number}"
            if len(line) > MAX_LINE:
                while line and not line.endswith(b"\n"):
                    line = handle.readline(MAX_LINE)
                yield where, Problem(where, f"the line is over {MAX_LINE // 2**20} MB")
                continue
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                yield where, Problem(where, f"not valid JSON: {exc}")
                continue
            except RecursionError:
                yield where, Problem(where, "JSON nested too deeply")
                continue
            if not isinstance(value, dict):
                yield where, Problem(where, "a line must be a JSON object")
                continue
            yield where, value


def read_feed(source: str) -> Iterator[tuple[str, dict[str, Any] | Problem]]:
    """RSS 2.0 / Atom from a file or URL (feedparser), as article records."""
    parsed = feedparser.parse(source)
    if parsed.bozo and not parsed.entries:
        yield source, Problem(source, f"not a readable feed: {parsed.get('bozo_exception')}")
        return
    feed_title = parsed.feed.get("title")
    for index, entry in enumerate(parsed.entries, start=1):
        where = f"{source} entry {index}"
        stamp = entry.get("published_parsed") or entry.get("updated_parsed")
        record: dict[str, Any] = {
            "id": entry.get("id") or entry.get("link"),
            "url": entry.get("link"),
            "title": _strip_html(entry.get("title", "")),
            "lead": _strip_html(entry.get("summary", "")) or None,
            "published_at": (
                datetime.fromtimestamp(calendar.timegm(stamp), tz=UTC) if stamp else None
            ),
            "source": feed_title,
        }
        tags = entry.get("tags") or []
        if tags and tags[0].get("term"):
            record["section"] = tags[0]["term"]
        image = _entry_image(entry)
        if image:
            record["image_url"] = image
        yield where, record


def _strip_html(value: str) -> str:
    if "<" not in value and "&" not in value:
        return value
    try:
        return str(lxml_html.fromstring(value).text_content())
    except (ParserError, ValueError):
        return value


def _entry_image(entry: Any) -> str | None:
    for link in entry.get("enclosures", []) or []:
        if str(link.get("type", "")).startswith("image/") and link.get("href"):
            return str(link["href"])
    for media in entry.get("media_content", []) or []:
        if str(media.get("type", "image/")).startswith("image/") and media.get("url"):
            return str(media["url"])
    return None


def is_feed(source: str) -> bool:
    if source.startswith(("http://", "https://")):
        return True
    path = Path(source)
    if path.suffix.lower() in FEED_SUFFIXES:
        return True
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        return False
    with path.open("rb") as handle:
        head = handle.read(512).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"<")


def read_source(source: str) -> Iterator[tuple[str, dict[str, Any] | Problem]]:
    if not source.startswith(("http://", "https://")) and not Path(source).is_file():
        yield source, Problem(source, "no such file")
        return
    yield from (read_feed(source) if is_feed(source) else read_jsonl(Path(source)))
