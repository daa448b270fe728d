"""What a schedule's send time asks for: ``Runner.fire`` is the one code path for
an edition's send time, whether APScheduler calls it or ops run ``digest run
SCHEDULE`` by hand:

* the edition date is the latest fire time at or before now (for ``local_time``
  schedules: the first wave, the earliest reader zone's send time);
* within ``grace_minutes`` of that time the edition goes out, once: the unique
  (schedule, date) edition and the delivery claims are the arbiters, so two
  schedulers (or a restart racing a catch-up) still make one edition;
* past it, the edition is marked ``missed`` and not sent (stale news is worse
  than none), unless ops run it by hand;
* with ``approval``, an unapproved draft is held or sent as the file says.

``Runner.prepare`` makes the draft ``prepare_minutes`` ahead, for editors.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from digest import store
from digest.errors import EmptyEdition
from digest.models import Edition, EditionStatus
from digest.schedule.files import Schedule, load_schedules

if TYPE_CHECKING:
    from digest.db import Factory
    from digest.edition.build import Editions
    from digest.edition.lifecycle import Lifecycle
    from digest.models import Clock
    from digest.toolkit import Toolkit

log = logging.getLogger(__name__)


DONE = (EditionStatus.SENDING, EditionStatus.SENT, EditionStatus.CANCELLED)


class Fired(enum.StrEnum):
    QUEUED = "queued"  # deliveries made; senders take them (in waves with local_time)
    HELD = "held"  # approval needed and not given: left as a draft
    MISSED = "missed"  # past the grace time: marked, not sent
    ALREADY = "already"  # this edition was sent, is sending or was cancelled
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

    def __init__(
        self,
        factory: Factory,
        clock: Clock,
        tools: Toolkit,
        editions: Editions,
        lifecycle: Lifecycle,
    ) -> None:
        self.factory = factory
        self.clock = clock
        self.tools = tools
        self.editions = editions
        self.lifecycle = lifecycle

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
        with self.factory() as session:
            zones = store.audience_zones(session, schedule.audience(), schedule.timezone)
        return zones or [schedule.timezone]

    def fire(
        self,
        name: str,
        now: datetime | None = None,
        *,
        edition_date: date | None = None,
        force: bool = False,
        old_ok: bool = False,
    ) -> FireReport:
        """The send time of ``name``. With ``edition_date`` (ops, by hand) the grace
        rule does not apply and a missed edition is sent; a draft the schedule wants
        approved is held either way unless ``force`` (issue 28 §1: `digest run
        --date` once sent a never-approved draft)."""
        schedule = self.tools.schedule(name)
        now = now or self.clock()
        by_hand = edition_date is not None
        if edition_date is None:
            found = self.due(schedule, now)
            if found is None:
                return FireReport(name, Fired.IDLE, note="no send time in the last week")
            edition_date, due_at = found
        else:
            due_at = self.send_time(schedule, edition_date) or now
        # At the send time the grace rule keeps old editions away; by hand, --yes.
        old_ok = old_ok or not by_hand
        report = self._fire(schedule, edition_date, due_at, now, by_hand, force, old_ok)
        # Nothing happened is no news in a daemon's log (and `run` prints it anyway).
        quiet = report.outcome in (Fired.ALREADY, Fired.IDLE)
        loud = report.outcome in (Fired.MISSED, Fired.HELD)
        level = logging.WARNING if loud else logging.DEBUG if quiet else logging.INFO
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
        self,
        schedule: Schedule,
        day: date,
        due_at: datetime,
        now: datetime,
        by_hand: bool,
        force: bool = False,
        old_ok: bool = False,
    ) -> FireReport:
        name = schedule.name
        existing = self._edition(name, day)
        if existing is not None and existing.status in DONE:
            return FireReport(name, Fired.ALREADY, day, due_at, existing.id, note=existing.status)
        if existing is not None and existing.status is EditionStatus.MISSED and not by_hand:
            # Still missed, however often asked: the same outcome (and exit status).
            note = f"missed earlier; run `digest run {name} --date {day}` to send it anyway"
            return FireReport(name, Fired.MISSED, day, due_at, existing.id, note=note)
        late = now - due_at
        if not by_hand and late > timedelta(minutes=schedule.send.grace_minutes):
            edition_id = self.lifecycle.mark_missed(schedule, day)
            note = (
                f"the send time {due_at:%Y-%m-%d %H:%M} UTC passed {_minutes(late)} ago, more "
                f"than the grace of {schedule.send.grace_minutes} min; run "
                f"`digest run {name} --date {day}` to send it anyway"
            )
            return FireReport(name, Fired.MISSED, day, due_at, edition_id, note=note)
        if existing is not None and existing.status is EditionStatus.MISSED:
            self.lifecycle.reopen(existing)  # by hand: ops want it after all
        try:
            edition = self.editions.build(schedule, day)
        except EmptyEdition as exc:
            return FireReport(name, Fired.EMPTY, day, due_at, note=str(exc))
        unapproved = schedule.send.approval and edition.status is EditionStatus.DRAFT
        note = ""
        # By hand, --force; at the send time, the schedule file's `unapproved = send`.
        anyway = force if by_hand else schedule.send.unapproved == "send"
        if unapproved and not anyway:
            again = f"`digest run {name} --date {day}`"
            note = (
                f"not approved: held as a draft; approve it (`digest approve {edition.label}`) "
                f"and run {again}, or {again} --force to send it as it is"
            )
            return FireReport(name, Fired.HELD, day, due_at, edition.id, note=note)
        if unapproved:
            note = (
                "not approved: sent anyway (--force)"
                if by_hand
                else "not approved: sent anyway, as the schedule file says (unapproved = send)"
            )
        added = self.lifecycle.start_sending(schedule, edition, force=anyway, old_ok=old_ok)
        self.lifecycle.finish(edition)  # nobody to send to (no weekly readers yet): done now
        if schedule.send.local_time:
            note = (note + "; " if note else "") + "in waves at each reader's local time"
        return FireReport(name, Fired.QUEUED, day, due_at, edition.id, added, note)

    def prepare(self, name: str, now: datetime | None = None) -> FireReport:
        """Make (or refresh) the draft of the next edition once its send time is
        within ``prepare_minutes``."""
        schedule = self.tools.schedule(name)
        now = now or self.clock()
        horizon = now + timedelta(minutes=schedule.send.prepare_minutes)
        for day in (schedule.today(now) + timedelta(days=d) for d in (0, 1, 2)):
            send_at = self.send_time(schedule, day)
            if send_at is None or not (now < send_at <= horizon):
                continue
            existing = self._edition(name, day)
            if existing is not None and existing.status is not EditionStatus.DRAFT:
                return FireReport(name, Fired.ALREADY, day, send_at, existing.id)
            try:
                edition = self.editions.build(schedule, day)
            except EmptyEdition as exc:
                return FireReport(name, Fired.EMPTY, day, send_at, note=str(exc))
            return FireReport(name, Fired.PREPARED, day, send_at, edition.id)
        minutes = schedule.send.prepare_minutes
        return FireReport(name, Fired.IDLE, note=f"no send time within the next {minutes} min")

    def _edition(self, name: str, day: date) -> Edition | None:
        with self.factory() as session:
            return store.edition_for(session, name, day)

    def missed_at(self, name: str, scheduled: datetime) -> None:
        """APScheduler skipped the run at ``scheduled`` (past its grace time)."""
        schedule = self.tools.schedule(name)
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
            extra={"edition": self.lifecycle.mark_missed(schedule, day), "schedule": name},
        )

    def catch_up(self, schedules: dict[str, Schedule]) -> list[FireReport]:
        """At start: the latest send time of every schedule, inside the grace or not,
        decided now (APScheduler only knows runs it had stored)."""
        return [self.fire(name) for name in schedules]

    def overview(self, count: int, now: datetime) -> list[dict[str, Any]]:
        """Each schedule: its next ``count`` send times (in its zone and UTC) and its
        last edition, for `digest schedules`."""
        cfg = self.tools.settings
        rows = []
        for name, schedule in load_schedules(cfg.schedules_dir, cfg.timezone).items():
            with self.factory() as session:
                last = store.last_edition(session, name)
            nxt = [
                self.send_time(schedule, schedule.today(t)) or t
                for t in schedule.next_fires(now, count)
            ]
            rows.append(
                {
                    "schedule": name,
                    "title": schedule.title,
                    "cron": schedule.cron,
                    "timezone": schedule.timezone,
                    "local_time": schedule.send.local_time,
                    "approval": schedule.send.approval,
                    "grace_minutes": schedule.send.grace_minutes,
                    "next": [
                        {"local": t.astimezone(schedule.zone).isoformat(), "utc": t.isoformat()}
                        for t in nxt
                    ],
                    "last_edition": last.label if last else None,
                    "last_status": str(last.status) if last else None,
                }
            )
        return rows


def _minutes(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"
