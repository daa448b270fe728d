"""Coroutines run side by side, with nobody's end left unread."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from typing import Any


async def together(coros: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run ``coros`` as tasks until each is done; when one raises, the others are
    cancelled and their ends collected before the error goes on. (``gather`` alone
    leaves them running: a send's connection workers, the database gone past its
    limit, each raised the same later with nobody to retrieve it, and the loop's
    shutdown printed their tracebacks to the person who ran `digest send`.)"""
    tasks = [asyncio.ensure_future(coro) for coro in coros]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
