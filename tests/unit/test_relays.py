"""Relay failover: shares by weight, a failed relay rests and comes back."""

from __future__ import annotations

from collections import Counter

import pytest

from digest.config import SmtpTarget
from digest.errors import Kind, RelayUnavailable, TemporaryFailure
from digest.send import RelayPool


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


def test_a_421_rests_the_relay_at_once_and_rests_double_up_to_ten_minutes() -> None:
    pool = RelayPool([SmtpTarget("a", 25), SmtpTarget("b", 25)], cooldown=200)
    busy = TemporaryFailure("421 4.3.2 try later", kind=Kind.RELAY)
    pool.failed(pool.relays[0], busy, 0.0)  # one 421: the relay says it is overloaded
    assert pool.relays[0].down_until == 200.0
    rests = []
    for _ in range(4):
        now = pool.relays[0].down_until
        pool.relays[0].checked = True
        pool.failed(pool.relays[0], busy, now)
        rests.append(pool.relays[0].down_until - now)
    assert rests == [400.0, 600.0, 600.0, 600.0]  # doubling, capped at MAX_COOLDOWN


def test_failures_of_a_resting_relay_are_the_same_outage() -> None:
    pool = RelayPool([SmtpTarget("a", 25)], cooldown=30)
    lost = TemporaryFailure("connection lost", kind=Kind.CONNECTION)
    for _ in range(3):
        pool.failed(pool.relays[0], lost, 5.0)
    assert pool.relays[0].down_until == 35.0
    for _ in range(10):  # the other connections notice the same outage
        pool.failed(pool.relays[0], lost, 6.0)
    assert pool.relays[0].down_until == 35.0 and pool.relays[0].outages == 1


def test_with_every_relay_resting_the_outage_is_timed_and_a_success_forgets_it() -> None:
    pool = RelayPool([SmtpTarget("a", 25)], cooldown=30, outage_limit=100)
    pool.rest(pool.relays[0], 0.0, "down")
    assert pool.pick(1.0) is None and not pool.outage_too_long(50.0)
    assert pool.outage_too_long(101.0) and pool.next_back() == 30.0
    pool.relays[0].checked = True
    assert pool.pick(31.0) is pool.relays[0] and not pool.outage_too_long(200.0)
    pool.succeeded(pool.relays[0])
    assert pool.relays[0].outages == 0 and pool.relays[0].failures == 0


def test_a_pool_without_relays_is_a_clear_error() -> None:
    with pytest.raises(RelayUnavailable, match="DIGEST_SMTP_URL"):
        RelayPool([])
