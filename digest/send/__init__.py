"""Send: the SMTP sessions, relay failover, pacing, the claim loop and the process glue.

Rooms: ``smtp`` (IO), ``relays``, ``pacing``, ``queue`` (the claims in hand),
``writer`` (the database thread), ``run`` (one send), ``workers`` (liveness),
``process`` (signals, the loop). Their public names are here too.
"""

from __future__ import annotations

from digest.send.pacing import Decision, DomainGate, DomainState, Pacer
from digest.send.process import run_async, run_stoppable, stop_on_signals
from digest.send.queue import ClaimQueue
from digest.send.relays import RelayPool, RelayState, probe_relays
from digest.send.result import RunResult, SendOptions
from digest.send.run import SendRun
from digest.send.smtp import (
    Connection,
    Progress,
    Single,
    SmtpConnection,
    Timeouts,
    connector,
    probe,
    send_each,
)
from digest.send.workers import reclaim_dead, worker_name
from digest.send.writer import Writer

__all__ = [
    "ClaimQueue",
    "Connection",
    "Decision",
    "DomainGate",
    "DomainState",
    "Pacer",
    "Progress",
    "RelayPool",
    "RelayState",
    "RunResult",
    "SendOptions",
    "SendRun",
    "Single",
    "SmtpConnection",
    "Timeouts",
    "Writer",
    "connector",
    "probe",
    "probe_relays",
    "reclaim_dead",
    "run_async",
    "run_stoppable",
    "send_each",
    "stop_on_signals",
    "worker_name",
]
