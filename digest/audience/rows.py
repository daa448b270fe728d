"""A subscriber as a file, a form or a command gives it: the address, name,
sections, zone and consent, checked (the one spelling we store).
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, TextIO

from email_validator import EmailNotValidError, validate_email

from digest.config import zone_name
from digest.errors import DigestError
from digest.headers import clean_text
from digest.models import Subscriber, SubscriberStatus

NAME_LIMIT = 200

# A reader who left or whose mail came back: never made active again by an import.
CLOSED = (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED)

SECTION = re.compile(r"^[a-zа-яё0-9-]{1,50}$")

FORMATS = ("html", "text")


class BadSubscriber(DigestError):
    """A subscriber record that cannot be taken as it is."""


# The common address, plain ASCII (RFC 5322 dot-atom, LDH labels), is a subset
# of what email-validator takes: such a local part is checked here and its domain
# by the validator once per domain (a million-line import has a few thousand
# domains; the validator's IDNA work is 90 µs an address). Anything else, and
# every domain, still meets the validator itself.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@((?:[A-Za-z0-9-]+\.)+[A-Za-z0-9-]+)")
EMAIL_LIMIT = 254  # RFC 5321's path less its angle brackets, as the validator counts


@lru_cache(maxsize=16384)
def _domain(domain: str) -> str | EmailNotValidError:
    try:
        return str(validate_email(f"a@{domain}", check_deliverability=False).domain)
    except EmailNotValidError as exc:
        return exc


def _validated(text: str) -> str:
    plain = _PLAIN.fullmatch(text) if len(text) <= EMAIL_LIMIT else None
    if plain is None:
        return str(validate_email(text, check_deliverability=False).normalized)
    domain = _domain(plain.group(1))
    if isinstance(domain, EmailNotValidError):
        raise domain
    return f"{text[: plain.start(1) - 1]}@{domain}"


def normalise_email(value: str) -> str:
    """The one spelling we store: validated, lowercased, canonical domain."""
    text = (value or "").strip()
    if not text:
        raise BadSubscriber("email: is empty")
    try:
        normalized = _validated(text).lower()
    except EmailNotValidError as exc:
        raise BadSubscriber(f"email: {text[:80]!r} is not valid: {exc}") from None
    local = normalized.rpartition("@")[0]
    if len(local.encode("utf-8")) > LOCAL_PART_LIMIT:
        raise BadSubscriber(
            f"email: {text[:80]!r} has a local part of {len(local.encode())} octets; "
            f"RFC 5321 §4.5.3.1.1 allows {LOCAL_PART_LIMIT}"
        )
    return normalized


LOCAL_PART_LIMIT = 64

SPREADSHEET_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def write_export(rows: list[dict[str, Any]], handle: TextIO) -> None:
    """``export``'s rows as CSV: every column any row has, details as JSON, and no
    cell a spreadsheet would run as a formula."""
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in row if k not in keys)
    writer = csv.DictWriter(handle, fieldnames=keys)
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                k: spreadsheet_safe(json.dumps(v, ensure_ascii=False) if isinstance(v, dict) else v)
                for k, v in row.items()
            }
        )


def spreadsheet_safe(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: one that starts like a formula
    (``=HYPERLINK(…)`` in a name) gets a leading apostrophe (OWASP's advice)."""
    if isinstance(value, str) and value.startswith(SPREADSHEET_TRIGGERS):
        return "'" + value
    return value


def address_hash(email: str) -> str:
    """What `forget` keeps of an address: enough to refuse it, nothing to read."""
    return hashlib.sha256(email.encode("utf-8")).hexdigest()


def normalise_sections(value: str | None) -> str | None:
    """``"Флот, армия"`` → ``"армия,флот"``; empty means every section."""
    parts = sorted({p.strip().lower() for p in re.split(r"[,;\s]+", value or "") if p.strip()})
    for part in parts:
        if not SECTION.match(part):
            raise BadSubscriber(f"sections: {part[:60]!r} is not a section slug")
    return ",".join(parts) or None


@dataclass
class Row:
    """One subscriber as a file or a command gives it, checked."""

    email: str
    name: str | None = None
    sections: str | None = None
    timezone: str | None = None
    locale: str = "ru"
    consent_source: str | None = None
    consent_at: datetime | None = None
    format: str | None = None
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Row:
        # Each field read only when given: a million-line import parses in-process.
        row = cls(email=normalise_email(str(raw.get("email") or "")))
        name = raw.get("name")
        if name:
            name = clean_text(str(name), limit=100_000).strip()
            if len(name) > NAME_LIMIT:
                row.warnings.append(f"name cut to {NAME_LIMIT} of its {len(name)} characters")
                name = name[:NAME_LIMIT]
            row.name = name or None
        if raw.get("sections"):
            row.sections = normalise_sections(raw["sections"])
        if raw.get("timezone"):
            row.timezone = checked_zone(str(raw["timezone"]))
        locale = raw.get("locale")
        if locale:
            locale = str(locale).strip().lower()
            if not _LOCALE.fullmatch(locale):
                raise BadSubscriber(f"locale: {locale[:20]!r} is not like ru or en-gb")
            row.locale = locale
        fmt = str(raw.get("format") or "").strip().lower()
        if fmt and fmt not in FORMATS:
            raise BadSubscriber(f"format: {fmt[:20]!r} is not html or text")
        row.format = fmt or None
        source = raw.get("consent_source")
        if source:
            row.consent_source = clean_text(str(source)).strip()[:200] or None
        when = str(raw.get("consent_at") or "").strip()
        if when:
            row.consent_at = _consent_time(when)
        return row

    def merged_with(self, later: Row) -> Row:
        """Two lines for one address: what the later says wins, its blanks do not erase."""
        return Row(
            email=self.email,
            name=later.name or self.name,
            sections=later.sections if later.sections is not None else self.sections,
            timezone=later.timezone or self.timezone,
            locale=later.locale,
            consent_source=later.consent_source or self.consent_source,
            consent_at=later.consent_at or self.consent_at,
            format=later.format or self.format,
        )


_LOCALE = re.compile(r"[a-z]{2}(-[a-z]{2})?")


def _consent_time(when: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(when)
    except ValueError:
        raise BadSubscriber(f"consent_at: {when[:40]!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise BadSubscriber("consent_at: needs an offset, e.g. 2026-11-25T10:00:00+03:00")
    return parsed


def describe(s: Subscriber) -> dict[str, Any]:
    return {
        "email": s.email,
        "name": s.name,
        "status": str(s.status),
        "sections": s.sections,
        "timezone": s.timezone,
        "locale": s.locale,
        "frequency": s.frequency,
        "format": s.format,
        "consent_source": s.consent_source,
        "consent_version": s.consent_version,
        "consent_page": s.consent_page,
        "consent_at": _iso(s.consent_at),
        "confirmed_at": _iso(s.confirmed_at),
        "invited_at": _iso(s.invited_at),
        "unsubscribed_at": _iso(s.unsubscribed_at),
        "created_at": _iso(s.created_at),
    }


def checked_zone(value: str) -> str | None:
    zone = value.strip()
    if not zone:
        return None
    try:
        return zone_name(zone)
    except ValueError:
        raise BadSubscriber(f"timezone: unknown time zone {zone[:60]!r}") from None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
