"""APScheduler 3 (AsyncIOScheduler) keeps the jobs in the configured database;
each schedule file gives one send job (replace_existing, coalesce,
max_instances=1, misfire_grace_time from the file) and one prepare job. Jobs
name the schedule only; the file is read again at every fire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from digest import store
from digest.db import DatabaseError, transaction
from digest.errors import DigestError
from digest.observe.health import HEARTBEAT_EVERY
from digest.outage import Outage
from digest.schedule.files import Schedule, load_schedules
from digest.schedule.runner import Runner
from digest.send.process import Stopper, stop_on_signals
from digest.send.workers import worker_name

if TYPE_CHECKING:
    from digest.audience.sunset import Sunset
    from digest.config import Settings
    from digest.db import Factory
    from digest.edition.sending import Sender
    from digest.models import Clock
    from digest.sources.sync import Sources
    from digest.track.retention import Retention

log = logging.getLogger(__name__)


# Jobs in a persistent store name a module-level function; it finds the runner here.
_RUNNER: Runner | None = None


def fire_job(name: str) -> None:
    runner = _RUNNER
    assert runner is not None, "the scheduler sets the runner before it starts"
    # A fire that meets the database away is tried again until it is back (issue
    # 18); the grace rule then decides on the clock of that moment, as for a late
    # fire. APScheduler itself retries its job store every 10 s meanwhile.
    Outage(runner.tools.settings.db_outage_limit).wait_sync(lambda: runner.fire(name))


_SUNSET: Sunset | None = None


def sunset_job(list_name: str) -> None:
    """The sunset rule once a day (issue 28 §5); a refusal (too little click
    history, no per-reader clicks) is logged, not raised: it is tried again tomorrow."""
    sunset = _SUNSET
    assert sunset is not None, "the scheduler sets the sunset rule before it starts"
    try:
        report = asyncio.run(sunset.run(list_name))
    except DigestError as exc:
        log.warning("sunset rule for %s not run: %s", list_name, exc)
        return
    log.info(
        "sunset rule for %s: %d asked, %d paused", list_name, len(report.asked), len(report.paused)
    )


_SOURCES: Sources | None = None


def sync_job(name: str) -> None:
    """One site database source's sync (issue 29), every ``sync_every`` minutes; a
    failure is logged and kept with the source (`digest sources` shows it)."""
    sources = _SOURCES
    assert sources is not None, "the scheduler sets the sources before it starts"
    try:
        (report,) = sources.sync(name)
    except DigestError as exc:
        log.warning("source %s not synced: %s", name, exc)
        return
    if report.error:
        log.warning("%s", report.error)
    else:
        log.info("source %s: %s rows read", name, sum(report.rows.values()))


_RETENTION: tuple[Retention, int] | None = None


def history_job(name: str) -> None:
    """Nightly: the next days' delivery partitions made (PostgreSQL), and with
    DIGEST_KEEP_DELIVERIES set, old editions' rows made summaries (issue 31 §4).
    A refusal or a database away is logged; the next night tries again."""
    assert _RETENTION is not None, "the scheduler sets the retention before it starts"
    retention, keep = _RETENTION
    make_room(retention)
    try:
        if keep:
            report = retention.prune(keep)
            log.info(
                "%s: %d editions' delivery rows pruned (%d rows, %d days dropped)",
                name,
                len(report.editions),
                report.rows,
                len(report.days),
            )
    except (DigestError, DatabaseError) as exc:
        log.warning("%s history not kept tonight: %s", name, exc)


def make_room(retention: Retention) -> None:
    """The week's delivery partitions (PostgreSQL), at start and nightly; a
    database away is logged: the next night tries again, a send makes its own."""
    try:
        made = retention.make_room()
    except DatabaseError as exc:
        log.warning("delivery partitions not made: %s", exc)
        return
    if made:
        log.info("delivery partitions made for %s", ", ".join(map(str, made)))


def prepare_job(name: str) -> None:
    runner = _RUNNER
    assert runner is not None, "the scheduler sets the runner before it starts"
    Outage(runner.tools.settings.db_outage_limit).wait_sync(lambda: runner.prepare(name))


class ShiftedTrigger(BaseTrigger):  # type: ignore[misc]
    """A cron trigger moved earlier by some minutes: the draft is prepared
    ``prepare_minutes`` before each send time. Picklable, for the job store."""

    def __init__(self, inner: CronTrigger, minutes: int) -> None:
        self.inner = inner
        self.minutes = minutes

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        shift = timedelta(minutes=self.minutes)
        previous = previous_fire_time + shift if previous_fire_time is not None else None
        fired: datetime | None = self.inner.get_next_fire_time(previous, now + shift)
        return fired - shift if fired is not None else None

    def __getstate__(self) -> dict[str, Any]:
        return {"version": 1, "inner": self.inner, "minutes": self.minutes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.inner = state["inner"]
        self.minutes = state["minutes"]

    def __str__(self) -> str:
        return f"{self.inner} − {self.minutes} min"


def send_trigger(schedule: Schedule) -> CronTrigger:
    """The send job's trigger. With ``local_time`` it fires every hour at the cron's
    minute: the runner works out whether some zone's morning has come."""
    if schedule.send.local_time:
        minute = schedule.cron.split()[0]
        return CronTrigger(minute=minute, hour="*", timezone=UTC)
    return schedule.trigger()


