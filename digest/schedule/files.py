"""Edition kinds from ``schedules/*.toml``: when each goes, its window, what goes in.

A schedule file is the editable outside of the system (ops add a weekly
edition without touching Python). APScheduler jobs are built from these.
"""

from __future__ import annotations

import builtins
import tomllib
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
)

from digest.config import ZoneName
from digest.errors import ScheduleError
from digest.headers import clean_text
from digest.kinds import Audience

if TYPE_CHECKING:
    from digest.models import Edition


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WindowSpec(_Strict):
    """The window of edition date D is [D − days at ``start``, D at ``start``) in the zone."""

    start: time = time(7, 0)
    days: int = Field(default=1, ge=1, le=31)


class SelectSpec(_Strict):
    max_articles: int = Field(default=20, ge=1, le=200)
    max_discussed: int = Field(default=10, ge=0, le=100)
    # Most discussed: articles published within this many days before the window ends.
    lookback_days: int = Field(default=7, ge=1, le=365)
    # Each commenter counts at most this many comments: two people arguing must
    # not outrank a broad discussion.
    comments_per_commenter: int = Field(default=3, ge=1)
    ranking: Literal["capped", "hot"] = "capped"
    # Which of the window's articles make the cut: the newest (daily) or the most
    # read (weekly: the week's best, not its last two days).
    order: Literal["newest", "most_read"] = "newest"
    # An article that went out before comes back under «Обсуждаемое» only with
    # at least this many comments posted since the edition that carried it.
    rediscuss_min_new_comments: int = Field(default=20, ge=1)


class MailSpec(_Strict):
    # Jinja templates (sandboxed, no autoescape: the result is a header and is
    # encoded per RFC 2047). Variables: date (15 сентября 2018), date_long,
    # site_name, lead_title, articles.
    subject: str = "{{ site_name }} за {{ date }}"
    preheader: str = "{{ lead_title }}"
    template: str = "digest"


class SendSpec(_Strict):
    """When and how the scheduler sends what it built."""

    # Each reader gets it at the cron's hour in their own zone: one edition, in waves.
    local_time: StrictBool = False
    # Down at fire time and back within this: it still goes, once. Later: `missed`.
    grace_minutes: int = Field(default=120, ge=1, le=24 * 60)
    # An editor approves the draft (`digest approve`, the desk) before it goes.
    approval: StrictBool = False
    # At send time an unapproved draft is sent anyway or held for an editor.
    unapproved: Literal["send", "hold"] = "hold"
    # The draft is made this long before send time (editors need it to approve).
    prepare_minutes: int = Field(default=60, ge=0, le=24 * 60)


