"""The global rate and the per-domain gate (MAIL-RULES 23, 26, 27), on a controlled clock."""

from __future__ import annotations

import asyncio
import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest

from digest.errors import Kind
from digest.send import Decision, DomainGate, Pacer
from digest.send.limits import LeasedCap


@pytest.mark.timing
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
    assert gate.admit("mail.ru", t)[0] is Decision.SEND  # the probe
    assert gate.admit("mail.ru", t)[0] is Decision.WAIT  # one probe, nothing beside it
    assert gate.paused(t) == ("mail.ru",)  # not claimed while its probe is out
    gate.done("mail.ru", None, t)  # the probe is accepted: open at one connection
    assert st.limit == 1 and not st.probing and st.probes == 1
    limits = []
    for _ in range(8):
        gate.admit("mail.ru", t)
        gate.done("mail.ru", None, t)
        limits.append(gate.state("mail.ru").limit)
    assert limits == [2, 2, 2, 3, 3, 3, 4, 4]  # +1/concurrency per success, up to all


def test_a_domain_whose_probes_fail_is_held_longer_up_to_the_cap() -> None:
    gate = DomainGate(pause=5, max_pause=60, cohort=1, connections=1)
    t, pauses = 0.0, []
    for _ in range(6):
        assert gate.admit("mail.ru", t)[0] is Decision.SEND  # the first, then probes
        gate.done("mail.ru", Kind.CONNECTION, t)
        pauses.append(gate.resume_at("mail.ru") - t)
        t = gate.resume_at("mail.ru")
    assert pauses == [5, 10, 20, 40, 60, 60]
    assert gate.state("mail.ru").probes == 5


def test_a_probe_the_domain_answers_about_its_reader_reopens_it() -> None:
    """Postfix counts any reply of a live site as the site being up: a probe
    greylisted or refused for its one mailbox reopens the domain."""
    gate = DomainGate(pause=5, cohort=1, connections=2)
    for _ in range(2):
        gate.admit("mail.ru", 0.0)
    for _ in range(2):
        gate.done("mail.ru", Kind.RATE_LIMIT, 0.0)
    assert gate.admit("mail.ru", 5.0)[0] is Decision.SEND
    gate.done("mail.ru", Kind.GREYLIST, 5.0)
    st = gate.state("mail.ru")
    assert not st.probing and st.limit == 1 and gate.admit("mail.ru", 5.0)[0] is Decision.SEND


def test_a_probe_that_was_never_sent_leaves_the_domain_waiting_for_one() -> None:
    gate = DomainGate(pause=5, cohort=1, connections=1)
    gate.admit("mail.ru", 0.0)
    gate.done("mail.ru", Kind.CONNECTION, 0.0)
    assert gate.admit("mail.ru", 5.0)[0] is Decision.SEND
    gate.release("mail.ru")  # the reader left while claimed: nothing was sent
    st = gate.state("mail.ru")
    assert st.probing and not st.probe_out and gate.admit("mail.ru", 5.0)[0] is Decision.SEND


class FakeFleet:
    """``pacing.Fleet`` as the database answers it, in the test's hands."""

    def __init__(self) -> None:
        self.asked: list[asyncio.Future[bool]] = []
        self.said: list[tuple[str, str]] = []

    def pause(self, domain: str, why: str) -> None:
        self.said.append(("pause", domain))

    def take_probe(self, domain: str) -> asyncio.Future[bool]:
        self.asked.append(asyncio.get_running_loop().create_future())
        return self.asked[-1]

    def reopened(self, domain: str) -> None:
        self.said.append(("reopened", domain))

    def cleared(self, domain: str) -> None:
        self.said.append(("cleared", domain))


