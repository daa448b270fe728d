"""The site's subscription box: a request to subscribe from the web.

Double opt-in as everywhere: a new address is pending and gets the confirmation
mail; the consent evidence records what was agreed to (the text's version) and
on which page. An outsider controls every field here, the address above all,
and may aim the box at someone else (issue 24). So:

- **The same answer, at the same time**, whatever the address's state (new,
  pending, active, unsubscribed, forgotten): a request is only checked against
  the limits and queued (``request``); a drain in the background (``take``)
  decides what it means and ``web.app`` sends the confirmation, outside any
  request. Neither the answer nor how long it took says who subscribes.
- **No mail bombing.** At most ``PER_TARGET_PER_DAY`` confirmations a day to one
  mailbox (case and ``+tag`` folded: ``Victim+1@x`` is ``victim@x``; the rest are
  answered alike and dropped), ``PER_NETWORK_PER_HOUR`` requests from one network
  (an IPv4 address, an IPv6 /64: one machine has a whole /64), and
  ``PER_HOUR`` from everyone; each refusal logged and counted in /metrics.
- **Limits that hold under concurrency**: the check and the count are one step
  (``store.serialize``) on both databases.
- A honeypot field, and a confirmation re-sent at most once an hour. An address
  that left or asked to be forgotten gets no mail; an active one is not touched
  (nobody can change another reader's sections by "subscribing" them).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from prometheus_client import Counter

from digest import store
from digest.audience.rows import (
    CLOSED,
    BadSubscriber,
    address_hash,
    normalise_email,
    normalise_sections,
)
from digest.audience.wayback import WayBack
from digest.db import Factory, Session, transaction
from digest.headers import clean_text
from digest.models import Clock, SignupRequest, Subscriber, SubscriberStatus
from digest.tokens import new_token_key

log = logging.getLogger(__name__)

# The consent text shown beside the box (templates/reader/subscribe.html.j2 and the
# README's snippet): change both together, and this version with them.
CONSENT_VERSION = "2026-11-29"
PER_NETWORK_PER_HOUR = 10
PER_TARGET_PER_DAY = 3
PER_HOUR = 1000
RESEND_AFTER = timedelta(hours=1)
SIGNUPS = Counter(
    "digest_signups",
    "Requests to the subscription box, by what became of them: queued, honeypot, "
    "target_capped (that mailbox had its confirmations for the day), network_limited, "
    "hourly_limited, bad_address",
    ["outcome"],
)


class Answer(enum.StrEnum):
    ACCEPTED = "accepted"  # whatever the address's state: "check your mail"
    LIMITED = "limited"  # too many requests from the asker's network, or from everyone
    BAD_ADDRESS = "bad_address"  # not an address at all (says nothing about anyone)


@dataclass(frozen=True)
class Request:
    email: str
    sections: Iterable[str]
    ip: str | None
    page: str  # where the box was (the Referer, or what the form says)
    trap: str = ""  # the honeypot: people leave it empty
    list_key: str = "daily"
    network: str | None = None  # who is counted instead of the IP's network (an API token)


@dataclass(frozen=True)
class Decision:
    answer: Answer
    problem: str = ""


@dataclass(frozen=True)
class Invite:
    """A confirmation the drain decided to send."""

    subscriber: Subscriber
    list_key: str


class Signups:
    def __init__(
        self,
        factory: Factory,
        clock: Clock,
        secret: bytes,
        wayback: WayBack,
        default_sections: Iterable[str] = (),
        per_network: int = PER_NETWORK_PER_HOUR,
    ) -> None:
        self.factory, self.clock, self.per_network = factory, clock, per_network
        self._secret = secret
        self.wayback = wayback
        self.default_sections = normalise_sections(",".join(default_sections))

    def request(self, asked: Request) -> Decision:
        """Check the limits and queue the request; every address answered alike."""
        try:
            address = normalise_email(asked.email)
            sections = normalise_sections(",".join(asked.sections))
        except BadSubscriber as exc:
            SIGNUPS.labels("bad_address").inc()
            return Decision(Answer.BAD_ADDRESS, problem=str(exc))
        now = self.clock()
        net, target = (
            self._key("net", asked.network or network_of(asked.ip)),
            self._key("to", folded(address)),
        )
        with transaction(self.factory) as session:
            store.serialize(session, net, target, "all")
            if store.signups_since(session, net, now - timedelta(hours=1)) >= self.per_network:
                return self._refused("network_limited", asked)
            if store.signups_since(session, "all", now - timedelta(hours=1)) >= PER_HOUR:
                return self._refused("hourly_limited", asked)
            capped = store.signups_since(session, target, now - timedelta(days=1))
            store.add_signup(session, (net, target, "all"), now)
            if asked.trap.strip():
                SIGNUPS.labels("honeypot").inc()
                return Decision(Answer.ACCEPTED)  # a bot: the same answer, nothing done
            if capped >= PER_TARGET_PER_DAY:
                log.warning("subscription box: a mailbox asked for %d times today", capped + 1)
                SIGNUPS.labels("target_capped").inc()
                return Decision(Answer.ACCEPTED)
            page = clean_text(asked.page, 500)[:500] or None
            request = SignupRequest(
                email=address, sections=sections, page=page, list_key=asked.list_key, asked_at=now
            )
            store.queue_signup(session, request)
        SIGNUPS.labels("queued").inc()
        return Decision(Answer.ACCEPTED)

    def take(self, limit: int = 50) -> list[Invite]:
        """The drain: the oldest waiting requests decided (a new pending reader, a
        confirmation again, or nothing), and the confirmations to send now."""
        with transaction(self.factory) as session:
            invites: dict[str, Invite] = {}
            for asked in store.take_signups(session, limit):
                if asked.email in invites:
                    continue  # asked twice before the drain came: one confirmation
                invite = self._decide(session, asked)
                if invite is not None:
                    invites[asked.email] = invite
            return list(invites.values())

    def _decide(self, session: Session, asked: SignupRequest) -> Invite | None:
        if store.is_forgotten(session, address_hash(asked.email)):
            return None
        found = store.subscriber_by_email(session, asked.email)
        if found is None:
            found = store.add_subscriber(session, self._new(asked))
            return Invite(found, asked.list_key)
        back = found.status is SubscriberStatus.UNSUBSCRIBED  # a way back (issue 28 §2)
        if (found.status in CLOSED and not back) or found.status is SubscriberStatus.ACTIVE:
            return None  # bounced or complained: only an admin brings them back
        # Once an hour at most; for a reader who left, counted from when they left.
        since = asked.asked_at - RESEND_AFTER
        if back and found.unsubscribed_at is not None:
            since = max(since, found.unsubscribed_at)
        if found.invited_at is not None and found.invited_at > since:
            return None
        if back:
            self.wayback.asked_again(session, found, asked, CONSENT_VERSION)
        return Invite(found, asked.list_key)

    def _new(self, asked: SignupRequest) -> Subscriber:
        return Subscriber(
            email=asked.email,
            token_key=new_token_key(),
            status=SubscriberStatus.PENDING,
            created_at=asked.asked_at,
            sections=asked.sections or self.default_sections,
            consent_source="web form",
            consent_version=CONSENT_VERSION,
            consent_page=asked.page,
        )

    def _refused(self, why: str, asked: Request) -> Decision:
        log.warning("subscription box: %s (a request from %s)", why.replace("_", " "), asked.ip)
        SIGNUPS.labels(why).inc()
        return Decision(Answer.LIMITED)

    def _key(self, kind: str, value: str) -> str:
        # Keyed hash: the table counts askers and targets without keeping them.
        digest = hmac.new(self._secret, f"{kind}:{value}".encode(), hashlib.sha256)
        return f"{kind}:{digest.hexdigest()[:32]}"


def folded(address: str) -> str:
    """One mailbox however it is written: case and a ``+tag`` folded."""
    local, _, domain = address.lower().rpartition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


def network_of(ip: str | None) -> str:
    """The asker's network: an IPv4 address, or the /64 of an IPv6 one."""
    try:
        found = ipaddress.ip_address(ip or "")
    except ValueError:
        return "?"
    if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{found}/64", strict=False))
    return (
        str(found.ipv4_mapped or found) if isinstance(found, ipaddress.IPv6Address) else str(found)
    )
