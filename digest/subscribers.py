"""Subscribers: validated, normalised addresses in; never a resurrected one.

Every address goes through email-validator (syntax only, no DNS), is
lowercased and its domain put in canonical (Unicode NFC, IDNA-checked) form,
so ``Ivan@Example.RU`` and ``ivan@example.ru`` are one subscriber. An address
that unsubscribed, bounced, complained or was forgotten is never made active
again by an import or an ``add``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session, sessionmaker

from digest.config import zone_name
from digest.db import transaction
from digest.errors import DigestError
from digest.headers import clean_text
from digest.models import (
    Clock,
    Delivery,
    Edition,
    Event,
    EventKind,
    Forgotten,
    Section,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from digest.tokens import new_token_key

NAME_LIMIT = 200
COLUMNS = (
    "email",
    "name",
    "sections",
    "timezone",
    "locale",
    "consent_source",
    "consent_at",
    "format",
)
SECTION = re.compile(r"^[a-zа-яё0-9-]{1,50}$")
CLOSED = (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED)


FREQUENCIES = ("daily", "weekly")
FORMATS = ("html", "text")


@dataclass(frozen=True)
class Preferences:
    sections: list[tuple[str, str, bool]]  # (slug, title, chosen)
    frequency: str
    timezone: str
    format: str = "html"


class BadSubscriber(DigestError):
    """A subscriber record that cannot be taken as it is."""


def normalise_email(value: str) -> str:
    """The one spelling we store: validated, lowercased, canonical domain."""
    text = (value or "").strip()
    if not text:
        raise BadSubscriber("email: is empty")
    try:
        checked = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise BadSubscriber(f"email: {text[:80]!r} is not valid: {exc}") from None
    normalized = str(checked.normalized).lower()
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
        row = cls(email=normalise_email(str(raw.get("email") or "")))
        name = clean_text(str(raw.get("name") or ""), limit=100_000).strip()
        if len(name) > NAME_LIMIT:
            row.warnings.append(f"name cut to {NAME_LIMIT} of its {len(name)} characters")
            name = name[:NAME_LIMIT]
        row.name = name or None
        row.sections = normalise_sections(raw.get("sections"))
        row.timezone = _zone(str(raw.get("timezone") or ""))
        locale = str(raw.get("locale") or "ru").strip().lower()
        if not re.fullmatch(r"[a-z]{2}(-[a-z]{2})?", locale):
            raise BadSubscriber(f"locale: {locale[:20]!r} is not like ru or en-gb")
        row.locale = locale
        fmt = str(raw.get("format") or "").strip().lower()
        if fmt and fmt not in FORMATS:
            raise BadSubscriber(f"format: {fmt[:20]!r} is not html or text")
        row.format = fmt or None
        source = clean_text(str(raw.get("consent_source") or "")).strip()
        row.consent_source = source[:200] or None
        when = str(raw.get("consent_at") or "").strip()
        if when:
            try:
                parsed = datetime.fromisoformat(when)
            except ValueError:
                raise BadSubscriber(f"consent_at: {when[:40]!r} is not an ISO 8601 time") from None
            if parsed.tzinfo is None:
                raise BadSubscriber("consent_at: needs an offset, e.g. 2026-11-25T10:00:00+03:00")
            row.consent_at = parsed
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


@dataclass
class ImportReport:
    added: int = 0
    updated: int = 0
    merged: int = 0  # later lines of the file for an address already seen
    kept_closed: int = 0  # unsubscribed, bounced, complained or forgotten: not resurrected
    rejected: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class SubscriberBook:
    """Adds, changes and removes subscribers; the only writer of their records
    outside the send (which only suppresses)."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        double_opt_in: bool,
        default_sections: Iterable[str] = (),
        clock: Clock = utcnow,
    ) -> None:
        self.factory = factory
        self.clock = clock
        self.double_opt_in = double_opt_in
        self.default_sections = normalise_sections(",".join(default_sections))

    def import_csv(self, path: Path) -> ImportReport:
        report = ImportReport()
        rows: dict[str, tuple[int, Row]] = {}
        for number, raw in _read_csv(path):
            if not raw:
                continue  # a blank line
            if isinstance(raw, BadLine):
                report.rejected += 1
                report.problems.append(f"{path.name}:{number}: {raw.reason}")
                continue
            try:
                row = Row.parse(raw)
            except BadSubscriber as exc:
                report.rejected += 1
                report.problems.append(f"{path.name}:{number}: {exc}")
                continue
            report.warnings.extend(f"{path.name}:{number}: {w}" for w in row.warnings)
            if row.email in rows:
                report.merged += 1
                row = rows[row.email][1].merged_with(row)
            rows[row.email] = (number, row)
        with transaction(self.factory) as session:
            for _number, row in rows.values():
                outcome = self._upsert(session, row)
                if outcome == "added":
                    report.added += 1
                elif outcome == "updated":
                    report.updated += 1
                else:
                    report.kept_closed += 1
        return report

    def add(self, row: Row) -> str:
        with transaction(self.factory) as session:
            return self._upsert(session, row)

    def _upsert(self, session: Session, row: Row) -> str:
        if session.get(Forgotten, address_hash(row.email)) is not None:
            return "closed"
        found = session.scalar(select(Subscriber).where(Subscriber.email == row.email))
        if found is not None and found.status in CLOSED:
            return "closed"
        if found is None:
            # With double opt-in, only a recorded earlier consent makes an import active;
            # the rest wait as pending for their confirmation.
            active = not self.double_opt_in or row.consent_at is not None
            found = Subscriber(
                email=row.email,
                token_key=new_token_key(),
                status=SubscriberStatus.ACTIVE if active else SubscriberStatus.PENDING,
                created_at=self.clock(),
                confirmed_at=row.consent_at if active else None,
                sections=self.default_sections,
            )
            session.add(found)
            outcome = "added"
        else:
            outcome = "updated"
        found.name = row.name or found.name
        found.sections = row.sections if row.sections is not None else found.sections
        found.timezone = row.timezone or found.timezone
        found.locale = row.locale
        found.format = row.format or found.format or "html"
        found.consent_source = row.consent_source or found.consent_source
        found.consent_at = row.consent_at or found.consent_at
        session.flush()
        return outcome

    def remove(self, email: str) -> bool:
        """Unsubscribe (kept, so the address is never mailed again by mistake)."""
        with transaction(self.factory) as session:
            found = _find(session, email)
            if found is None or found.status in CLOSED:
                return False
            found.status = SubscriberStatus.UNSUBSCRIBED
            found.unsubscribed_at = self.clock()
            return True

    def unsubscribe_key(self, token_key: str, how: str) -> bool:
        """An unsubscribe from a signed link or mailto (the token names the key, never
        the address). Takes effect for the very next claim, also mid-send."""
        with transaction(self.factory) as session:
            found = session.scalar(select(Subscriber).where(Subscriber.token_key == token_key))
            if found is None:
                return False
            if found.status not in CLOSED:
                found.status = SubscriberStatus.UNSUBSCRIBED
                found.unsubscribed_at = self.clock()
            session.add(
                Event(
                    subscriber_id=found.id,
                    kind=EventKind.UNSUBSCRIBE,
                    at=self.clock(),
                    detail={"how": how},
                )
            )
            return True

    def confirm(self, token_key: str, ip: str | None, user_agent: str | None) -> bool:
        """A pending subscriber clicked their confirmation link: active from now on,
        with when and from where recorded as the proof of consent (152-FZ, GDPR)."""
        now = self.clock()
        with transaction(self.factory) as session:
            found = session.scalar(select(Subscriber).where(Subscriber.token_key == token_key))
            if found is None or found.status in CLOSED:
                return False
            if found.status is SubscriberStatus.PENDING:
                found.status = SubscriberStatus.ACTIVE
                found.confirmed_at = now
                found.consent_at = found.consent_at or now
                session.add(
                    Event(
                        subscriber_id=found.id,
                        kind=EventKind.CONFIRM,
                        at=now,
                        detail={"ip": ip, "user_agent": clean_text(user_agent or "", 300)},
                    )
                )
            return True

    def to_invite(
        self, link_days: int, again: bool, limit: int | None = None, only: str | None = None
    ) -> list[Subscriber]:
        """Pending subscribers who have had no confirmation mail yet, and with
        ``again`` also those whose link expired. Never one whose link still works."""
        expired = self.clock() - timedelta(days=link_days)
        due: ColumnElement[bool] = Subscriber.invited_at.is_(None)
        if again:
            due = or_(due, Subscriber.invited_at < expired)
        with self.factory() as session:
            query = (
                select(Subscriber)
                .where(Subscriber.status == SubscriberStatus.PENDING, due)
                .order_by(Subscriber.id)
                .limit(limit)
            )
            if only is not None:
                query = query.where(Subscriber.email == only)
            return list(session.scalars(query))

    def mark_invited(self, subscriber_id: int) -> None:
        with transaction(self.factory) as session:
            found = session.get(Subscriber, subscriber_id)
            if found is not None:
                found.invited_at = self.clock()

    def preferences(self, token_key: str) -> Preferences | None:
        with self.factory() as session:
            found = session.scalar(select(Subscriber).where(Subscriber.token_key == token_key))
            if found is None or found.status in CLOSED:
                return None
            sections = session.execute(
                select(Section.slug, Section.title).order_by(Section.position, Section.title)
            ).all()
            chosen = set((found.sections or "").split(",")) - {""}
            return Preferences(
                sections=[(slug, title, slug in chosen) for slug, title in sections],
                frequency=found.frequency,
                timezone=found.timezone or "",
                format=found.format,
            )

    def set_preferences(
        self,
        token_key: str,
        sections: Iterable[str],
        frequency: str,
        timezone: str,
        fmt: str = "html",
    ) -> bool:
        """Save a reader's choices. Unknown sections are ignored; choosing every
        section (or none) means every section, today's and future ones."""
        if frequency not in FREQUENCIES:
            raise BadSubscriber(f"frequency: choose one of {', '.join(FREQUENCIES)}")
        if fmt not in FORMATS:
            raise BadSubscriber(f"format: choose one of {', '.join(FORMATS)}")
        zone = _zone(timezone)
        with transaction(self.factory) as session:
            found = session.scalar(select(Subscriber).where(Subscriber.token_key == token_key))
            if found is None or found.status in CLOSED:
                return False
            known = set(session.scalars(select(Section.slug)))
            chosen = sorted(set(sections) & known)
            found.sections = ",".join(chosen) if chosen and set(chosen) != known else None
            found.frequency = frequency
            found.timezone = zone
            found.format = fmt
            return True

    def forget(self, email: str) -> bool:
        """Erase everything about the address; keep only its hash, so it is refused."""
        address = normalise_email(email)
        with transaction(self.factory) as session:
            if session.get(Forgotten, address_hash(address)) is None:
                session.add(Forgotten(hash=address_hash(address), at=self.clock()))
            found = _find(session, address)
            if found is None:
                return False
            session.delete(found)  # deliveries cascade; events lose their link
            return True

    def show(self, email: str) -> dict[str, Any] | None:
        with self.factory() as session:
            found = _find(session, email)
            return describe(found) if found is not None else None

    def listing(self, status: SubscriberStatus | None = None) -> Iterator[dict[str, Any]]:
        with self.factory() as session:
            query = select(Subscriber).order_by(Subscriber.id)
            if status is not None:
                query = query.where(Subscriber.status == status)
            for found in session.scalars(query):
                yield describe(found)

    def export(self, email: str) -> list[dict[str, Any]]:
        """Everything we hold about one subscriber, one row per fact (152-FZ, GDPR)."""
        with self.factory() as session:
            found = _find(session, email)
            if found is None:
                return []
            rows: list[dict[str, Any]] = [
                {"kind": "subscriber", **describe(found)},
            ]
            deliveries = session.execute(
                select(Delivery, Edition)
                .join(Edition, Edition.id == Delivery.edition_id)
                .where(Delivery.subscriber_id == found.id)
                .order_by(Delivery.id)
            ).all()
            for delivery, edition in deliveries:
                rows.append(
                    {
                        "kind": "delivery",
                        "edition": edition.label,
                        "status": str(delivery.status),
                        "sent_at": _iso(delivery.sent_at),
                        "smtp_code": delivery.smtp_code,
                        "smtp_reply": delivery.smtp_reply,
                        "message_id": delivery.message_id,
                    }
                )
            events = session.scalars(
                select(Event).where(Event.subscriber_id == found.id).order_by(Event.id)
            )
            for event in events:
                rows.append(
                    {
                        "kind": "event",
                        "event": str(event.kind),
                        "at": _iso(event.at),
                        "detail": event.detail,
                    }
                )
            return rows


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
        "consent_at": _iso(s.consent_at),
        "confirmed_at": _iso(s.confirmed_at),
        "invited_at": _iso(s.invited_at),
        "unsubscribed_at": _iso(s.unsubscribed_at),
        "created_at": _iso(s.created_at),
    }