class Schedule(_Strict):
    name: str
    title: str
    list: str = "daily"
    # Who gets it: subscribers who chose this frequency on their preferences page.
    frequency: Literal["daily", "weekly"] = "daily"
    cron: str = "0 7 * * *"
    timezone: ZoneName = "Europe/Moscow"
    window: WindowSpec = WindowSpec()
    select: SelectSpec = SelectSpec()
    mail: MailSpec = MailSpec()
    send: SendSpec = SendSpec()

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        CronTrigger.from_crontab(value, timezone=UTC)
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def audience(self, edition: Edition | None = None) -> Audience:
        """Who an edition of this schedule is for: the readers of its frequency; a
        special edition (issue 28 §6) every reader of the list, or one section's.
        Once its send started, only those subscribed by then."""
        if edition is None:
            return Audience(self.frequency)
        if edition.number:
            return Audience(None, edition.section, edition.audience_at)
        return Audience(self.frequency, None, edition.audience_at)

    def bounds(self, edition_date: date) -> tuple[datetime, datetime]:
        """[start, end) of an edition in UTC; computed in the schedule's zone, so a
        daylight-saving change gives a 23- or 25-hour window, not a shifted one."""
        end_local = datetime.combine(edition_date, self.window.start, tzinfo=self.zone)
        start_local = datetime.combine(
            edition_date - timedelta(days=self.window.days), self.window.start, tzinfo=self.zone
        )
        return start_local.astimezone(UTC), end_local.astimezone(UTC)

    def describe_window(self, edition_date: date) -> str:
        """«24.11.2026 07:00 – 25.11.2026 07:00 (Europe/Moscow)»"""
        start, end = (t.astimezone(self.zone) for t in self.bounds(edition_date))
        return f"{start:%d.%m.%Y %H:%M} – {end:%d.%m.%Y %H:%M} ({self.timezone})"

    def today(self, now: datetime) -> date:
        """The edition date that ``now`` falls on, in the schedule's zone."""
        return now.astimezone(self.zone).date()

    def trigger(self) -> CronTrigger:
        return CronTrigger.from_crontab(self.cron, timezone=self.zone)

    def fire_time(self, edition_date: date) -> datetime | None:
        """The first fire time on ``edition_date`` in the schedule's zone (UTC), or
        None when the cron does not fire that day (the weekly one on a Tuesday)."""
        start = datetime.combine(edition_date, time(0, 0), tzinfo=self.zone)
        fired: datetime | None = self.trigger().get_next_fire_time(None, start)
        if fired is None or fired.astimezone(self.zone).date() != edition_date:
            return None
        return fired.astimezone(UTC)

    def next_edition_time(self, edition_date: date) -> datetime | None:
        """When the edition after ``edition_date``'s is due (UTC): from then on this
        one is older than the schedule's period (issue 28 §1). Editions are one a
        day at most, so it is the first send time of a later day the cron fires on."""
        for days in range(1, 33):
            fired = self.fire_time(edition_date + timedelta(days=days))
            if fired is not None:
                return fired
        return None

    def latest_fire(self, now: datetime, days: int = 8) -> datetime | None:
        """The last fire time at or before ``now`` within ``days`` (UTC)."""
        trigger = self.trigger()
        latest: datetime | None = None
        fired = trigger.get_next_fire_time(None, now - timedelta(days=days))
        while fired is not None and fired <= now:
            latest = fired
            fired = trigger.get_next_fire_time(fired, fired + timedelta(seconds=1))
        return latest.astimezone(UTC) if latest is not None else None

    def next_fires(self, now: datetime, count: int) -> builtins.list[datetime]:
        # (``list`` is a field of this model: hence ``builtins``.)
        trigger = self.trigger()
        out: builtins.list[datetime] = []
        fired = trigger.get_next_fire_time(None, now)
        while fired is not None and len(out) < count:
            out.append(fired.astimezone(UTC))
            fired = trigger.get_next_fire_time(fired, fired + timedelta(seconds=1))
        return out

    def local_send_time(self, edition_date: date, zone: str) -> datetime:
        """``local_time``: the cron's time of day on ``edition_date`` in ``zone`` (UTC)."""
        fired = self.fire_time(edition_date) or datetime.combine(
            edition_date, self.window.start, tzinfo=self.zone
        )
        clock = fired.astimezone(self.zone).time()
        return datetime.combine(edition_date, clock, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def load_schedule(directory: Path, name: str, default_timezone: str = "Europe/Moscow") -> Schedule:
    """``directory/name.toml``; a file that names no time zone uses the site's.

    ``name`` may come from outside (the desk's form, a URL): it is looked up among
    the schedules that exist, never joined to a path (issue 24: ``../pyproject``
    read the project's own TOML and showed its keys and the install path)."""
    known = {p.stem: p for p in directory.glob("*.toml")}
    path = known.get(name)
    if path is None or not path.is_file():
        listed = ", ".join(sorted(known)) or "none"
        raise ScheduleError(f"no schedule {clean_text(name, 60)!r} (known: {listed})")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ScheduleError(f"{path}: not valid TOML: {exc}") from None
    data.setdefault("name", name)
    data.setdefault("timezone", default_timezone)
    try:
        return Schedule.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {str(e['msg']).removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise ScheduleError(f"{path}: {problems}") from None


def load_schedules(directory: Path, default_timezone: str = "Europe/Moscow") -> dict[str, Schedule]:
    return {
        p.stem: load_schedule(directory, p.stem, default_timezone)
        for p in sorted(directory.glob("*.toml"))
    }
