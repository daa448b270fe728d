"""DIGEST_SMTP_RATE's bucket in the database is leased in grants, not token by token.

Two senders sharing 400 messages a second (grants of 20, a twentieth of a second's
worth) had asked the database again every 2 ms once the bucket ran dry, each time
for the one or two tokens that had dripped in since: a transaction per message or
two, a core's worth of polling at a rate set at 730 a second (bench/send.py
--dkim's paced run used 1 567 µs of CPU a message where the unpaced used 797). A
sender that finds too few tokens waits for a whole grant instead.
"""

from __future__ import annotations

import asyncio

from digest.kinds import utcnow
from digest.send.limits import GLOBAL, SharedLimits, SharedRate
from digest.wiring import Services


def test_two_senders_lease_the_shared_rate_a_grant_at_a_time(services: Services) -> None:
    rate, each = 400.0, 200  # a second's worth between two senders
    limits = SharedLimits(services.factory)
    asked: list[int] = []

    async def take(want: int) -> tuple[int, float]:
        granted, wait = await asyncio.to_thread(limits.take, GLOBAL, rate, want, utcnow)
        asked.append(granted)
        return granted, wait

    async def sender(bucket: SharedRate) -> int:
        for _ in range(each):
            await bucket.acquire()
        return each

    async def main() -> list[int]:
        return list(await asyncio.gather(*(sender(SharedRate(take, rate)) for _ in range(2))))

    assert asyncio.run(main()) == [each, each]
    grant = SharedRate(take, rate).grant
    assert grant == 20
    granted = [n for n in asked if n]
    assert sum(asked) >= 2 * each
    # Every grant a whole one (the last of each sender may be more than it spends),
    # and the asks that found the bucket short at most one per grant and sender.
    assert set(granted) == {grant}, sorted(granted)
    assert len(asked) - len(granted) <= 2 * len(granted) + 2, (len(asked), len(granted))
