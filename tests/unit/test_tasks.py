"""``send.tasks.together``: a send's connection workers side by side. When one met
the database gone past its limit, `gather` left the others running; each raised
the same later with nobody to read it, and `digest send` printed their
tracebacks at shutdown (the outage test saw one in a clean-clone run)."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from digest.errors import DatabaseAway
from digest.send.tasks import together


def run_and_collect(gathering: Any) -> list[dict[str, Any]]:
    """What the loop reported about tasks nobody waited for."""
    reported: list[dict[str, Any]] = []

    async def worker(n: int) -> None:
        if n == 0:
            await asyncio.sleep(0.01)
            raise DatabaseAway("gone")
        try:
            await asyncio.sleep(10)  # mid-message when the first gives up
        except asyncio.CancelledError:
            # Stopped, it waits for the database to hand its claim back: gone too.
            raise DatabaseAway("gone") from None

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: reported.append(ctx))
        with pytest.raises(DatabaseAway):
            await gathering(worker(n) for n in range(3))

    asyncio.run(main())  # its shutdown cancels what is left and reports what raised
    gc.collect()
    return reported


def test_when_one_fails_the_others_are_stopped_and_none_is_left_unread() -> None:
    assert run_and_collect(together) == []


def test_gather_alone_leaves_them_to_be_reported() -> None:
    """The wrong idea, kept as the proof that the test above can fail."""

    async def gather_only(coros: Any) -> None:
        await asyncio.gather(*coros)

    assert run_and_collect(gather_only), "gather left nothing unread: the test proves nothing"
