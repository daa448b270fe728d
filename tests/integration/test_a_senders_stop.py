"""How a sender process of `digest send` (DIGEST_SENDERS) hears its stop, in a
real process with real signals (the point is the process, so it is one).

A SIGTERM to the process group reaches a sender twice: from the terminal or
systemd, and from its parent passing the stop on. The first began the clean stop
and gave SIGTERM back its default action, so the second, arriving a moment later
on a loaded machine, killed the sender before its report: "1 sender process(es)
ended without a report" (seen in the suite under load). A sender stops once and
hears every later SIGTERM as the same stop."""

from __future__ import annotations

import signal
import subprocess
import sys

SENDER = """
import asyncio, os, signal
from digest.send.process import sender_signals, stop_on_signals

async def main():
    stops = []
    done = asyncio.Event()
    def stop(reason):
        stops.append(reason)
        done.set()
    with stop_on_signals(stop):
        os.kill(os.getpid(), signal.SIGTERM)   # the group's SIGTERM
        await done.wait()
        await asyncio.sleep(0.05)               # the clean stop is under way
        os.kill(os.getpid(), signal.SIGTERM)   # the parent's, passed on
        await asyncio.sleep(0.05)
        print("reported after", len(stops), "stop(s)", flush=True)
    os.kill(os.getpid(), signal.SIGTERM)       # late, while it reports: heard, not fatal
    await asyncio.sleep(0.05)
    print("still here", flush=True)

signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # as started_as_senders does
sender_signals()
asyncio.run(main())
"""

OTHER = SENDER.replace(
    "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # as started_as_senders does\n"
    "sender_signals()\n",
    "",
)


def test_a_sender_told_to_stop_twice_stops_once_and_reports() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SENDER], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.split("\n")[:2] == ["reported after 1 stop(s)", "still here"]


def test_any_other_process_still_dies_at_a_second_sigterm() -> None:
    """`digest send` itself: a second Ctrl-C or SIGTERM acts as usual."""
    done = subprocess.run([sys.executable, "-c", OTHER], capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGTERM, (done.returncode, done.stdout, done.stderr[-2000:])
