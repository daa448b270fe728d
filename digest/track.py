"""Track: what happened to every message — outcomes, their classification, reports."""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from digest import queries
from digest.db import transaction
from digest.errors import DeliveryError, Kind, PermanentFailure
from digest.models import (
    DeliveryStatus,
    Edition,
    EditionStatus,
    EventKind,
    SubscriberStatus,
)
from digest.replies import enhanced_code


@dataclass(frozen=True)
class RetryPolicy:
    """When a deferred message is tried again, and when we stop trying.

    ``steps`` are the waits before retry 1, 2, … (the last repeats); each wait
    is stretched by up to ``jitter`` at random, never shortened, so the first
    retry is never sooner than configured (RFC 5321 §4.5.4.1, MAIL-RULES 22)."""

    steps: tuple[float, ...] = (300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0)
    jitter: float = 0.2
    give_up_after: timedelta = timedelta(hours=24)
    # MAIL-RULES 23: a greylisting server refuses a retry sooner than its minimum
    # (Postgrey's default is 300 s), and a too-early retry starts the wait again.
    greylist: float = 300.0

    def delay(self, attempts: int, kind: Kind | None = None) -> timedelta:
        step = self.steps[min(max(attempts, 1), len(self.steps)) - 1]
        if kind is Kind.GREYLIST:
            step = max(step, self.greylist)
        return timedelta(seconds=step * (1 + random.uniform(0, self.jitter)))

    def deadline(self, first_attempt: datetime, edition_deadline: datetime | None) -> datetime:
        """MAIL-RULES 25: a daily edition gives up before the next one is built."""
        end = first_attempt + self.give_up_after
        return min(end, edition_deadline) if edition_deadline else end


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
    first_attempt_at: datetime | None = None
    subscriber_id: int | None = None
    kind: Kind | None = None

    @classmethod
    def sent(
        cls,
        delivery_id: int,
        attempts: int,
        at: datetime,
        code: int,
        reply: str,
        message_id: str,
        subscriber_id: int | None = None,
    ) -> Outcome:
        return cls(
            delivery_id,
            DeliveryStatus.SENT,
            attempts,
            at,
            code,
            reply,
            message_id,
            first_attempt_at=at,
            subscriber_id=subscriber_id,
        )

    @classmethod
    def from_error(
        cls,
        delivery_id: int,
        attempts: int,
        at: datetime,
        error: DeliveryError,
        message_id: str | None,
        *,
        subscriber_id: int | None = None,
        retry: RetryPolicy | None = None,
        first_attempt_at: datetime | None = None,
        edition_deadline: datetime | None = None,
        resume_at: datetime | None = None,
    ) -> Outcome:
        """The delivery's next state. ``attempts`` counts tries held against the
        address; ``resume_at`` (a paused domain or relay) sets the retry time."""
        kind = error.kind or (
            Kind.PERMANENT if isinstance(error, PermanentFailure) else Kind.TEMPORARY
        )
        first = first_attempt_at or at
        outcome = cls(
            delivery_id,
            DeliveryStatus.FAILED,
            attempts,
            at,
            code=error.code,
            reply=error.reply,
            message_id=message_id,
            first_attempt_at=first,
            subscriber_id=subscriber_id,
            kind=kind,
        )
        if isinstance(error, PermanentFailure):
            return (
                replace(outcome, status=DeliveryStatus.BOUNCED)
                if kind is Kind.HARD_BOUNCE
                else outcome
            )
        policy = retry or RetryPolicy()
        # A rate limit is the sender's pace: its wait is not counted against the address.
        tries = max(attempts, 1) if kind is not Kind.RATE_LIMIT else 1
        due = resume_at or at + policy.delay(tries, kind)
        if due > policy.deadline(first, edition_deadline):
            after = f" after {attempts} attempt(s)" if attempts else ""
            reply = f"gave up{after}: {error.reply}"
            return replace(outcome, reply=reply[:2000])
        return replace(outcome, status=DeliveryStatus.DEFERRED, next_attempt_at=due)

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
            self.first_attempt_at,
            self.delivery_id,
        )


@dataclass(frozen=True)
class Control:
    """What ops have said about the edition since the send started."""

    paused: bool = False
    cancelled: bool = False
    # Claimed deliveries whose subscriber has since unsubscribed, bounced or complained.
    gone: frozenset[int] = frozenset()

    @property
    def stop(self) -> str | None:
        return "cancelled" if self.cancelled else "paused" if self.paused else None


@dataclass(frozen=True)
class SoftBouncePolicy:
    """MAIL-RULES 24: N soft bounces on distinct days within M days suppress."""

    limit: int = 3
    days: int = 15


