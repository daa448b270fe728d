"""The scheduler: editions go out every morning without anyone touching them.

``Runner.fire`` is the one code path for an edition's send time, whether
APScheduler calls it or ops run ``digest run SCHEDULE`` by hand:

* the edition date is the latest fire time at or before now (for ``local_time``
  schedules: the first wave, the earliest reader zone's send time);
* within ``grace_minutes`` of that time the edition goes out, once: the unique
  (schedule, date) edition and the delivery claims are the arbiters, so two
  schedulers (or a restart racing a catch-up) still make one edition;
* past it, the edition is marked ``missed`` and not sent (stale news is worse
  than none), unless ops run it by hand;
* with ``approval``, an unapproved draft is held or sent as the file says.

``Runner.prepare`` makes the draft ``prepare_minutes`` ahead, for editors.
APScheduler 3 (AsyncIOScheduler) keeps its jobs in the configured database;
each schedule file gives one send job (replace_existing, coalesce,
max_instances=1, misfire_grace_time from the file) and one prepare job. Jobs
name the schedule only; the file is read again at every fire.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from digest import queries
from digest.db import transaction
from digest.edition import Pipeline
from digest.errors import EmptyEdition
from digest.models import Edition, EditionStatus
from digest.schedule import Schedule, load_schedules

log = logging.getLogger(__name__)

DONE = (EditionStatus.SENDING, EditionStatus.SENT, EditionStatus.CANCELLED)


class Fired(enum.StrEnum):
    QUEUED = "queued"  # deliveries made; senders take them (in waves with local_time)
    HELD = "held"  # approval needed and not given: left as a draft
    MISSED = "missed"  # past the grace time: marked, not sent
    ALREADY = "already"  # this edition was sent, is sending, was cancelled or missed
    EMPTY = "empty"  # nothing was published in the window
    PREPARED = "prepared"  # the draft was made ahead of send time
    IDLE = "idle"  # nothing due


@dataclass(frozen=True)
class FireReport:
    schedule: str
    outcome: Fired
    edition_date: date | None = None
    due_at: datetime | None = None
    edition_id: int | None = None
    deliveries: int = 0
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "schedule": self.schedule,
            "outcome": str(self.outcome),
            "edition_date": self.edition_date.isoformat() if self.edition_date else None,
            "due_at": self.due_at.isoformat() if self.due_at else None,
            "edition_id": self.edition_id,
            "deliveries": self.deliveries,
            "note": self.note,
        }


class Runner:
    """Decides and does what a schedule's send time asks for."""

    def __init__(self, pipe: Pipeline) -> None:
        self.pipe = pipe

    def due(self, schedule: Schedule, now: datetime) -> tuple[date, datetime] | None:
        """(edition date, its send time) of the latest send time at or before now."""
        if not schedule.send.local_time:
            fired = schedule.latest_fire(now)
            return (schedule.today(fired), fired) if fired is not None else None
        zones = self._zones(schedule)
        best: tuple[date, datetime] | None = None
        for days in (-1, 0, 1):
            day = schedule.today(now) + timedelta(days=days)
            if schedule.fire_time(day) is None:
                continue
            first = min(schedule.local_send_time(day, zone) for zone in zones)
            if first <= now and (best is None or first > best[1]):
                best = (day, first)
        return best

    def send_time(self, schedule: Schedule, edition_date: date) -> datetime | None:
        """When the edition of ``edition_date`` goes (its first wave with local_time)."""
        if schedule.fire_time(edition_date) is None:
            return None
        if not schedule.send.local_time:
            return schedule.fire_time(edition_date)
        return min(schedule.local_send_time(edition_date, z) for z in self._zones(schedule))

    def _zones(self, schedule: Schedule) -> list[str]:
        with self.pipe.factory() as session:
            zones = queries.audience_zones(session, schedule.frequency, schedule.timezone)
        return zones or [schedule.timezone]

    def fire(
        self, name: str, now: datetime | None = None, *, edition_date: date | None = None
    ) -> FireReport:
        """The send time of ``name``. With ``edition_date`` (ops, by hand) the grace
        rule and the approval hold do not apply, and a missed edition is sent."""
        schedule = self.pipe.schedule(name)
        now = now or self.pipe.clock()
        by_hand = edition_date is not None
        if edition_date is None:
            found = self.due(schedule, now)
            if found is None:
                return FireReport(name, Fired.IDLE, note="no send time in the last week")
            edition_date, due_at = found
        else:
            due_at = self.send_time(schedule, edition_date) or now
        report = self._fire(schedule, edition_date, due_at, now, by_hand)
        level = logging.WARNING if report.outcome in (Fired.MISSED, Fired.HELD) else logging.INFO
        log.log(
            level,
            "%s/%s: %s%s",
            name,
            edition_date,
            report.outcome,
            f" ({report.note})" if report.note else "",
            extra={"edition": report.edition_id, "schedule": name},
        )
        return report

    def _fire(
        self, schedule: Schedule, day: date, due_at: datetime, now: datetime, by_hand: bool
    ) -> FireReport:
        name = schedule.name
        existing = self._edition(name, day)
        if existing is not None and (
            existing.status in DONE or (existing.status is EditionStatus.MISSED and not by_hand)
        ):
            return FireReport(name, Fired.ALREADY, day, due_at, existing.id, note=existing.status)
        late = now - due_at
        if not by_hand and late > timedelta(minutes=schedule.send.grace_minutes):
            edition_id = self._mark_missed(schedule, day)
            note = (
                f"the send time {due_at:%Y-%m-%d %H:%M} UTC passed {_minutes(late)} ago, more "
                f"than the grace of {schedule.send.grace_minutes} min; run "
                f"`digest run {name} --date {day}` to send it anyway"
            )
            return FireReport(name, Fired.MISSED, day, due_at, edition_id, note=note)
        if existing is not None and existing.status is EditionStatus.MISSED:
            self._reopen(existing)  # by hand: ops want it after all
        try:
            edition = self.pipe.build(schedule, day)
        except EmptyEdition as exc:
            return FireReport(name, Fired.EMPTY, day, due_at, note=str(exc))
        unapproved = edition.status is EditionStatus.DRAFT
        note = ""
        if schedule.send.approval and unapproved and not by_hand:
            if schedule.send.unapproved == "hold":
                note = (
                    "not approved: held as a draft; approve it (`digest approve "
                    f"{edition.label}`) and run `digest run {name} --date {day}`"
                )
                return FireReport(name, Fired.HELD, day, due_at, edition.id, note=note)
            note = "not approved: sent anyway, as the schedule file says (unapproved = send)"
        added = self.pipe.start_sending(schedule, edition)
        self.pipe.finish(edition)  # nobody to send to (no weekly readers yet): done now
        if schedule.send.local_time:
            note = (note + "; " if note else "") + "in waves at each reader's local time"
        return FireReport(name, Fired.QUEUED, day, due_at, edition.id, added, note)

    def prepare(self, name: str, now: datetime | None = None) -> FireReport:
        """Make (or refresh) the draft of the next edition once its send time is
        within ``prepare_minutes``."""
        schedule = self.pipe.schedule(name)
        now = now or self.pipe.clock()
        horizon = now + timedelta(minutes=schedule.send.prepare_minutes)
        for day in (schedule.today(now) + timedelta(days=d) for d in (0, 1, 2)):
            send_at = self.send_time(schedule, day)
            if send_at is None or not (now < send_at <= horizon):
                continue
            existing = self._edition(name, day)
            if existing is not None and existing.status is not EditionStatus.DRAFT:
                return FireReport(name, Fired.ALREADY, day, send_at, existing.id)
            try:
                edition = self.pipe.build(schedule, day)
            except EmptyEdition as exc:
                return FireReport(name, Fired.EMPTY, day, send_at, note=str(exc))
            return FireReport(name, Fired.PREPARED, day, send_at, edition.id)
        minutes = schedule.send.prepare_minutes
        return FireReport(name, Fired.IDLE, note=f"no send time within the next {minutes} min")

    def _edition(self, name: str, day: date) -> Edition | None:
        with self.pipe.factory() as session:
            return queries.edition_for(session, name, day)

    def _mark_missed(self, schedule: Schedule, day: date) -> int:
        """A row that says so: `digest editions` shows it, and a later fire skips it."""
        with transaction(self.pipe.factory) as session:
            edition = queries.edition_for(session, schedule.name, day)
            if edition is None:
                edition = self.pipe.new_edition(session, schedule, day, EditionStatus.MISSED)
            if edition.status in (EditionStatus.DRAFT, EditionStatus.APPROVED):
                edition.status = EditionStatus.MISSED
            session.flush()
            return edition.id

    def missed_at(self, name: str, scheduled: datetime) -> None:
        """APScheduler skipped the run at ``scheduled`` (past its grace time)."""
        schedule = self.pipe.schedule(name)
        day = schedule.today(scheduled)
        existing = self._edition(name, day)
        if existing is not None and existing.status not in (
            EditionStatus.DRAFT,
            EditionStatus.APPROVED,
        ):
            return
        log.warning(
            "%s/%s: missed (the scheduler was down at %s UTC, past the grace time)",
            name,
            day,
            f"{scheduled.astimezone(UTC):%Y-%m-%d %H:%M}",
            extra={"edition": self._mark_missed(schedule, day), "schedule": name},
        )

    def _reopen(self, edition: Edition) -> None:
        with transaction(self.pipe.factory) as session:
            current = session.get(Edition, edition.id)
            assert current is not None
            current.status = EditionStatus.DRAFT
        edition.status = EditionStatus.DRAFT


