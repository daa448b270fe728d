from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest

from digest.errors import ConfigError, ScheduleError
from digest.lists import load_lists
from digest.schedule import load_schedule, load_schedules

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
