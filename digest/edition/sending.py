"""The send service: an edition's send set up from the settings, the worker's
loop over every edition being sent, and ``deliver`` (what `digest send` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING

from digest import logs, store
from digest.compose import Composer, EditionMail, Message, MessageTemplate, Recipient
from digest.config import SmtpTarget
from digest.db import DatabaseError
from digest.errors import ComposeError
from digest.models import DeliveryStatus, Edition
from digest.outage import Outage
from digest.schedule.files import Schedule
from digest.send.journal import JournalPlace
from digest.send.ledger import DeliveryStore
from digest.send.limits import SharedLimits
from digest.send.options import journal_folder, send_options
from digest.send.pacing import DomainGate
from digest.send.process import Stopper, run_async, run_stoppable, stop_on_signals
from digest.send.recovery import Recovery
from digest.send.relays import RelayPool, probe_relays
from digest.send.result import RunResult, WorkReport
from digest.send.run import SendRun
from digest.send.senders import Entry, Job, senders
from digest.send.smtp import Connection, Progress
from digest.send.workers import worker_name
from digest.send.writer import Ledger
from digest.track.outcomes import SoftBouncePolicy

if TYPE_CHECKING:
    from digest.db import Factory
    from digest.edition.corrections import Corrections
    from digest.edition.lifecycle import Lifecycle
    from digest.models import Clock
    from digest.toolkit import Toolkit

log = logging.getLogger(__name__)


class Sender:
    """``Services.sender``. ``entry``: what each extra sender process of `digest
    send` runs (DIGEST_SENDERS; the CLI's); without one a send runs here alone."""

    def __init__(
        self,
        factory: Factory,
        clock: Clock,
        tools: Toolkit,
        lifecycle: Lifecycle,
        corrections: Corrections,
        entry: Entry | None = None,
    ) -> None:
        self.factory = factory
        self.clock = clock
        self.tools = tools
        self.lifecycle = lifecycle
        self.corrections = corrections
        self.entry = entry
        self.recovery = Recovery(factory, clock, tools)

    def templates(
        self, schedule: Schedule, edition: Edition, composer: Composer, subject_prefix: str = ""
    ) -> dict[int, MessageTemplate]:
        with self.factory() as session:
            stored = store.variants(session, edition.id, retired=True)
            subject = store.edition_by_id(session, edition.id).subject  # type: ignore[union-attr]
        mail = EditionMail(edition.id, schedule.name, edition.edition_date, subject)
        return {
            v.id: composer.template(mail, v.html, v.text, subject_prefix=subject_prefix)
            for v in stored
            if v.articles > 0
        }

    def send_run(
        self,
        schedule: Schedule,
        edition: Edition,
        connect: Callable[[SmtpTarget], Connection],
        *,
        worker: str,
        relays: RelayPool | None = None,
        gate: DomainGate | None = None,
        limit: int | None = None,
        wait: bool = False,
        progress: Progress | None = None,
        ledger: Ledger | None = None,
        paced: bool = True,
        share: int = 1,
    ) -> SendRun:
        """A send of the edition's due deliveries, from the settings. The same ``relays``
        and ``gate`` for successive runs keep what they learned; a dry run's ``ledger``
        replaces the claims; ``share`` senders split each domain's window."""
        cfg = self.tools.settings
        composer = self.tools.composer(schedule)
        templates = self.templates(schedule, edition, composer)

        def compose(claim: store.Claim) -> Message:
            template = templates.get(claim.variant_id or -1)
            if template is None:
                # A rebuild (a correction) made new variants since the run began: a
                # rare, one-off read on the loop, and every later claim finds its own.
                templates.update(self.templates(schedule, edition, composer))
                template = templates.get(claim.variant_id or -1)
            if template is None:
                raise ComposeError(f"delivery {claim.delivery_id}: no rendered variant")
            return composer.message(
                template,
                Recipient(
                    claim.subscriber_id, claim.email, claim.name, claim.token_key, claim.delivery_id
                ),
            )

        real = ledger is None  # a dry run brings its own ledger: nothing is counted
        return SendRun(
            ledger or self._ledger(edition, worker),
            compose,
            connect,
            relays or self.tools.relay_pool(),
            clock=self.clock,
            options=replace(
                send_options(cfg, edition, limit=limit, wait=wait, paced=paced, share=share),
                kind=schedule.name if real else "",
                # A dry run's "sent" must never reach the journal: it would be replayed.
                outage_limit=cfg.db_outage_limit if real else None,
                journal=JournalPlace(journal_folder(cfg), self.recovery.database, edition.id)
                if real
                else None,
            ),
            gate=gate or self.tools.domain_gate(share),
            progress=progress,
            sign=self.tools.dkim_signer().sign if cfg.dkim_key_file else None,
            limits=SharedLimits(self.factory) if real else None,
        )

    def _ledger(self, edition: Edition, worker: str) -> DeliveryStore:
        """The database's ledger of a send, asking about corrections between batches."""
        retry = self.tools.settings.retry
        return DeliveryStore(
            self.factory,
            edition.id,
            worker,
            lease=timedelta(seconds=retry.claim_lease),
            soft_bounces=SoftBouncePolicy(retry.soft_bounce_limit, retry.soft_bounce_days),
            between_batches=self.corrections.between_batches,
        )

    async def work(
        self,
        connect: Callable[[SmtpTarget], Connection] | None = None,
        *,
        worker: str,
        once: bool,
        stop: asyncio.Event,
        on_run: Callable[[SendRun | None], None] = lambda run: None,
    ) -> WorkReport:
        """``digest worker``: send every sending edition's due deliveries, sharing the
        work with other workers through the claims. ``once``: drain what is due now
        and return; otherwise poll until ``stop`` is set. ``connect``: the relays'
        connections (default: the settings')."""
        connect = connect or self.tools.connector()
        relays, gate = self.tools.relay_pool(), self.tools.domain_gate()
        report = WorkReport()
        schedules: dict[str, Schedule] = {}

        async def one_round() -> int:
            """Every sending edition's due deliveries, once: how many were claimed."""
            with self.factory() as session:
                editions = store.sending_editions(session)
            claimed = 0
            for edition in editions:
                if stop.is_set() or report.aborted:
                    break
                if edition.schedule not in schedules:
                    schedules[edition.schedule] = self.tools.schedule(edition.schedule)
                run = self.send_run(
                    schedules[edition.schedule], edition, connect, worker=worker,
                    relays=relays, gate=gate,
                )  # fmt: skip
                on_run(run)
                result = await run.run()
                on_run(None)
                claimed += result.claimed
                report.add(edition.label, result)
                if result.stopped == "paused" and self.corrections.auto_rebuild(edition):
                    claimed += 1  # rebuilt after a correction: look again at once
                self.lifecycle.finish(edition)
                report.aborted = report.aborted or result.aborted
            return claimed

        # Between runs too, a database that went away is waited for (a run waits
        # for it on its own): past DIGEST_DB_OUTAGE_LIMIT, DatabaseAway.
        outage = Outage(self.tools.settings.db_outage_limit)
        while not stop.is_set() and not report.aborted:
            try:
                claimed = await one_round()
                outage.recovered()
            except DatabaseError as exc:
                outage.met(exc)
                await asyncio.sleep(Outage.LONGEST)
                continue
            if once and not claimed:
                break
            if not claimed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.tools.settings.worker_poll)
        return report

    def deliver(
        self,
        schedule: Schedule,
        edition: Edition,
        *,
        limit: int | None = None,
        wait: bool = True,
        watch: Callable[[str, int], contextlib.AbstractContextManager[Progress | None]]
        | None = None,
        via: SmtpTarget | None = None,
        force: bool = False,
        old_ok: bool = False,
    ) -> RunResult:
        """`digest send`: check the relays, enqueue and send; with ``wait``, until every
        delivery is final. ``watch(label, total)`` gives what follows the progress.
        ``via`` sends through that relay instead of the configured ones (the demo's
        capture server). Infrastructure faults raise; a signal stops cleanly."""
        connect = self.tools.connector()
        relays = self.tools.relay_pool(via)
        run_async(probe_relays(relays, connect))
        self.reclaim()
        added = self.lifecycle.start_sending(schedule, edition, force=force, old_ok=old_ok)
        with self.factory() as session:
            counts = store.delivery_counts(session, edition.id)
        due = sum(counts.get(s, 0) for s in DeliveryStatus if not s.final)
        log.info(
            "sending %s through %s: %d new deliveries, %d to send",
            edition.label,
            ", ".join(str(r.target) for r in relays.relays),
            added,
            due,
            extra={"edition": edition.id},
        )
        total = min(due, limit) if limit else due
        with (watch or _unwatched)(edition.label, total) as progress:
            result = self._together(
                schedule, edition, connect, relays, via, limit=limit, wait=wait, progress=progress
            )
        self.lifecycle.finish(edition)
        log.info(
            # Deferred counts attempts, not readers: 449 readers once read as "15 533".
            "send of %s: %d sent, %d failed, %d bounced, %d suppressed; "
            "%d attempt(s) deferred and retried%s",
            edition.label,
            result.sent,
            result.failed,
            result.bounced,
            result.suppressed,
            result.deferred,
            f"; {result.ambiguous} ambiguous (the line dropped after the end of data: may "
            "arrive twice)"
            if result.ambiguous
            else "",
            extra={"edition": edition.id},
        )
        return result

    def _together(
        self,
        schedule: Schedule,
        edition: Edition,
        connect: Callable[[SmtpTarget], Connection],
        relays: RelayPool,
        via: SmtpTarget | None,
        *,
        limit: int | None,
        wait: bool,
        progress: Progress | None,
    ) -> RunResult:
        """This process's runs beside DIGEST_SENDERS - 1 sender processes (one alone
        with ``limit``): their counts added up."""
        jobs = self._jobs(schedule, edition, via, wait) if limit is None and self.entry else []
        with senders(jobs, progress, self.entry) as others:
            result = self.until_done(
                schedule,
                edition,
                connect,
                relays,
                limit=limit,
                wait=wait,
                progress=progress,
                on_stop=others.stop,
                share=len(jobs) + 1,
            )
            own = result.sent
            result = others.join().then(result)
        if jobs:
            shares = " + ".join(str(n) for n in [own, *others.sent_by])
            log.info("sent by %d sender processes: %s", len(jobs) + 1, shares)
        return result

    def _jobs(
        self, schedule: Schedule, edition: Edition, via: SmtpTarget | None, wait: bool
    ) -> list[Job]:
        """One job for each sender process beside this one (DIGEST_SENDERS - 1)."""
        cfg = self.tools.settings
        level, json_lines = logs.current()
        return [
            Job(
                cfg,
                edition.id,
                schedule.name,
                via,
                wait,
                cfg.senders,
                level,
                json_lines,
                os.getpid(),
            )
            for _ in range(cfg.senders - 1)
        ]

    def until_done(
        self,
        schedule: Schedule,
        edition: Edition,
        connect: Callable[[SmtpTarget], Connection],
        relays: RelayPool,
        *,
        limit: int | None,
        wait: bool,
        progress: Progress | None,
        on_stop: Callable[[str], None] | None = None,
        share: int = 1,
    ) -> RunResult:
        """Send runs of the edition: one, or again after a pause that is lifted (a
        correction rebuilt, DIGEST_ON_CORRECTION=rebuild, or by someone). A signal
        stops the run and is passed to ``on_stop`` (the other senders)."""
        result = RunResult()
        while True:
            run = self.send_run(
                schedule,
                edition,
                connect,
                worker=worker_name(),
                relays=relays,
                limit=None if limit is None else limit - result.claimed,
                wait=wait,
                progress=progress,
                share=share,
            )
            result = result.then(run_async(run_stoppable(run, on_stop)))
            if result.stopped != "paused":
                return result
            # Paused: go on when a rebuild lifts it here, or someone lifted it already
            # (an editor's rebuild, a `digest resume`, moments after the run saw it).
            if not (self.corrections.auto_rebuild(edition) or self.lifecycle.is_sending(edition)):
                return result
            result.stopped = None

    def send_share(self, job: Job, progress: Progress) -> RunResult:
        """A sender process's part of a `digest send` (its ``job``), until done."""
        with self.factory() as session:
            edition = store.edition_by_id(session, job.edition_id)
        assert edition is not None
        relays = self.tools.relay_pool(job.via)
        schedule, connect = self.tools.schedule(job.schedule), self.tools.connector()
        return self.until_done(
            schedule, edition, connect, relays, limit=None, wait=job.wait, progress=progress,
            share=job.share,
        )  # fmt: skip

    def reclaim(self) -> int:
        """What processes that died left (``send.recovery``), before anything is claimed."""
        return self.recovery.run()

    async def run_worker(self, name: str, once: bool) -> WorkReport:
        """`digest worker`: ``work`` until done (``once``) or a signal stops it cleanly."""
        stopper = Stopper()
        with stop_on_signals(stopper.on_signal):
            return await self.work(
                worker=name,
                once=once,
                stop=stopper.stop,
                on_run=stopper.on_run,
            )


def _unwatched(_label: str, _total: int) -> contextlib.AbstractContextManager[Progress | None]:
    return contextlib.nullcontext(None)
