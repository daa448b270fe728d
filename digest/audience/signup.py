"""The site's subscription box: a request to subscribe from the web.

Double opt-in as everywhere: a new address is pending and gets the confirmation
mail; the consent evidence records what was agreed to (the text's version) and
on which page. Against abuse: a honeypot field, a limit per asking address (IP),
the confirmation re-sent at most once an hour, and the same answer whatever the
address's state (new, pending, active, unsubscribed, forgotten), so the box
cannot be used to learn who subscribes. An address that left or asked to be
forgotten gets no mail; an active one is not touched (nobody can change another
reader's sections by "subscribing" them).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from digest import store
from digest.audience.rows import BadSubscriber, address_hash, normalise_email, normalise_sections
from digest.audience.subscribers import CLOSED
from digest.db import Factory, transaction
from digest.headers import clean_text
from digest.models import Clock, Forgotten, Subscriber, SubscriberStatus
from digest.tokens import new_token_key

# The consent text shown beside the box (templates/reader/subscribe.html.j2 and the
# README's snippet): change both together, and this version with them.
CONSENT_VERSION = "2026-11-29"
PER_IP_PER_HOUR = 10
RESEND_AFTER = timedelta(hours=1)


class Answer(enum.StrEnum):
    ACCEPTED = "accepted"  # whatever the address's state: "check your mail"
    LIMITED = "limited"  # too many requests from this address of the asker
    BAD_ADDRESS = "bad_address"  # not an address at all (says nothing about anyone)


@dataclass(frozen=True)
class Request:
    email: str
    sections: Iterable[str]
    ip: str | None
    page: str  # where the box was (the Referer, or what the form says)
    trap: str = ""  # the honeypot: people leave it empty


@dataclass(frozen=True)
class Decision:
    answer: Answer
    invite: Subscriber | None = None  # who gets a confirmation mail now
    problem: str = ""


class Signups:
    def __init__(
        self,
        factory: Factory,
        clock: Clock,
        secret: bytes,
        default_sections: Iterable[str] = (),
        per_ip: int = PER_IP_PER_HOUR,
    ) -> None:
        self.factory, self.clock, self.per_ip = factory, clock, per_ip
        self._secret = secret
        self.default_sections = normalise_sections(",".join(default_sections))

    def request(self, asked: Request) -> Decision:
        try:
            address = normalise_email(asked.email)
            sections = normalise_sections(",".join(asked.sections))
        except BadSubscriber as exc:
            return Decision(Answer.BAD_ADDRESS, problem=str(exc))
        now = self.clock()
        with transaction(self.factory) as session:
            ip = self._ip_key(asked.ip)
            if store.signups_since(session, ip, now - timedelta(hours=1)) >= self.per_ip:
                return Decision(Answer.LIMITED)
            store.add_signup(session, ip, now)
            if asked.trap.strip():
                return Decision(Answer.ACCEPTED)  # a bot: the same answer, nothing done
            if session.get(Forgotten, address_hash(address)) is not None:
                return Decision(Answer.ACCEPTED)
            found = store.subscriber_by_email(session, address)
            if found is None:
                found = self._new(address, sections or self.default_sections, asked.page)
                session.add(found)
                session.flush()
                return Decision(Answer.ACCEPTED, invite=found)
            if found.status in CLOSED or found.status is SubscriberStatus.ACTIVE:
                return Decision(Answer.ACCEPTED)
            recent = found.invited_at is not None and found.invited_at > now - RESEND_AFTER
            return Decision(Answer.ACCEPTED, invite=None if recent else found)

    def _new(self, address: str, sections: str | None, page: str) -> Subscriber:
        return Subscriber(
            email=address,
            token_key=new_token_key(),
            status=SubscriberStatus.PENDING,
            created_at=self.clock(),
            sections=sections,
            consent_source="web form",
            consent_version=CONSENT_VERSION,
            consent_page=clean_text(page, 500)[:500] or None,
        )

    def _ip_key(self, ip: str | None) -> str:
        # Keyed hash: the table counts askers without keeping their addresses.
        digest = hmac.new(self._secret, (ip or "?").encode(), hashlib.sha256)
        return digest.hexdigest()[:32]
