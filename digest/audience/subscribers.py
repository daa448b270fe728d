"""The subscriber book: adds, changes and removes subscribers (import, opt-in,
preferences, unsubscribe, forget, export).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from digest import store
from digest.audience.importer import Importer, ImportReport, Tick
from digest.audience.rows import (
    CLOSED,
    FORMATS,
    BadSubscriber,
    Row,
    _iso,
    address_hash,
    checked_zone,
    describe,
    normalise_email,
    normalise_sections,
)
from digest.db import Factory, Session, transaction
from digest.headers import clean_text
from digest.models import (
    Clock,
    Event,
    EventKind,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from digest.tokens import new_token_key

FREQUENCIES = ("daily", "weekly")


def _no_tick(done: int, total: int | None) -> None:
    pass


@dataclass(frozen=True)
class Preferences:
    sections: list[tuple[str, str, bool]]  # (slug, title, chosen)
    frequency: str
    timezone: str
    format: str = "html"


class SubscriberBook:
    """Adds, changes and removes subscribers; the only writer of their records
    outside the send (which only suppresses)."""

    def __init__(
        self,
        factory: Factory,
        double_opt_in: bool,
        default_sections: Iterable[str] = (),
        clock: Clock = utcnow,
    ) -> None:
        self.factory = factory
        self.clock = clock
        self.double_opt_in = double_opt_in
        self.default_sections = normalise_sections(",".join(default_sections))

    def import_csv(self, path: Path, tick: Tick | None = None) -> ImportReport:
        """``tick(done, total)``: how far it got (rows written; the total at the end)."""
        importer = Importer(self.factory, self.double_opt_in, self.default_sections, self.clock())
        return importer.run(path, tick or _no_tick)

    def add(self, row: Row) -> str:
        with transaction(self.factory) as session:
            return self._upsert(session, row)

    def _upsert(self, session: Session, row: Row) -> str:
        if store.is_forgotten(session, address_hash(row.email)):
            return "closed"
        found = store.subscriber_by_email(session, row.email)
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
            store.keep(session, found)
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
        store.write_now(session)
        return outcome

    def remove(self, email: str) -> bool:
        """Unsubscribe (kept, so the address is never mailed again by mistake)."""
        with transaction(self.factory) as session:
            found = find_subscriber(session, email)
            if found is None or found.status in CLOSED:
                return False
            found.status = SubscriberStatus.UNSUBSCRIBED
            found.unsubscribed_at = self.clock()
            return True

    def unsubscribe_key(self, token_key: str, how: str, at: datetime | None = None) -> bool:
        """An unsubscribe from a signed link or mailto (the token names the key, never
        the address). Takes effect for the very next claim, also mid-send. ``at``:
        when the reader asked (a request queued while the database was away)."""
        when = at or self.clock()
        with transaction(self.factory) as session:
            found = store.subscriber_by_token(session, token_key)
            if found is None:
                return False
            if found.status not in CLOSED:
                found.status = SubscriberStatus.UNSUBSCRIBED
                found.unsubscribed_at = when
            elif at is not None:
                return True  # a queued request applied again: said once already
            store.keep(
                session,
                Event(
                    subscriber_id=found.id,
                    kind=EventKind.UNSUBSCRIBE,
                    at=when,
                    detail={"how": how},
                ),
            )
            return True

    def confirm(self, token_key: str, ip: str | None, user_agent: str | None) -> bool:
        """A pending subscriber clicked their confirmation link: active from now on,
        with when and from where recorded as the proof of consent (152-FZ, GDPR)."""
        now = self.clock()
        with transaction(self.factory) as session:
            found = store.subscriber_by_token(session, token_key)
            if found is None or found.status in CLOSED:
                return False
            if found.status is SubscriberStatus.PENDING:
                found.status = SubscriberStatus.ACTIVE
                found.confirmed_at = now
                found.consent_at = found.consent_at or now
                store.keep(
                    session,
                    Event(
                        subscriber_id=found.id,
                        kind=EventKind.CONFIRM,
                        at=now,
                        detail={"ip": ip, "user_agent": clean_text(user_agent or "", 300)},
                    ),
                )
            return True

    def to_invite(
        self, link_days: int, again: bool, limit: int | None = None, only: str | None = None
    ) -> list[Subscriber]:
        """Pending subscribers who have had no confirmation mail yet, and with
        ``again`` also those whose link expired. Never one whose link still works."""
        expired = self.clock() - timedelta(days=link_days)
        with self.factory() as session:
            return store.pending_to_invite(session, expired if again else None, limit, only)

    def mark_invited(self, subscriber_id: int) -> None:
        with transaction(self.factory) as session:
            found = store.subscriber_by_id(session, subscriber_id)
            if found is not None:
                found.invited_at = self.clock()

    def preferences(self, token_key: str) -> Preferences | None:
        with self.factory() as session:
            found = store.subscriber_by_token(session, token_key)
            if found is None or found.status in CLOSED:
                return None
            sections = store.sections(session)
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
        zone = checked_zone(timezone)
        with transaction(self.factory) as session:
            found = store.subscriber_by_token(session, token_key)
            if found is None or found.status in CLOSED:
                return False
            known = store.section_slugs(session)
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
            store.forget_address(session, address_hash(address), self.clock())
            found = find_subscriber(session, address)
            if found is None:
                return False
            # Its deliveries cascade; its events lose their link to them first.
            store.unlink_events_of_subscriber(session, found.id)
            store.remove(session, found)
            return True

    def show(self, email: str) -> dict[str, Any] | None:
        with self.factory() as session:
            found = find_subscriber(session, email)
            return describe(found) if found is not None else None

    def listing(self, status: SubscriberStatus | None = None) -> Iterator[dict[str, Any]]:
        with self.factory() as session:
            for found in store.subscribers(session, status):
                yield describe(found)

    def export(self, email: str) -> list[dict[str, Any]]:
        """Everything we hold about one subscriber, one row per fact (152-FZ, GDPR)."""
        with self.factory() as session:
            found = find_subscriber(session, email)
            if found is None:
                return []
            rows: list[dict[str, Any]] = [
                {"kind": "subscriber", **describe(found)},
            ]
            deliveries = store.deliveries_of(session, found.id)
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
            events = store.events_of(session, found.id)
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


def looked_up(email: str) -> str:
    """The address as the book keeps it (what cannot be normalised, as given, lowered):
    a lookup by it finds the reader or nobody, never fails."""
    try:
        return normalise_email(email)
    except BadSubscriber:
        return email.strip().lower()


def find_subscriber(session: Session, email: str) -> Subscriber | None:
    return store.subscriber_by_email(session, looked_up(email))


def reader_book(factory: Factory, clock: Clock) -> SubscriberBook:
    """The book as readers' own signed links and mails use it (unsubscribe,
    preferences, confirm, mailto): no list's import rules apply."""
    return SubscriberBook(factory, double_opt_in=True, clock=clock)
