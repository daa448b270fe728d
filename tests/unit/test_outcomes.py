"""A delivery's next state after a reply: backoff on the schedule, the greylist's
minimum, rate limits never held against the address, permanent replies.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from digest.models import DeliveryStatus
from digest.track.outcomes import Outcome, RetryPolicy
from digest.track.replies import classify

NOW = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)


def test_backoff_follows_the_schedule_never_sooner_and_gives_up() -> None:
    policy = RetryPolicy(steps=(300, 900, 3600), jitter=0.2, give_up_after=timedelta(hours=24))
    random.seed(1)
    for attempts, step in ((1, 300), (2, 900), (3, 3600), (7, 3600)):
        delays = [policy.delay(attempts).total_seconds() for _ in range(200)]
        assert min(delays) >= step and max(delays) <= step * 1.2
        assert len(set(delays)) > 100  # jitter spreads retries out
    error = classify(451, "4.3.0 later")
    assert error is not None
    deferred = Outcome.from_error(1, 1, NOW, error, "<m>", retry=policy)
    assert deferred.status is DeliveryStatus.DEFERRED and deferred.next_attempt_at is not None
    assert deferred.next_attempt_at - NOW >= timedelta(minutes=5)
    late = Outcome.from_error(
        1, 9, NOW, error, "<m>", retry=policy, first_attempt_at=NOW - timedelta(hours=24)
    )
    assert late.status is DeliveryStatus.FAILED and late.reply.startswith("gave up after 9")
    # MAIL-RULES 25: the edition's own deadline (the next edition) comes first.
    capped = Outcome.from_error(
        1, 1, NOW, error, "<m>", retry=policy, edition_deadline=NOW + timedelta(minutes=1)
    )
    assert capped.status is DeliveryStatus.FAILED


def test_a_greylisted_recipient_waits_the_servers_minimum_then_the_schedule() -> None:
    policy = RetryPolicy(steps=(60, 900, 3600), jitter=0.2, greylist=300)
    grey = classify(451, "4.7.1 Please try again later")
    other = classify(451, "4.3.0 Mailbox temporarily unavailable")
    assert grey is not None and other is not None
    for _ in range(50):
        first = Outcome.from_error(1, 1, NOW, grey, "<m>", retry=policy).next_attempt_at
        assert first is not None and timedelta(seconds=300) <= first - NOW <= timedelta(seconds=360)
        second = Outcome.from_error(1, 2, NOW, grey, "<m>", retry=policy).next_attempt_at
        assert second is not None and second - NOW >= timedelta(seconds=900)
        plain = Outcome.from_error(1, 1, NOW, other, "<m>", retry=policy).next_attempt_at
        assert plain is not None and plain - NOW <= timedelta(seconds=72)


def test_a_rate_limit_is_never_counted_against_the_address() -> None:
    policy = RetryPolicy(steps=(60, 900, 3600), jitter=0.0)
    limited = classify(421, "4.7.0 Too many connections")
    assert limited is not None
    outcome = Outcome.from_error(1, 3, NOW, limited, "<m>", retry=policy)
    assert outcome.status is DeliveryStatus.DEFERRED and outcome.attempts == 3
    assert outcome.next_attempt_at == NOW + timedelta(seconds=60)  # the first step, not the 3rd


def test_permanent_replies_map_to_failed_or_bounced() -> None:
    hard = classify(550, "5.1.1 user unknown")
    spam = classify(554, "5.7.1 spam")
    assert hard is not None and spam is not None
    assert Outcome.from_error(1, 1, NOW, hard, None).status is DeliveryStatus.BOUNCED
    assert Outcome.from_error(1, 1, NOW, spam, None).status is DeliveryStatus.FAILED