def record_bounces(
    session: Session,
    outcomes: Sequence[Outcome],
    policy: SoftBouncePolicy,
    *,
    source: str,
) -> None:
    """A hard bounce suppresses the address at once; soft ones are counted and
    suppress after ``policy.limit`` distinct days within ``policy.days``."""
    queries.add_events(
        session,
        [
            {
                "delivery_id": o.delivery_id or None,
                "subscriber_id": o.subscriber_id,
                "kind": EventKind.BOUNCE,
                "at": o.at,
                "detail": {
                    "soft": o.kind is Kind.SOFT_BOUNCE,
                    "code": o.code,
                    "reply": o.reply[:500],
                    "source": source,
                },
            }
            for o in outcomes
        ],
    )
    hard = {o.subscriber_id for o in outcomes if o.kind is Kind.HARD_BOUNCE and o.subscriber_id}
    queries.set_subscriber_status(session, hard, SubscriberStatus.BOUNCED, outcomes[0].at)
    for o in outcomes:
        if o.kind is Kind.SOFT_BOUNCE and o.subscriber_id and o.subscriber_id not in hard:
            days = queries.soft_bounce_days(
                session, o.subscriber_id, o.at - timedelta(days=policy.days)
            )
            if len(days) >= policy.limit:
                queries.set_subscriber_status(
                    session, [o.subscriber_id], SubscriberStatus.BOUNCED, o.at
                )


class DeliveryStore:
    """The send loop's view of the database: claim, record, release, heartbeat.
    Synchronous; the sender runs it on one worker thread so the event loop keeps sending."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        edition_id: int,
        worker: str,
        lease: timedelta = timedelta(minutes=2),
        soft_bounces: SoftBouncePolicy | None = None,
    ) -> None:
        self.factory = factory
        self.edition_id = edition_id
        self.worker = worker
        self.lease = lease
        self.soft_bounces = soft_bounces or SoftBouncePolicy()

    def claim(
        self, limit: int, now: datetime, skip_domains: Sequence[str] = ()
    ) -> tuple[list[queries.Claim], int]:
        with transaction(self.factory) as session:
            return queries.claim_deliveries(
                session, self.edition_id, self.worker, now, now + self.lease, limit, skip_domains
            )

    def record(self, outcomes: Sequence[Outcome]) -> None:
        with transaction(self.factory) as session:
            queries.record_outcomes(session, [o.row() for o in outcomes])
            bounces = [o for o in outcomes if o.kind in (Kind.HARD_BOUNCE, Kind.SOFT_BOUNCE)]
            if bounces:
                record_bounces(session, bounces, self.soft_bounces, source="smtp")

    def release(self, now: datetime) -> int:
        with transaction(self.factory) as session:
            released = queries.release_claims(session, self.edition_id, self.worker, now)
            edition = session.get(Edition, self.edition_id)
            if edition is not None and edition.status is EditionStatus.CANCELLED:
                queries.cancel_pending(session, self.edition_id, now)
            return released

    def heartbeat(self, now: datetime) -> Control:
        """Keep this worker's claims alive; read pause, cancel and unsubscribes."""
        with transaction(self.factory) as session:
            queries.extend_claims(session, self.edition_id, self.worker, now, now + self.lease)
            edition = session.get(Edition, self.edition_id)
            if edition is None:
                return Control(cancelled=True)
            return Control(
                paused=edition.paused_at is not None,
                cancelled=edition.status is EditionStatus.CANCELLED,
                gone=frozenset(queries.claims_gone(session, self.edition_id, self.worker)),
            )

    def next_due(self) -> datetime | None:
        with self.factory() as session:
            return queries.next_due(session, self.edition_id, exclude_worker=self.worker)


