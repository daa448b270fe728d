"""Track: what happened to every message — outcomes, their classification, reports."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from digest import queries
from digest.db import transaction
from digest.errors import DeliveryError, PermanentFailure, TemporaryFailure
from digest.models import DeliveryStatus, Edition

ENHANCED_CODE = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
FIRST_RETRY = timedelta(minutes=5)


def classify(code: int | None, reply: str, recipient: str | None = None) -> DeliveryError | None:
    """An SMTP reply in the server's own words → None (accepted), TemporaryFailure
    (4xx, or no reply at all: the connection failed) or PermanentFailure (5xx).
    The only place a reply is judged; aiosmtplib does not classify."""
    match = ENHANCED_CODE.search(reply or "")
    enhanced = match.group(0) if match else None
    if code is not None and 200 <= code < 400:
        return None
    kind = PermanentFailure if code is not None and 500 <= code < 600 else TemporaryFailure
    return kind(reply, code=code, enhanced_code=enhanced, recipient=recipient)


@dataclass(frozen=True, slots=True)
class Outcome:
    delivery_id: int
    status: DeliveryStatus
    attempts: int
    at: datetime
    code: int | None = None
    reply: str = ""
    message_id: str | None = None
    next_attempt_at: datetime | None = None

    @classmethod
    def sent(
        cls, delivery_id: int, attempts: int, at: datetime, code: int, reply: str, message_id: str
    ) -> Outcome:
        return cls(delivery_id, DeliveryStatus.SENT, attempts, at, code, reply, message_id)

    @classmethod
    def from_error(
        cls,
        delivery_id: int,
        attempts: int,
        at: datetime,
        error: DeliveryError,
        message_id: str | None,
    ) -> Outcome:
        if isinstance(error, PermanentFailure):
            return cls(
                delivery_id,
                DeliveryStatus.FAILED,
                attempts,
                at,
                error.code,
                error.reply,
                message_id,
            )
        return cls(
            delivery_id,
            DeliveryStatus.DEFERRED,
            attempts,
            at,
            error.code,
            error.reply,
            message_id,
            at + FIRST_RETRY,
        )

    def row(self) -> tuple[Any, ...]:
        """The values ``queries.record_outcomes`` writes, in its column order."""
        sent_at = self.at if self.status is DeliveryStatus.SENT else None
        return (
            self.status.value,
            self.attempts,
            self.code,
            self.reply[:2000],
            self.message_id,
            sent_at,
            self.next_attempt_at,
            self.at,
            self.delivery_id,
        )


class DeliveryStore:
    """The send loop's view of the database: claim, record, release. Synchronous;
    the sender runs it on one worker thread so the event loop keeps sending."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        edition_id: int,
        worker: str,
        lease: timedelta = timedelta(minutes=2),
    ) -> None:
        self.factory = factory
        self.edition_id = edition_id
        self.worker = worker
        self.lease = lease

    def claim(self, limit: int, now: datetime) -> tuple[list[queries.Claim], int]:
        with transaction(self.factory) as session:
            return queries.claim_deliveries(
                session, self.edition_id, self.worker, now, now + self.lease, limit
            )

    def record(self, outcomes: Sequence[Outcome]) -> None:
        with transaction(self.factory) as session:
            queries.record_outcomes(session, [o.row() for o in outcomes])

    def release(self, now: datetime) -> int:
        with transaction(self.factory) as session:
            return queries.release_claims(session, self.edition_id, self.worker, now)


@dataclass
class EditionReport:
    id: int
    label: str
    status: str
    subject: str
    window_start: datetime
    window_end: datetime
    created_at: datetime
    sent_at: datetime | None
    variants: int
    counts: dict[str, int] = field(default_factory=dict)
    total: int = 0
    rate: float | None = None  # messages/s over the last minute of sending
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def pending(self) -> int:
        return sum(
            self.counts.get(s.value, 0)
            for s in (DeliveryStatus.QUEUED, DeliveryStatus.SENDING, DeliveryStatus.DEFERRED)
        )

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("window_start", "window_end", "created_at", "sent_at"):
            value = data[key]
            data[key] = value.isoformat() if value else None
        data["rate"] = round(self.rate, 1) if self.rate else None
        data["pending"] = self.pending
        return data


def edition_report(session: Session, edition: Edition) -> EditionReport:
    counts = queries.delivery_counts(session, edition.id)
    return EditionReport(
        id=edition.id,
        label=edition.label,
        status=str(edition.status),
        subject=edition.subject,
        window_start=edition.window_start,
        window_end=edition.window_end,
        created_at=edition.created_at,
        sent_at=edition.sent_at,
        variants=len(queries.variants(session, edition.id)),
        counts={s.value: counts.get(s, 0) for s in DeliveryStatus},
        total=sum(counts.values()),
        rate=queries.recent_rate(session, edition.id),
        failures=[
            {"status": s, "code": code, "reply": reply, "count": n}
            for s, code, reply, n in queries.failure_reasons(session, edition.id)
        ],
    )