def _zone(value: str) -> str | None:
    zone = value.strip()
    if not zone:
        return None
    try:
        return zone_name(zone)
    except ValueError:
        raise BadSubscriber(f"timezone: unknown time zone {zone[:60]!r}") from None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _find(session: Session, email: str) -> Subscriber | None:
    try:
        address = normalise_email(email)
    except BadSubscriber:
        address = email.strip().lower()
    return session.scalar(select(Subscriber).where(Subscriber.email == address))


MAX_RECORD = 64 * 1024  # one CSV record (a line, or lines in quotes): far over any real one
MAX_RECORD_LINES = 20


@dataclass(frozen=True)
class BadLine:
    """A record of the file that cannot be read; the rest of the file goes on."""

    reason: str


def _records(handle: BinaryIO) -> Iterator[tuple[int, bytes | BadLine]]:
    """(first line number, the record's bytes) for each CSV record: physical lines
    joined while a quoted field is open (RFC 4180 doubles quotes inside fields, so
    an odd count means one is open). Lines are read with a bound: a 200 MB line
    is skipped in chunks and reported, never held in memory."""
    number, record, start = 0, b"", 0
    while True:
        line = handle.readline(MAX_RECORD + 1)
        if not line:
            break
        number += 1
        if len(line) > MAX_RECORD:
            while line and not line.endswith(b"\n"):  # the rest of that line, unread
                line = handle.readline(MAX_RECORD)
            record = b""
            yield number, BadLine(f"the line is longer than {MAX_RECORD // 1024} KB")
            continue
        if not record:
            start = number
        record += line
        if record.count(b'"') % 2 == 0:
            yield start, record
            record = b""
        elif len(record) > MAX_RECORD or number - start >= MAX_RECORD_LINES:
            yield start, BadLine("a quoted field is never closed")
            record = b""
    if record:
        yield start, BadLine("a quoted field is never closed")


