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
from digest.replies import NEGATIVE_FEEDBACK, RULES, Rule, classify, kind_of, rule_for
from digest.send import Decision, DomainGate, Pacer, RelayPool
from digest.track import Outcome, RetryPolicy

NOW = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("code", "reply", "kind"),
    [
        (250, "2.0.0 Ok: queued", None),
        (None, "connection lost", Kind.CONNECTION),
        (451, "4.3.0 Mailbox temporarily unavailable", Kind.TEMPORARY),
        # MAIL-RULES 23: greylisting is about one recipient, whatever its words
        (450, "4.2.0 greylisted", Kind.GREYLIST),
        (451, "4.7.1 Please try again later", Kind.GREYLIST),
        (450, "Greylisted for 5 minutes", Kind.GREYLIST),
        (451, "Try again later", Kind.GREYLIST),
        # … provider rate limits slow the domain, by code or by text
        (421, "4.7.0 Try again later, closing connection", Kind.RATE_LIMIT),
        (421, "4.7.28 Our system has detected an unusual rate of mail", Kind.RATE_LIMIT),
        (450, "4.2.1 Too many messages from your IP", Kind.RATE_LIMIT),
        (452, "4.5.3 rate limit exceeded", Kind.RATE_LIMIT),
        (451, "4.7.650 rate limited due to IP reputation", Kind.RATE_LIMIT),
        # … but Gmail's per-user limit names the user: that recipient only
        (
            450,
            "4.2.1 The user you are trying to contact is receiving mail too fast",
            Kind.TEMPORARY,
        ),
        (452, "4.2.2 Mailbox quota exceeded", Kind.SOFT_BOUNCE),
        (421, "4.3.2 Service not available, closing transmission channel", Kind.RELAY),
        (421, "4.7.1 Please try again later, closing", Kind.RELAY),  # 421 closes the line
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
        # … and 5.7.x is ours, never the address's, whatever the text says
        (554, "5.7.1 Message rejected as spam", Kind.POLICY),
        (550, "5.7.1 Email rejected per DMARC policy", Kind.POLICY),
        (550, "5.7.1 no such user here", Kind.POLICY),
        (550, "5.7.1 <x@example.ru>... User unknown", Kind.POLICY),
        (550, "no such user here", Kind.HARD_BOUNCE),
        (550, "Message blocked by reputation", Kind.POLICY),
        (552, "5.3.4 Message size exceeds fixed limit", Kind.PERMANENT),
        (554, "Transaction failed", Kind.PERMANENT),
    ],
)
def test_replies_are_classified_by_code_enhanced_code_and_text(
    code: int | None, reply: str, kind: Kind | None
) -> None:
    assert kind_of(code, reply) is kind


@pytest.mark.parametrize(
    ("rule", "example"), [(rule, example) for rule in RULES for example in rule.examples]
)
def test_every_example_of_the_rules_table_lands_on_its_own_line(rule: Rule, example: str) -> None:
    """The table of digest.replies (and the README's copy of it): each provider's
    own reply is judged by the line it illustrates, not an earlier one."""
    code, _, text = example.partition(" ")
    assert rule_for(int(code), text) is rule


def test_a_reply_about_one_recipient_never_slows_its_domain() -> None:
    for rule in RULES:
        slows = rule.kind in NEGATIVE_FEEDBACK
        assert slows == (rule.domain != "unchanged"), rule.name
        if rule.kind in (Kind.GREYLIST, Kind.TEMPORARY, Kind.HARD_BOUNCE, Kind.SOFT_BOUNCE):
            assert not slows, rule.name


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


def test_one_negative_reply_slows_a_domain_and_a_failed_cohort_pauses_it() -> None:
    """Postfix's concurrency feedback: −1/concurrency per negative reply, +1/concurrency
    per success; a pause only after a whole cohort (4 here) fails in a row."""
    gate = DomainGate(pause=600, max_pause=3600, cohort=1, connections=4)
    t = 0.0
    for _ in range(4):
        assert gate.admit("mail.ru", t) == (Decision.SEND, 0.0)
    assert gate.admit("mail.ru", t)[0] is Decision.WAIT  # 4 in flight: the window
    gate.done("mail.ru", Kind.RATE_LIMIT, t)
    st = gate.state("mail.ru")
    assert st.concurrency == pytest.approx(3.75) and st.limit == 3 and not st.paused_until
    gate.done("mail.ru", None, t)  # a success resets the failed cohort, adds 1/3.75
    assert st.failed_cohorts == 0 and st.concurrency == 4  # never above the connections
    gate.done("mail.ru", Kind.CONNECTION, t)
    gate.done("mail.ru", Kind.RELAY, t)
    assert not gate.paused(t)
    for _ in range(3):
        gate.admit("mail.ru", t)
    for _ in range(3):
        gate.done("mail.ru", Kind.RATE_LIMIT, t)
    assert gate.paused(t) == ("mail.ru",) and st.pauses == 1
    decision, wait = gate.admit("mail.ru", t + 1)
    assert decision is Decision.DEFER and wait == pytest.approx(599)
    assert gate.admit("gmail.com", t + 1)[0] is Decision.SEND  # other domains flow
    t = 601.0
    assert gate.admit("mail.ru", t)[0] is Decision.SEND
    assert gate.admit("mail.ru", t)[0] is Decision.WAIT  # one connection after a pause
    limits = []
    for _ in range(8):
        gate.done("mail.ru", None, t)
        limits.append(gate.state("mail.ru").limit)
        gate.admit("mail.ru", t)
    assert limits == [2, 2, 2, 3, 3, 3, 4, 4]  # +1/concurrency per success, up to all


def test_a_domain_that_pauses_again_pauses_longer_up_to_an_hour() -> None:
    gate = DomainGate(pause=600, max_pause=3600, cohort=1, connections=1)
    t, pauses = 0.0, []
    for _ in range(5):
        gate.admit("mail.ru", t)
        gate.done("mail.ru", Kind.CONNECTION, t)
        pauses.append(gate.resume_at("mail.ru") - t)
        t = gate.resume_at("mail.ru")
    assert pauses == [600, 1200, 2400, 3600, 3600]


def test_replies_about_one_recipient_leave_the_domain_alone() -> None:
    gate = DomainGate(pause=600, cohort=1, connections=2)
    for kind in (Kind.GREYLIST, Kind.TEMPORARY, Kind.HARD_BOUNCE, Kind.SOFT_BOUNCE) * 20:
        assert gate.admit("gmail.com", 0.0)[0] is Decision.SEND
        gate.done("gmail.com", kind, 0.0)
    st = gate.state("gmail.com")
    assert (st.concurrency, st.paused_until, st.slowed) == (2.0, 0.0, 0)


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
