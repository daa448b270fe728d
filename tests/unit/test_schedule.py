from __future__ import annotations

import pickle
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from digest.audience.lists import load_lists
from digest.errors import ConfigError, ScheduleError
from digest.schedule.files import load_schedule, load_schedules
from digest.schedule.jobs import ShiftedTrigger

ROOT = Path(__file__).resolve().parents[2]


def test_the_daily_schedule_file() -> None:
    daily = load_schedule(ROOT / "schedules", "daily")
    assert daily.name == "daily" and daily.list == "daily"
    assert daily.timezone == "Europe/Moscow" and daily.window.start == time(7, 0)
    assert daily.select.comments_per_commenter == 3
    assert daily.trigger() is not None
    assert "daily" in load_schedules(ROOT / "schedules")


def test_the_lists_file() -> None:
    lists = load_lists(ROOT / "subscribers")
    assert lists["daily"].list_id == "daily.digest.vpk.example.ru"
    assert lists["daily"].name == "Новости ВПК"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('title = "x"\ncron = "61 7 * * *"\n', "cron"),
        ('title = "x"\ntimezone = "Nowhere/City"\n', "unknown time zone"),
        ('title = "x"\n[select]\nmax_articles = 0\n', "select.max_articles"),
        ('title = "x"\n[select]\nranking = "random"\n', "select.ranking"),
        ('title = "x"\nsurprise = 1\n', "surprise"),
        ('title = "x"\n[send]\nunapproved = "maybe"\n', "send.unapproved"),
        ('title = "x"\n[send]\ngrace_minutes = 0\n', "send.grace_minutes"),
        ('title = "x"\n[send]\nlocal_time = "yes"\n', "send.local_time"),
        ('title = "x"\nfrequency = "hourly"\n', "frequency"),
        ("title = \n", "not valid TOML"),
    ],
)
def test_a_bad_schedule_file_says_what_is_wrong(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "bad.toml").write_text(content, encoding="utf-8")
    with pytest.raises(ScheduleError, match=message):
        load_schedule(tmp_path, "bad")


def test_an_unknown_schedule_lists_the_known_ones() -> None:
    with pytest.raises(ScheduleError, match=r"known: daily"):
        load_schedule(ROOT / "schedules", "hourly")


def test_a_bad_list_file(tmp_path: Path) -> None:
    (tmp_path / "lists.toml").write_text(
        '[daily]\nname = "x"\nlist_id = "not an id"\nmsgtype = "a"\n'
    )
    with pytest.raises(ConfigError, match="list 'daily'"):
        load_lists(tmp_path)


def test_a_schedule_without_a_zone_uses_the_sites(tmp_path: Path) -> None:
    (tmp_path / "weekly.toml").write_text('title = "Неделя"\n', encoding="utf-8")
    assert load_schedule(tmp_path, "weekly", "Asia/Vladivostok").timezone == "Asia/Vladivostok"
    (tmp_path / "daily.toml").write_text('title = "x"\ntimezone = "Europe/Moscow"\n')
    assert load_schedule(tmp_path, "daily", "Asia/Vladivostok").timezone == "Europe/Moscow"


UTC_ = ZoneInfo("UTC")


def test_the_weekly_schedule_file() -> None:
    weekly = load_schedule(ROOT / "schedules", "weekly")
    assert weekly.frequency == "weekly" and weekly.select.order == "most_read"
    assert weekly.window.days == 7 and weekly.send.approval
    # Monday 30 November 2026, 08:00 Moscow = 05:00 UTC; no send on a Tuesday.
    assert weekly.fire_time(date(2026, 11, 30)) == datetime(2026, 11, 30, 5, 0, tzinfo=UTC_)
    assert weekly.fire_time(date(2026, 12, 1)) is None


@pytest.mark.parametrize(
    ("zone", "fires_utc"),
    [
        ("Europe/Moscow", [(2026, 11, 26, 4), (2026, 11, 27, 4)]),
        ("Asia/Vladivostok", [(2026, 11, 25, 21), (2026, 11, 26, 21)]),
        # Daylight saving: Berlin's 07:00 is 06:00 UTC in winter, 05:00 in summer.
        ("Europe/Berlin", [(2026, 11, 26, 6), (2026, 11, 27, 6)]),
    ],
)
def test_next_fire_times_are_local_to_the_schedules_zone(
    tmp_path: Path, zone: str, fires_utc: list[tuple[int, int, int, int]]
) -> None:
    (tmp_path / "s.toml").write_text(f'title = "s"\ntimezone = "{zone}"\n', encoding="utf-8")
    schedule = load_schedule(tmp_path, "s")
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC_)
    expected = [datetime(*f, 0, tzinfo=UTC_) for f in fires_utc]
    assert schedule.next_fires(now, 2) == expected
    # The latest fire at or before a moment is the one before the first next fire.
    assert schedule.latest_fire(expected[0]) == expected[0]
    assert schedule.latest_fire(expected[1] - timedelta(seconds=1)) == expected[0]


def test_summer_time_moves_the_utc_fire_time(tmp_path: Path) -> None:
    (tmp_path / "s.toml").write_text('title = "s"\ntimezone = "Europe/Berlin"\n', encoding="utf-8")
    schedule = load_schedule(tmp_path, "s")
    assert schedule.fire_time(date(2026, 7, 1)) == datetime(2026, 7, 1, 5, 0, tzinfo=UTC_)
    assert schedule.fire_time(date(2026, 12, 1)) == datetime(2026, 12, 1, 6, 0, tzinfo=UTC_)


def test_local_send_time_is_the_crons_hour_in_each_zone() -> None:
    daily = load_schedule(ROOT / "schedules", "daily")
    day = date(2026, 11, 25)
    assert daily.local_send_time(day, "Europe/Moscow") == datetime(2026, 11, 25, 4, tzinfo=UTC_)
    assert daily.local_send_time(day, "Asia/Vladivostok") == datetime(2026, 11, 24, 21, tzinfo=UTC_)
    assert daily.local_send_time(day, "Europe/Kaliningrad") == datetime(
        2026, 11, 25, 5, tzinfo=UTC_
    )


def test_the_prepare_trigger_fires_ahead_of_the_send_trigger() -> None:
    daily = load_schedule(ROOT / "schedules", "daily")
    shifted = ShiftedTrigger(daily.trigger(), 90)
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC_)
    first = shifted.get_next_fire_time(None, now)
    assert first == datetime(2026, 11, 26, 2, 30, tzinfo=UTC_)  # 05:30 Moscow
    assert shifted.get_next_fire_time(first, first) == first + timedelta(days=1)
    assert pickle.loads(pickle.dumps(shifted)).get_next_fire_time(None, now) == first
