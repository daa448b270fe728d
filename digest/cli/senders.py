"""The entry of a sender process of `digest send` (DIGEST_SENDERS): a door of its
own, started by ``send.senders`` (``spawn``: nothing of the parent is inherited),
which wires the process's services once, sends its share and reports."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from digest.send.senders import Job


def sender_main(job: Job, reports: Any) -> None:
    """A sender process: wire the services once, send its share, report. What it
    uses is imported here, in the sender process: every command that wires the
    services names this function, and only a send's extra processes run it."""
    from digest.send.process import sender_signals, yield_cpu

    sender_signals()  # the parent's stop only, never lost while starting
    yield_cpu(job.settings.send_nice)
    from digest import db, logs
    from digest.kinds import utcnow
    from digest.send.senders import Reporter, stop_with
    from digest.wiring import Services

    logs.setup(job.log_level, job.log_json)
    stop_with(job.parent)
    engine = db.make_engine(job.settings.database)
    services = Services(job.settings, db.session_factory(engine), utcnow)
    result = services.sender.send_share(job, Reporter(reports))
    # Counts and how it ended; what it learned of the domains stays here.
    reports.put(("done", replace(result, domains={})))
