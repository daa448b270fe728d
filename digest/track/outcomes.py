"""Outcomes: what one SMTP attempt did to a delivery, and when it is tried again."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from digest.errors import DeliveryError, Kind, PermanentFailure
from digest.models import (
    DeliveryStatus,
)


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
        return timedelta(seconds=step * (1 + random.uniform(0, self.jitter)))  # nosec B311  # retry jitter spreads load, it guards nothing

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
    # The line dropped after the end of data: the message may have been delivered
    # and may arrive twice (Postfix: "message may be sent more than once").
    ambiguous: bool = False

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
            ambiguous=error.ambiguous,
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
        """The values ``store.record_outcomes`` writes, in its column order."""
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
            int(self.ambiguous),
            self.delivery_id,
        )


@dataclass(frozen=True)
class SoftBouncePolicy:
    """MAIL-RULES 24: N soft bounces on distinct days within M days suppress."""

    limit: int = 3
    days: int = 15