def _read_csv(path: Path) -> Iterator[tuple[int, dict[str, Any] | BadLine]]:
    """Each record as a dict keyed by the header, or why it cannot be read; the
    number is the file's line where the record starts, as an editor sees it."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise DigestError(f"{path}: cannot read: {exc.strerror}") from None
    with handle:
        records = _records(handle)
        first = next(records, None)
        if first is None or isinstance(first[1], BadLine):
            raise DigestError(f"{path}: the first line is not a CSV header")
        try:
            text = first[1].decode("utf-8-sig")
        except UnicodeDecodeError:
            raise DigestError(f"{path}:1: the header is not UTF-8") from None
        header = [h.strip().lower() for h in next(csv.reader([text]), [])]
        if "email" not in header:
            raise DigestError(f"{path}: the header row has no 'email' column")
        unknown = set(header) - set(COLUMNS)
        if unknown:
            raise DigestError(f"{path}: unknown column(s): {', '.join(sorted(unknown))}")
        for number, record in records:
            yield number, record if isinstance(record, BadLine) else _row(header, record)


def _row(header: list[str], record: bytes) -> dict[str, Any] | BadLine:
    try:
        text = record.decode("utf-8")
    except UnicodeDecodeError as exc:
        return BadLine(f"not UTF-8 (byte {record[exc.start]:#04x} at column {exc.start + 1})")
    if not text.strip("\r\n"):
        return {}  # a blank line
    try:
        values = next(csv.reader([text.rstrip("\r\n")], strict=True), [])
    except csv.Error as exc:
        return BadLine(f"not CSV: {exc}")
    if len(values) > len(header):
        return BadLine(f"{len(values)} fields where the header has {len(header)}")
    return dict(zip(header, values, strict=False))
