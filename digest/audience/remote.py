"""Readers as another program sees them (issue 30): the site subscribes its
logged-in readers, shows and changes their choices, lets them leave or be
forgotten, through the HTTP API.

The same rules as the reader's own pages, from the same rooms: a subscription is
double opt-in through the subscription box's queue (``Signups``: the same answer
for every address, the per-mailbox cap on confirmations); a change is
``SubscriberBook.set_preferences``; leaving is ``unsubscribe_key``. Only one thing
is the site's own: ``confirmed`` with the site's record of the reader's consent
(the text's version, when, from which address, on which page), for a reader the
site has already checked; it needs the ``subscribers:confirm`` scope and is kept
as the consent evidence. A bounced or complained address is never brought back
this way (an admin's reactivation is the way), nor a forgotten one.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from digest import store
from digest.audience.rows import (
    CLOSED,
    BadSubscriber,
    address_hash,
    checked_zone,
    normalise_email,
    normalise_sections,
)
from digest.audience.signup import Answer, Request, Signups
from digest.audience.subscribers import SubscriberBook, find_subscriber, looked_up
from digest.db import Factory, transaction
from digest.errors import DigestError
from digest.headers import clean_text
from digest.models import Clock, Event, EventKind, Subscriber, SubscriberStatus
from digest.tokens import new_token_key

# Requests a token may queue an hour: its own rate limits it; the box's per-network
# limit (ten an hour) is for strangers, not for the site's server.
PER_TOKEN_PER_HOUR = 100_000


class NotSubscribable(DigestError):
    """The address cannot be subscribed by the API (bounced, complained, forgotten)."""


@dataclass(frozen=True)
class Consent:
    """The site's record of the reader's consent."""

    version: str
    at: datetime
    ip: str | None
    page: str


class Joined(enum.StrEnum):
    QUEUED = "queued"  # double opt-in: a confirmation will be sent (or nothing, alike)
    LIMITED = "limited"
    BAD_ADDRESS = "bad_address"


@dataclass(frozen=True)
class Choices:
    sections: list[str] | None = None
    format: str | None = None
    timezone: str | None = None
    frequency: str | None = None


class RemoteReaders:
    """``Services.remote_readers``: each change audited under the token's name."""

    def __init__(self, factory: Factory, clock: Clock, signups: Signups) -> None:
        self.factory, self.clock, self.signups = factory, clock, signups
        self.book = SubscriberBook(factory, double_opt_in=True, clock=clock)

    def subscribe(
        self, who: str, email: str, sections: Iterable[str], list_key: str, page: str
    ) -> Joined:
        """Double opt-in: queued for the box's drain, the box's answer."""
        asked = Request(email, list(sections), None, page, list_key=list_key, network=who)
        decision = self.signups.request(asked)
        if decision.answer is Answer.ACCEPTED:
            self._audit(who, "api subscribe", email, {"confirmed": False})
        return {
            Answer.ACCEPTED: Joined.QUEUED,
            Answer.LIMITED: Joined.LIMITED,
            Answer.BAD_ADDRESS: Joined.BAD_ADDRESS,
        }[decision.answer]

    def subscribe_confirmed(
        self, who: str, email: str, choices: Choices, consent: Consent
    ) -> dict[str, Any]:
        """A reader the site has checked, active now, with its consent kept."""
        address = normalise_email(email)
        self._check(choices)  # a bad choice refused before anything changes
        now = self.clock()
        with transaction(self.factory) as session:
            if store.is_forgotten(session, address_hash(address)):
                raise NotSubscribable(
                    f"{address} asked to be forgotten: it is not subscribed again"
                )
            found = store.subscriber_by_email(session, address)
            if found is not None and found.status in CLOSED[1:]:
                raise NotSubscribable(
                    f"{address} is {found.status}: only an admin brings it back (the desk)"
                )
            if found is None:
                found = Subscriber(email=address, token_key=new_token_key(), created_at=now)
                store.keep(session, found)
            if found.status is not SubscriberStatus.ACTIVE:
                was = str(found.status or SubscriberStatus.PENDING)
                found.status, found.unsubscribed_at = SubscriberStatus.ACTIVE, None
                found.confirmed_at, found.consent_at = now, consent.at
                found.consent_source = clean_text(f"site ({who})", 200)
                found.consent_version = clean_text(consent.version, 40)
                found.consent_page = clean_text(consent.page, 500)[:500]
                kind = EventKind.RESUBSCRIBE if was != "pending" else EventKind.CONFIRM
                detail = {"how": "api", "by": who, "was": was, "ip": consent.ip}
                store.keep(session, Event(subscriber_id=found.id, kind=kind, at=now, detail=detail))
            store.write_now(session)
            token_key = found.token_key
        self._apply(token_key, choices)
        self._audit(who, "api subscribe", address, {"confirmed": True})
        return self.get(address) or {}

    def get(self, email: str) -> dict[str, Any] | None:
        return self.book.show(email)

    def change(self, who: str, email: str, choices: Choices) -> dict[str, Any] | None:
        """New choices for a reader who has not left; None when there is none."""
        self._check(choices)
        with self.factory() as session:
            found = find_subscriber(session, email)
            key = found.token_key if found is not None and found.status not in CLOSED else None
        if key is None or not self._apply(key, choices):
            return None
        self._audit(who, "api change", email, {k: v for k, v in vars(choices).items() if v})
        return self.get(email)

    def _check(self, choices: Choices) -> None:
        """A script is told what it got wrong (the reader's page shows only the known)."""
        checked_zone(choices.timezone or "")
        with self.factory() as session:
            known = store.section_slugs(session)
        unknown = sorted(set(choices.sections or ()) - known)
        if unknown:
            raise BadSubscriber(
                f"sections: no section {', '.join(unknown)[:200]}; "
                f"known: {', '.join(sorted(known))}"
            )

    def _apply(self, token_key: str, choices: Choices) -> bool:
        now = self.book.preferences(token_key)
        if now is None:
            return False
        chosen = [slug for slug, _title, on in now.sections if on]
        sections = choices.sections if choices.sections is not None else chosen
        return self.book.set_preferences(
            token_key,
            (normalise_sections(",".join(sections)) or "").split(","),
            choices.frequency or now.frequency,
            choices.timezone if choices.timezone is not None else now.timezone,
            choices.format or now.format,
        )

    def unsubscribe(self, who: str, email: str) -> bool:
        with self.factory() as session:
            found = find_subscriber(session, email)
            key = found.token_key if found is not None else None
        if key is None or not self.book.unsubscribe_key(key, f"api ({who})"):
            return False
        self._audit(who, "api unsubscribe", email, {})
        return True

    def forget(self, who: str, email: str) -> bool:
        done = self.book.forget(email)
        self._audit(who, "api forget", email, {"found": done})
        return done

    def _audit(self, who: str, action: str, email: str, detail: dict[str, Any]) -> None:
        with transaction(self.factory) as session:
            subject = address_hash(looked_up(email))
            store.add_audit(session, self.clock(), who, action, subject, detail)