def test_with_a_fleet_the_pause_is_the_fleets_and_one_sender_probes() -> None:
    """Issue 25: a sender asks the fleet to pause and keeps the pause the fleet
    answers with (not its own count); when it ends the database gives the one
    probe to one sender; another sender's success reopens the domain here."""

    async def main() -> None:
        gate, fleet = DomainGate(pause=5, cohort=1, connections=1), FakeFleet()
        gate.fleet = fleet
        gate.admit("mail.ru", 0.0)
        gate.done("mail.ru", Kind.RATE_LIMIT, 0.0)
        assert fleet.said == [("pause", "mail.ru")]
        gate.decided("mail.ru", 40.0, "421 from mail.ru", 0.0)  # another decided first
        assert gate.admit("mail.ru", 39.0) == (Decision.DEFER, pytest.approx(1.0))
        assert gate.admit("mail.ru", 40.0)[0] is Decision.WAIT  # asking for the probe
        assert gate.admit("mail.ru", 40.0)[0] is Decision.WAIT and len(fleet.asked) == 1
        fleet.asked[0].set_result(False)  # another sender's probe is out
        await asyncio.sleep(0)
        assert gate.admit("mail.ru", 40.5)[0] is Decision.WAIT and len(fleet.asked) == 1
        assert gate.admit("mail.ru", 41.0)[0] is Decision.WAIT and len(fleet.asked) == 2
        fleet.asked[1].set_result(True)
        await asyncio.sleep(0)
        assert gate.admit("mail.ru", 41.0)[0] is Decision.SEND  # this sender's probe
        gate.done("mail.ru", None, 41.0)
        assert fleet.said[-1] == ("reopened", "mail.ru")
        # Held again by the fleet (read at a heartbeat), then reopened by another sender.
        gate.hold_all({"mail.ru": 10.0}, 50.0)
        assert gate.admit("mail.ru", 55.0)[0] is Decision.DEFER
        gate.hold_all({"mail.ru": 0.0}, 60.0)
        assert gate.paused(60.0) == ()  # claimable: one of its claims may be the probe
        gate.hold_all({}, 61.0)
        assert gate.admit("mail.ru", 61.0)[0] is Decision.SEND and len(fleet.asked) == 2

    asyncio.run(main())


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


def test_a_deferred_message_leaves_its_capped_slot_for_the_next() -> None:
    gate = DomainGate(caps={"gmail.com": 60}, horizon=0.5)
    assert gate.admit("gmail.com", 0.0) == (Decision.SEND, 0.0)
    # The next slot is a second away: beyond the horizon, deferred, and still free.
    assert gate.admit("gmail.com", 0.0) == (Decision.DEFER, 1.0)
    assert gate.admit("gmail.com", 0.0) == (Decision.DEFER, 1.0)
    assert gate.admit("gmail.com", 0.6) == (Decision.SEND, pytest.approx(0.4))


def test_senders_share_each_domains_window() -> None:
    """Issue 16: with three senders of one edition (counted at each heartbeat),
    each keeps a third of a domain's window (at least one message)."""
    gate = DomainGate(connections=6)
    gate.senders = 3
    assert [gate.admit("gmail.com", 0.0)[0] for _ in range(3)] == [
        Decision.SEND,
        Decision.SEND,
        Decision.WAIT,
    ]
    gate.senders = 10
    gate.done("gmail.com", None, 0.0)
    gate.done("gmail.com", None, 0.0)
    assert [gate.admit("gmail.com", 0.0)[0] for _ in range(2)] == [Decision.SEND, Decision.WAIT]


@pytest.mark.timing
def test_two_senders_leasing_one_caps_schedule_send_it_once() -> None:
    """The gate's slots come from a lease (the database's schedule, here a list):
    a claim waits while its slots are on their way, then goes in its slot; two
    senders' slots never coincide."""
    schedule = [0.0]  # where the shared schedule has got to, in loop time
    interval = 60.0 / 600

    def clock() -> datetime:
        return datetime.now(UTC)

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        sent: list[float] = []

        def gate() -> DomainGate:
            g = DomainGate(caps={"mail.ru": 600}, horizon=5.0)

            async def lease(n: int) -> datetime:
                await asyncio.sleep(0.001)  # a round trip
                start = max(loop.time(), schedule[0])
                schedule[0] = start + n * interval
                return clock() + timedelta(seconds=start - loop.time())

            g.cap_slots = lambda _d, cap: LeasedCap(lease, cap, g.freed.set, clock)
            return g

        async def sender(g: DomainGate) -> None:
            while len(sent) < 30:
                decision, delay = g.admit("mail.ru", loop.time())
                if decision is Decision.WAIT:
                    g.freed.clear()
                    await g.freed.wait()
                    continue
                assert decision is Decision.SEND
                # The slot the gate gave (not when the loop woke: under load it
                # wakes late, and the test would measure the machine, not the gate).
                sent.append(loop.time() + delay)
                await asyncio.sleep(delay)
                g.done("mail.ru", None, loop.time())

        await asyncio.gather(sender(gate()), sender(gate()))
        return sorted(sent)

    sent = asyncio.run(main())
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert min(gaps) >= interval * 0.9, gaps  # float time, converted to and from UTC
    assert sent[-1] - sent[0] >= (len(sent) - 1) * interval * 0.9
