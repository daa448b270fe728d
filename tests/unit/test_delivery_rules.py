"""MAIL-RULES 22–26 as tables: reply classification, backoff, the pacer, the
domain gate and the relay pool, each on a controlled clock (no sleeps)."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from digest.config import SmtpTarget
from digest.errors import Kind, PermanentFailure, TemporaryFailure
from digest.models import DeliveryStatus
from digest.send import Decision, DomainGate, Pacer, RelayPool
from digest.track import Outcome, RetryPolicy, classify, kind_of

NOW = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("code", "reply", "kind"),
    [
        (250, "2.0.0 Ok: queued", None),
        (None, "connection lost", Kind.CONNECTION),
        (451, "4.3.0 Mailbox temporarily unavailable", Kind.TEMPORARY),
        (450, "4.2.0 greylisted", Kind.TEMPORARY),
        # MAIL-RULES 23: rate limits, by code or by text
        (421, "4.7.0 Try again later, closing connection", Kind.RATE_LIMIT),
        (421, "4.7.28 Our system has detected an unusual rate of mail", Kind.RATE_LIMIT),
        (451, "4.7.1 Please try again later", Kind.RATE_LIMIT),
        (450, "4.2.1 Too many messages from your IP", Kind.RATE_LIMIT),
        (452, "4.5.3 rate limit exceeded", Kind.RATE_LIMIT),
        (421, "4.3.2 Service not available, closing transmission channel", Kind.RELAY),
        # MAIL-RULES 24: hard bounces suppress at once
        (550, "5.1.1 <x@example.ru>: user unknown", Kind.HARD_BOUNCE),
        (553, "5.1.2 bad destination system address", Kind.HARD_BOUNCE),
        (553, "5.1.3 bad destination mailbox address syntax", Kind.HARD_BOUNCE),
        (550, "5.2.1 The email account that you tried to reach is disabled", Kind.HARD_BOUNCE),
        (
            550,
            "The email account that you tried to reach doesn't have an account",
            Kind.HARD_BOUNCE,
        ),
        # … soft ones are counted
        (452, "4.2.2 Mailbox full", Kind.SOFT_BOUNCE),
        (552, "5.2.2 Mailbox full, over quota", Kind.SOFT_BOUNCE),
        # … and 5.7.x is ours, never the address's — unless the text says no such user
        (554, "5.7.1 Message rejected as spam", Kind.POLICY),
        (550, "5.7.1 Email rejected per DMARC policy", Kind.POLICY),
        (550, "5.7.1 no such user here", Kind.HARD_BOUNCE),
        (550, "Message blocked by reputation", Kind.POLICY),
        (552, "5.3.4 Message size exceeds fixed limit", Kind.PERMANENT),
        (554, "Transaction failed", Kind.PERMANENT),
    ],
)
def test_replies_are_classified_by_code_enhanced_code_and_text(
    code: int | None, reply: str, kind: Kind | None
) -> None:
    assert kind_of(code, reply) is kind


def test_classify_keeps_the_servers_words_and_the_house_errors() -> None:
    temp = classify(421, "4.7.0 Try again later")
    assert isinstance(temp, TemporaryFailure) and temp.kind is Kind.RATE_LIMIT
    assert (temp.code, temp.enhanced_code, temp.reply) == (421, "4.7.0", "4.7.0 Try again later")
    hard = classify(550, "5.1.1 user unknown", "x@example.ru")
    assert isinstance(hard, PermanentFailure) and hard.recipient == "x@example.ru"
    assert classify(250, "ok") is None


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


def test_permanent_replies_map_to_failed_or_bounced() -> None:
    hard = classify(550, "5.1.1 user unknown")
    spam = classify(554, "5.7.1 spam")
    assert hard is not None and spam is not None
    assert Outcome.from_error(1, 1, NOW, hard, None).status is DeliveryStatus.BOUNCED
    assert Outcome.from_error(1, 1, NOW, spam, None).status is DeliveryStatus.FAILED


def test_the_pacer_holds_the_rate_within_5_percent_over_any_10_seconds() -> None:
    now = 1000.0  # a controlled clock: the loop's time, advanced by hand
    pacer = Pacer(50.0)
    rng = random.Random(3)
    starts = []
    for _ in range(3000):
        now += rng.expovariate(80.0)  # callers arrive faster than the rate, in bursts
        starts.append(now + pacer.reserve(now))
    starts.sort()
    counts = []
    begin = starts[0]
    while begin + 10 <= starts[-1]:
        counts.append(sum(1 for s in starts if begin <= s < begin + 10))
        begin += 0.37
    assert counts and all(abs(c - 500) <= 25 for c in counts)
    assert Pacer(None).reserve(now) == 0.0


def test_a_rate_limited_domain_pauses_then_ramps_up_one_connection_at_a_time() -> None:
    gate = DomainGate(pause=600, ramp=2, connections=4)
    t = 0.0
    assert gate.admit("mail.ru", t) == (Decision.SEND, 0.0)
    gate.done("mail.ru", Kind.RATE_LIMIT, t)
    decision, wait = gate.admit("mail.ru", t + 1)
    assert decision is Decision.DEFER and wait == pytest.approx(599)
    assert gate.admit("gmail.com", t + 1)[0] is Decision.SEND  # other domains flow
    t = 601.0
    assert gate.admit("mail.ru", t)[0] is Decision.SEND
    assert gate.admit("mail.ru", t)[0] is Decision.WAIT  # one connection after a pause
    limits = []
    for _ in range(6):
        gate.done("mail.ru", None, t)
        limits.append(gate.state("mail.ru").limit)
        assert gate.admit("mail.ru", t)[0] is Decision.SEND
    assert limits == [1, 2, 2, 3, 3, None]  # one more every `ramp` successes, then all


def test_domain_caps_space_messages_and_defer_beyond_the_horizon() -> None:
    gate = DomainGate(caps={"gmail.com": 60}, horizon=5.0)
    waits = []
    for _ in range(6):
        decision, wait = gate.admit("gmail.com", 0.0)
        waits.append((decision, wait))
    assert [w for _, w in waits] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert gate.admit("gmail.com", 0.0) == (Decision.DEFER, 6.0)
    assert gate.admit("example.ru", 0.0) == (Decision.SEND, 0.0)


def test_relays_share_by_weight_and_a_resting_relay_gets_nothing() -> None:
    a, b = SmtpTarget("a", 25, weight=3), SmtpTarget("b", 25)
    pool = RelayPool([a, b], cooldown=30)
    picks = Counter(pool.pick(0.0).target.host for _ in range(400))  # type: ignore[union-attr]
    assert picks == {"a": 300, "b": 100}
    error = TemporaryFailure("connection lost")
    error.kind = Kind.CONNECTION
    for _ in range(3):
        pool.failed(pool.relays[0], error, 10.0)
    assert pool.relays[0].down_until == 40.0
    assert {pool.pick(11.0).target.host for _ in range(20)} == {"b"}  # type: ignore[union-attr]
    # Its rest over, it must pass a probe before it gets messages again.
    assert pool.to_check(41.0) is pool.relays[0] and pool.relays[0] not in pool.usable(41.0)
    pool.relays[0].checked = True
    assert pool.relays[0] in pool.usable(41.0)
    # A second outage rests twice as long.
    pool.failed(pool.relays[0], error, 42.0)
    assert pool.relays[0].down_until == 42.0 + 60
