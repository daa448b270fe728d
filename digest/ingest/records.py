"""What ingest accepts: an article line and its comments, validated field by field
(pydantic), and the problem a bad one is reported as (where, why)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from digest.headers import clean_text

MAX_TITLE = 1000
MAX_LEAD = 20_000
MAX_COMMENT = 50_000
# One article with its comments. A line is parsed whole, and tiny comments cost
# ~30 bytes of memory a byte of JSON: 16 MB (20 000 comments of 800 bytes) keeps a
# hostile line under a few hundred MB; a longer one is skipped in chunks, never held.
MAX_LINE = 16 * 1024 * 1024
MAX_COMMENTS = 20_000  # a line's comments past this are dropped, said once (issue 24)
MAX_FEED = 20 * 1024 * 1024  # a feed's bytes once uncompressed


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


def _has_control(text: str) -> bool:
    # An id names the article in the site's URLs and in our database: a NUL (which
    # PostgreSQL refuses in text, failing the whole chunk) or another control
    # character is never part of one.
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def valid_id(value: Any) -> str | None:
    """The site's id as ingest keeps it, or None where a line's id can be none."""
    if not isinstance(value, int | str) or isinstance(value, bool):
        return None
    text = str(value).strip()
    return None if not text or _has_control(text) else text


def _id(value: Any) -> Any:
    if not isinstance(value, int | str) or isinstance(value, bool):
        return value  # pydantic says what type it wanted
    text = str(value).strip()
    if _has_control(text):
        raise ValueError("must not hold a control character")
    return text


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
    # True: the site took it down; False: it is back. Absent: as it was (an old
    # export read again must not put back what was withdrawn since).
    withdrawn: bool | None = None

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


class WithdrawalIn(BaseModel):
    """The short form of a withdrawal: ``{"id": "…", "withdrawn": true}``."""

    model_config = ConfigDict(extra="ignore")

    id: Annotated[str, BeforeValidator(_id)] = Field(min_length=1, max_length=200)
    withdrawn: bool


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
    # Comments of articles digest does not have (older than a source's first read).
    comments_orphaned: int = 0
    # Of the updated: how many had their title, lead or URL changed; how many were
    # withdrawn (or put back).
    corrected: int = 0
    withdrawn: int = 0
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def merge(self, other: IngestReport) -> None:
        for name in (f.name for f in fields(self)):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def reject(self, where: str, reason: str) -> None:
        self.rejected += 1
        self.problems.append(Problem(where, reason))


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
