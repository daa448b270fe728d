"""A reader's way back after an unsubscribe (issue 28 §2).

A reader who clicked «отписаться» by mistake used to have no way back: the box
answered "check your mail" and sent nothing, `subscribers add` refused, and the
desk had no action. Three ways now, each designed from what an outsider holds:

- **Undo, on the goodbye page.** The page that says "unsubscribed" carries a
  button whose signed token is bound to *that* unsubscribe (its time, the
  ``mark``) and works for ``UNDO_DAYS``. It is minted only for an unsubscribe of
  a moment ago, so someone holding a forwarded letter cannot post its
  unsubscribe link again and bring back a reader who left long since.
- **The subscription box again.** A request for an address that left is a
  request like any (the same answer, the same limits per mailbox); the drain
  records it (``ASKED_AGAIN``: the page and the consent text's version) and
  sends a fresh confirmation whose token is bound to the unsubscribe. Only that
  click brings the reader back, with the consent recorded anew and the one
  before it kept in the event. An old confirmation link never does.
- **An admin in the desk**, with a reason kept in the audit log; the only way
  back for an address that bounced hard or complained (the evidence is on the
  same page).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from digest import store
from digest.db import transaction
from digest.errors import DigestError
from digest.headers import clean_text
from digest.models import Event, EventKind, SubscriberStatus

if TYPE_CHECKING:
    from digest.db import Factory, Session
    from digest.models import Clock, SignupRequest, Subscriber

UNDO_DAYS = 7
# An undo is offered only for an unsubscribe this recent (the request that made it).
JUST_NOW = timedelta(minutes=1)
REASON_CHARS = 500
# Whom an admin may bring back: a pending reader confirms, an active one is here.
RETURNABLE = (
    SubscriberStatus.UNSUBSCRIBED,
    SubscriberStatus.BOUNCED,
    SubscriberStatus.COMPLAINED,
    SubscriberStatus.PAUSED,  # by the sunset rule (issue 28 §5)
)


class NotReturnable(DigestError):
    """This reader cannot be brought back that way."""


def mark(reader: Subscriber) -> str:
    """What binds a token to one unsubscribe: its time, to the second."""
    at = reader.unsubscribed_at
    return str(int(at.timestamp())) if at is not None else ""


def bound(token_key: str, reader_mark: str) -> str:
    """The value an undo or come-back token signs."""
    return f"{token_key}:{reader_mark}"


def unbound(value: str) -> tuple[str, str]:
    """(token key, mark) from a verified token's value."""
    key, _, reader_mark = value.partition(":")
    return key, reader_mark


def consent_of(reader: Subscriber) -> dict[str, Any]:
    """A reader's consent as recorded, kept in the event that replaces it."""
    return {
        "at": reader.consent_at.isoformat() if reader.consent_at else None,
        "source": reader.consent_source,
        "version": reader.consent_version,
        "page": reader.consent_page,
    }


@dataclass(frozen=True)
class Returned:
    email: str
    was: str


class WayBack:
    """``Services.wayback``: the undo, the box's come-back, an admin's reactivation."""

    def __init__(self, factory: Factory, clock: Clock) -> None:
        self.factory = factory
        self.clock = clock

    def undo_mark(self, token_key: str) -> str | None:
        """The mark of this reader's unsubscribe of a moment ago (None: no undo)."""
        with self.factory() as session:
            found = store.subscriber_by_token(session, token_key)
            if found is None or not self._left_since(found, self.clock() - JUST_NOW):
                return None
            return mark(found)

    def undo(self, token_key: str, reader_mark: str, ip: str | None, agent: str | None) -> bool:
        """The goodbye page's undo: back as before, if it is the same unsubscribe and
        within ``UNDO_DAYS``."""
        with transaction(self.factory) as session:
            found = store.subscriber_by_token(session, token_key)
            if found is not None and found.status is SubscriberStatus.ACTIVE:
                return True  # pressed twice: back already, nothing to change
            since = self.clock() - timedelta(days=UNDO_DAYS)
            if found is None or not self._left_since(found, since) or mark(found) != reader_mark:
                return False
            self._back(session, found, {"how": "undo", **seen(ip, agent)})
            return True

    def asked_again(
        self, session: Session, found: Subscriber, asked: SignupRequest, version: str
    ) -> None:
        """The box asked for a reader who left: the request kept as evidence (its
        page, the consent text's ``version``); the drain sends the confirmation,
        and only its click brings them back."""
        detail = {"page": asked.page, "version": version, "mark": mark(found)}
        store.keep(
            session,
            Event(
                subscriber_id=found.id,
                kind=EventKind.ASKED_AGAIN,
                at=asked.asked_at,
                detail=detail,
            ),
        )

    def confirm_again(
        self, token_key: str, reader_mark: str, ip: str | None, agent: str | None
    ) -> bool:
        """The confirmation of a come-back: active again, consent recorded anew
        from the request (the one before kept in the event)."""
        now = self.clock()
        with transaction(self.factory) as session:
            found = store.subscriber_by_token(session, token_key)
            if found is None or found.status is SubscriberStatus.ACTIVE:
                return found is not None  # a second click: already back
            if found.status is not SubscriberStatus.UNSUBSCRIBED or mark(found) != reader_mark:
                return False
            asked = _last_request(session, found.id, reader_mark)
            if asked is None:
                return False
            before = consent_of(found)
            found.consent_at = found.confirmed_at = now
            found.consent_source = "web form"
            found.consent_version = asked.get("version")
            found.consent_page = asked.get("page")
            detail = {"how": "confirmed", "before": before, **seen(ip, agent)}
            self._back(session, found, detail)
            return True

    def reactivate(self, reader_id: int, reason: str) -> Returned:
        """An admin brings a reader back; the reason is required and kept."""
        why = clean_text(reason, REASON_CHARS).strip()
        if not why:
            raise NotReturnable("Укажите причину: она останется в журнале.")
        with transaction(self.factory) as session:
            found = store.subscriber_by_id(session, reader_id)
            if found is None:
                raise NotReturnable(f"Читателя {reader_id} нет.")
            if found.status not in RETURNABLE:
                raise NotReturnable(f"{found.email} не отписан: возвращать нечего.")
            was = str(found.status)
            self._back(session, found, {"how": "admin", "was": was, "reason": why})
            return Returned(found.email, was)

    def _left_since(self, found: Subscriber, since: datetime) -> bool:
        return (
            found.status is SubscriberStatus.UNSUBSCRIBED
            and found.unsubscribed_at is not None
            and found.unsubscribed_at >= since
        )

    def _back(self, session: Session, found: Subscriber, detail: dict[str, Any]) -> None:
        found.status = SubscriberStatus.ACTIVE
        found.unsubscribed_at = None
        found.confirmed_at = found.confirmed_at or self.clock()
        store.keep(
            session,
            Event(
                subscriber_id=found.id, kind=EventKind.RESUBSCRIBE, at=self.clock(), detail=detail
            ),
        )


def seen(ip: str | None, agent: str | None) -> dict[str, Any]:
    return {"ip": ip, "user_agent": clean_text(agent or "", 300)}


def _last_request(session: Session, reader_id: int, reader_mark: str) -> dict[str, Any] | None:
    """The box's latest request to come back after this unsubscribe."""
    for event in reversed(store.events_of(session, reader_id)):
        detail = event.detail or {}
        if event.kind is EventKind.ASKED_AGAIN and detail.get("mark") == reader_mark:
            return detail
    return None
