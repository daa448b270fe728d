"""What the API takes and gives (issue 30), as pydantic models: the OpenAPI
document is made from these, and every request is checked against them before a
service sees it. Text from outside is one line of printable Unicode of a bounded
length (``Printable``): no NUL, no control characters, no lone surrogates, so nothing
a caller sends can make the database refuse it with a 500."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, IPvAnyAddress


def _printable(value: str) -> str:
    if not value.isprintable():
        raise ValueError("only printable characters (no NUL, no control characters)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("not valid Unicode (a lone surrogate)") from None
    return value


Printable = AfterValidator(_printable)
Name = Annotated[str, Field(max_length=64), Printable]
Page = Annotated[str, Field(max_length=500), Printable]


Email = Annotated[
    str,
    Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$", examples=["ivan@mail.ru"]),
    AfterValidator(_printable),
]
# A section's slug as the site names it (audience.rows.SECTION): «армия», «опк».
Slug = Annotated[str, Field(pattern=r"^[a-zа-яё0-9-]{1,50}$", examples=["армия"])]
Format = Literal["html", "text"]
Frequency = Literal["daily", "weekly"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConsentIn(Strict):
    """The site's own record of the reader's consent (152-FZ, GDPR): kept as is."""

    version: Annotated[str, Field(min_length=1, max_length=40), Printable] = Field(
        description="The version of the consent text the reader saw"
    )
    at: AwareDatetime = Field(description="When the reader agreed (with its offset)")
    ip: IPvAnyAddress | None = Field(default=None, description="From which address")
    page: Annotated[str, Field(min_length=1, max_length=500), Printable] = Field(
        description="On which page"
    )


class SubscribeIn(Strict):
    email: Email
    sections: list[Slug] = Field(default_factory=list, max_length=100)
    list_key: Name | None = Field(
        default=None, alias="list", description="The list (default: the first)"
    )
    page: Page | None = Field(default=None, description="Where the reader asked")
    confirmed: bool = Field(
        default=False,
        description="The site has checked the reader (a logged-in account): active now, no "
        "confirmation mail. Needs the subscribers:confirm scope and `consent`.",
    )
    consent: ConsentIn | None = None
    format: Format | None = None
    timezone: Name | None = None
    frequency: Frequency | None = None


class ChangeIn(Strict):
    """New choices; what is left out stays as it is. No sections (or all) means every
    section, today's and future ones."""

    sections: list[Slug] | None = Field(default=None, max_length=100)
    format: Format | None = None
    timezone: Name | None = Field(default=None, description="An IANA zone; empty: the site's")
    frequency: Frequency | None = None


class Accepted(BaseModel):
    """Taken: the same answer whatever the address's state (nobody learns who reads)."""

    status: Literal["accepted"] = "accepted"
    detail: str


class SubscriberOut(BaseModel):
    email: str
    name: str | None
    status: str
    sections: list[str] | None = Field(description="None: every section")
    timezone: str | None
    locale: str
    frequency: str
    format: str
    consent_source: str | None
    consent_version: str | None
    consent_page: str | None
    consent_at: datetime | None
    confirmed_at: datetime | None
    invited_at: datetime | None
    unsubscribed_at: datetime | None
    created_at: datetime | None


class EditionOut(BaseModel):
    """One edition's figures: what `digest status --json` says."""

    id: int
    label: str
    status: str
    subject: str
    window_start: datetime
    window_end: datetime
    created_at: datetime
    sent_at: datetime | None
    variants: int
    counts: dict[str, int]
    total: int
    pending: int
    rate: float | None = Field(description="Messages a second over the last minute")
    eta_seconds: int | None
    failures: list[dict[str, Any]]
    more_failures: int
    more_failures_count: int
    paused: bool
    pause_reason: str | None
    next_retry: datetime | None
    next_wave: datetime | None
    due_now: int | None
    engagement: dict[str, int]
    corrections: list[dict[str, Any]]
    ambiguous: int
    holds: list[dict[str, Any]]
    held_for: float | None


class EditionsPage(BaseModel):
    editions: list[EditionOut]
    next_before: int | None = Field(description="Pass as `before` for the next page; None: no more")


class Header(BaseModel):
    name: str
    value: str


class LetterOut(BaseModel):
    subject: str
    recipient: str
    headers: list[Header]
    html: str
    text: str


class TokenOut(BaseModel):
    name: str
    scopes: list[str]


class EditionQuery(Strict):
    schedule: Name | None = None
    status: Literal["draft", "approved", "sending", "sent", "cancelled", "missed"] | None = None
    since: date | None = None
    until: date | None = None
    limit: int = Field(default=20, ge=1, le=100)
    before: int | None = Field(default=None, ge=1, le=2**31 - 1)