def apply_return(
    session: Session,
    finding: Any,
    now: datetime,
    soft_bounces: SoftBouncePolicy,
) -> str:
    """Apply one finding of returned mail (``bounces.Finding``); say what it did:
    bounced, soft, failed, complained, feedback, delayed, ignored or unattributed.

    MAIL-RULES 26: only a VERP token that verified (``finding.delivery_id``) or a
    Message-ID of ours that names exactly one delivery reaches a subscriber. The
    recipient a report names is never enough: anyone can write a DSN."""
    delivery = queries.delivery_by_id(session, finding.delivery_id) if finding.delivery_id else None
    if delivery is None and finding.message_id:
        delivery = queries.delivery_by_message_id(session, finding.message_id)
    if delivery is None or delivery.subscriber_id is None:
        return "unattributed"
    if finding.kind in ("delayed", "ignored"):
        return str(finding.kind)
    subscriber_id = delivery.subscriber_id
    delivery_id = delivery.id
    if finding.kind == "complaint":
        queries.add_events(
            session,
            [
                {
                    "delivery_id": delivery_id,
                    "subscriber_id": subscriber_id,
                    "kind": EventKind.COMPLAINT,
                    "at": now,
                    "detail": {"feedback_type": finding.feedback_type},
                }
            ],
        )
        if finding.feedback_type != "abuse":
            return "feedback"
        # MAIL-RULES 26: at once and for good, even over an unsubscribe.
        queries.set_subscriber_status(
            session, [subscriber_id], SubscriberStatus.COMPLAINED, now, also_unsubscribed=True
        )
        return "complained"
    kind = finding.bounce_kind or Kind.HARD_BOUNCE
    delivery.status = DeliveryStatus.BOUNCED if kind is Kind.HARD_BOUNCE else DeliveryStatus.FAILED
    delivery.smtp_code = finding.code
    delivery.smtp_reply = (finding.diagnostic or finding.status or "")[:2000]
    delivery.next_attempt_at = None
    delivery.updated_at = now
    outcome = Outcome(
        delivery_id,
        DeliveryStatus.BOUNCED,
        0,
        now,
        finding.code,
        finding.diagnostic or "",
        subscriber_id=subscriber_id,
        kind=kind,
    )
    if kind in (Kind.HARD_BOUNCE, Kind.SOFT_BOUNCE):
        record_bounces(session, [outcome], soft_bounces, source="dsn")
        return "bounced" if kind is Kind.HARD_BOUNCE else "soft"
    return "failed"


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
    more_failures: int = 0  # further groups of reasons not listed
    more_failures_count: int = 0  # … and the messages in them
    paused: bool = False
    next_retry: datetime | None = None
    # Opens (approximate: clients prefetch or block images) and clicks, when tracked.
    engagement: dict[str, int] = field(default_factory=dict)

    @property
    def eta_seconds(self) -> float | None:
        """Time to send what is due at the recent rate (retries come on their schedule)."""
        due = self.counts.get("queued", 0) + self.counts.get("sending", 0)
        if self.paused and due:
            return None
        if not due:
            return 0.0 if not self.pending else None
        return due / self.rate if self.rate else None

    @property
    def pending(self) -> int:
        return sum(
            self.counts.get(s.value, 0)
            for s in (DeliveryStatus.QUEUED, DeliveryStatus.SENDING, DeliveryStatus.DEFERRED)
        )

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("window_start", "window_end", "created_at", "sent_at", "next_retry"):
            value = data[key]
            data[key] = value.isoformat() if value else None
        data["rate"] = round(self.rate, 1) if self.rate else None
        data["pending"] = self.pending
        eta = self.eta_seconds
        data["eta_seconds"] = round(eta) if eta is not None else None
        return data


ADDRESS = re.compile(r"[^\s<>()\[\]\"',;:]+@[^\s<>()\[\]\"',;:]+")


def reason_key(code: int | None, reply: str) -> tuple[int | None, str, str]:
    """(code, enhanced code, text) with addresses masked: the same reply to two
    readers is one reason, not two."""
    enhanced = enhanced_code(reply) or ""
    text = reply.replace(enhanced, "", 1) if enhanced else reply
    return code, enhanced, ADDRESS.sub("…", " ".join(text.split()))


def group_failures(
    rows: Sequence[tuple[str, int | None, str, int]], shown: int = 5
) -> dict[str, Any]:
    """The ``shown`` commonest reasons, and how many more (groups and messages),
    so no failure vanishes from a report without a word."""
    groups: Counter[tuple[str, int | None, str, str]] = Counter()
    for status, code, reply, n in rows:
        groups[(status, *reason_key(code, reply))] += n
    # Commonest first; ties in a fixed order, so two runs print the same report.
    ranked = sorted(groups.items(), key=lambda g: (-g[1], g[0][0], g[0][1] or 0, *g[0][2:]))
    rest = ranked[shown:]
    return {
        "failures": [
            {"status": s, "code": code, "enhanced": enhanced, "reply": text, "count": n}
            for (s, code, enhanced, text), n in ranked[:shown]
        ],
        "more_failures": len(rest),
        "more_failures_count": sum(n for _, n in rest),
    }


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
        **group_failures(queries.failure_reasons(session, edition.id)),
        paused=edition.paused_at is not None,
        next_retry=queries.next_retry(session, edition.id),
        engagement=queries.engagement(session, edition.id),
    )
