"""The global rate and the per-domain gate (MAIL-RULES 23, 26, 27), on a controlled clock."""

from __future__ import annotations

import random

import pytest

from digest.errors import Kind
from digest.send import Decision, DomainGate, Pacer


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