def _minutes(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


# -- APScheduler ------------------------------------------------------------------

# Jobs in a persistent store name a module-level function; it finds the runner here.
_RUNNER: Runner | None = None


def fire_job(name: str) -> None:
    assert _RUNNER is not None, "the scheduler sets the runner before it starts"
    _RUNNER.fire(name)


def prepare_job(name: str) -> None:
    assert _RUNNER is not None, "the scheduler sets the runner before it starts"
    _RUNNER.prepare(name)


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


def build_scheduler(pipe: Pipeline, schedules: dict[str, Schedule]) -> AsyncIOScheduler:
    """Jobs for every schedule file, kept in the configured database."""
    global _RUNNER
    _RUNNER = Runner(pipe)
    scheduler = AsyncIOScheduler(
        jobstores={"default": SQLAlchemyJobStore(url=pipe.settings.database)},
        timezone=UTC,
    )
    for name, schedule in schedules.items():
        jobs = (
            ("send", fire_job, send_trigger(schedule)),
            ("prepare", prepare_job, prepare_trigger(schedule)),
        )
        for kind, job, trigger in jobs:
            scheduler.add_job(
                job,
                trigger,
                args=[name],
                id=f"{kind}:{name}",
                name=f"{kind} {name}",
                replace_existing=True,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=schedule.send.grace_minutes * 60,
            )

    def on_event(event: JobExecutionEvent) -> None:
        # Down past misfire_grace_time: APScheduler skips the run; the runner marks
        # the edition missed (the same rule a late fire applies).
        if event.code == EVENT_JOB_MISSED and event.job_id.startswith("send:"):
            name = event.job_id.split(":", 1)[1]
            Runner(pipe).missed_at(name, event.scheduled_run_time)
        elif event.code == EVENT_JOB_ERROR:
            log.error("job %s failed: %s", event.job_id, event.exception)

    scheduler.add_listener(on_event, EVENT_JOB_MISSED | EVENT_JOB_ERROR)
    return scheduler


def catch_up(pipe: Pipeline, schedules: dict[str, Schedule]) -> list[FireReport]:
    """At start: the latest send time of every schedule, inside the grace or not,
    decided now (APScheduler only knows runs it had stored)."""
    runner = Runner(pipe)
    return [runner.fire(name) for name in schedules]


async def run_scheduler(
    pipe: Pipeline,
    stop: asyncio.Event,
    *,
    send: Callable[[asyncio.Event], Any] | None,
) -> None:
    """``digest scheduler``: catch up, then fire jobs until ``stop``; with ``send``
    the same process also sends what is due (waves included)."""
    schedules = load_schedules(pipe.settings.schedules_dir, pipe.settings.timezone)
    await asyncio.to_thread(catch_up, pipe, schedules)
    scheduler = build_scheduler(pipe, schedules)
    scheduler.start()
    for job in scheduler.get_jobs():
        log.info("job %s: next at %s", job.id, job.next_run_time)
    try:
        if send is not None:
            await send(stop)
        else:
            await stop.wait()
    finally:
        scheduler.shutdown(wait=False)