def prepare_trigger(schedule: Schedule) -> BaseTrigger:
    """``prepare_minutes`` before each send time; hourly with ``local_time``, where
    the first wave moves with the readers' zones (the runner checks the horizon)."""
    if schedule.send.local_time:
        return send_trigger(schedule)
    return ShiftedTrigger(schedule.trigger(), schedule.send.prepare_minutes)


def _add(
    scheduler: AsyncIOScheduler,
    job: Callable[[str], None],
    trigger: BaseTrigger,
    kind: str,
    name: str,
    grace_seconds: int,
) -> None:
    """A job kept in the database under ``kind:name``: one run at a time, a missed
    run coalesced into one, late by at most ``grace_seconds``."""
    scheduler.add_job(
        job,
        trigger,
        args=[name],
        id=f"{kind}:{name}",
        name=f"{kind} {name}",
        replace_existing=True,
        coalesce=True,
        max_instances=1,
        misfire_grace_time=grace_seconds,
    )


class Scheduling:
    """``Services.scheduling``: `digest scheduler`'s jobs, its heartbeat and its loop."""

    def __init__(
        self,
        settings: Settings,
        factory: Factory,
        clock: Clock,
        runner: Runner,
        sender: Sender,
        sunset: Sunset | None = None,
        sources: Sources | None = None,
        retention: Retention | None = None,
    ) -> None:
        self.retention = retention
        self.sunset = sunset
        self.sources = sources
        self.settings = settings
        self.factory = factory
        self.clock = clock
        self.runner = runner
        self.sender = sender

    def build(self, schedules: dict[str, Schedule]) -> AsyncIOScheduler:
        """Jobs for every schedule file, kept in the configured database."""
        global _RUNNER
        _RUNNER = runner = self.runner
        scheduler = AsyncIOScheduler(
            jobstores={"default": SQLAlchemyJobStore(url=self.settings.database)},
            timezone=UTC,
        )
        for name, schedule in schedules.items():
            jobs = (
                ("send", fire_job, send_trigger(schedule)),
                ("prepare", prepare_job, prepare_trigger(schedule)),
            )
            for kind, job, trigger in jobs:
                _add(scheduler, job, trigger, kind, name, schedule.send.grace_minutes * 60)

        self._sunset_jobs(scheduler, schedules)
        self._sync_jobs(scheduler)
        self._history_job(scheduler)

        def on_event(event: JobExecutionEvent) -> None:
            # Down past misfire_grace_time: APScheduler skips the run; the runner marks
            # the edition missed (the same rule a late fire applies).
            if event.code == EVENT_JOB_MISSED and event.job_id.startswith("send:"):
                name = event.job_id.split(":", 1)[1]
                runner.missed_at(name, event.scheduled_run_time)
            elif event.code == EVENT_JOB_ERROR:
                log.error("job %s failed: %s", event.job_id, event.exception)

        scheduler.add_listener(on_event, EVENT_JOB_MISSED | EVENT_JOB_ERROR)
        return scheduler

    def _sunset_jobs(self, scheduler: AsyncIOScheduler, schedules: dict[str, Schedule]) -> None:
        """With DIGEST_SUNSET_AFTER set, the rule runs daily at 10:00 in the site's zone
        for every list a schedule sends to."""
        global _SUNSET
        _SUNSET = self.sunset
        if self.sunset is None or not self.sunset.on:
            return
        daily = CronTrigger(hour=10, minute=0, timezone=self.settings.zone)
        for list_name in sorted({s.list for s in schedules.values()}):
            _add(scheduler, sunset_job, daily, "sunset", list_name, 6 * 3600)

    def _history_job(self, scheduler: AsyncIOScheduler) -> None:
        """Daily at 03:30 in the site's zone, when no edition is being built."""
        global _RETENTION
        if self.retention is None:
            return
        _RETENTION = (self.retention, self.settings.keep_deliveries)
        nightly = CronTrigger(hour=3, minute=30, timezone=self.settings.zone)
        _add(scheduler, history_job, nightly, "history", "delivery", 6 * 3600)

    def _sync_jobs(self, scheduler: AsyncIOScheduler) -> None:
        """Each site database source every ``sync_every`` minutes (0: none)."""
        global _SOURCES
        _SOURCES = self.sources
        if self.sources is None:
            return
        for name, source in self.sources.sources().items():
            if source.sync_every:
                every = IntervalTrigger(minutes=source.sync_every, timezone=UTC)
                _add(scheduler, sync_job, every, "sync", name, source.sync_every * 60)

    async def run(
        self,
        stop: asyncio.Event,
        *,
        send: Callable[[asyncio.Event], Any] | None,
    ) -> None:
        """``digest scheduler``: catch up, then fire jobs until ``stop``; with ``send``
        the same process also sends what is due (waves included)."""
        schedules = load_schedules(self.settings.schedules_dir, self.settings.timezone)
        await asyncio.to_thread(self.runner.catch_up, schedules)
        scheduler = self.build(schedules)
        if self.retention is not None:  # this week's partitions before any send
            await asyncio.to_thread(make_room, self.retention)
        scheduler.start()
        for job in scheduler.get_jobs():
            log.info("job %s: next at %s", job.id, job.next_run_time)
        beat_name = f"scheduler:{worker_name()}"
        beating = asyncio.ensure_future(self._beat(beat_name, stop))
        try:
            if send is not None:
                await send(stop)
            else:
                await stop.wait()
        finally:
            scheduler.shutdown(wait=False)
            beating.cancel()
            await asyncio.to_thread(self._beat_once, beat_name, False)

    async def _beat(self, name: str, stop: asyncio.Event) -> None:
        """Every HEARTBEAT_EVERY seconds: alive (`/healthz` and doctor read it)."""
        while not stop.is_set():
            try:
                await asyncio.to_thread(self._beat_once, name, True)
            except DatabaseError as exc:  # the database went away: health says so
                log.warning("heartbeat not written: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), HEARTBEAT_EVERY)

    def _beat_once(self, name: str, alive: bool) -> None:
        with transaction(self.factory) as session:
            if alive:
                store.beat(session, name, "scheduler", self.clock())
            else:
                store.stop_beating(session, name)

    async def run_until_signalled(self, name: str, enqueue_only: bool) -> None:
        """`digest scheduler`: fire jobs, and unless ``enqueue_only`` send what is due in
        the same process (as worker ``name``), until SIGINT or SIGTERM stop it cleanly."""
        stopper = Stopper()

        async def send(until: asyncio.Event) -> None:
            await self.sender.work(
                worker=name,
                once=False,
                stop=until,
                on_run=stopper.on_run,
            )

        with stop_on_signals(stopper.on_signal):
            await self.run(stopper.stop, send=None if enqueue_only else send)
