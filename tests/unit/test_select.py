from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from digest.errors import EmptyEdition
from digest.models import Candidate, Discussion
from digest.schedule.files import Schedule, SelectSpec, WindowSpec
from digest.select import discussion_score, select_edition

END = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)  # 07:00 in Moscow
SPEC = SelectSpec(max_articles=5, max_discussed=3)


def art(
    n: int, hours_before_end: float = 1, views: int = 0, image: bool = False, section: str = "army"
) -> Candidate:
    return Candidate(n, f"a{n:03d}", END - timedelta(hours=hours_before_end), views, image, section)


def talk(article: Candidate, **per_commenter: int) -> Discussion:
    return Discussion(article, per_commenter, sum(per_commenter.values()) + 100)


# -- the window -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "edition_date", "start", "end"),
    [
        # Moscow is UTC+3 all year: [D-1 07:00, D 07:00) local = [D-1 04:00, D 04:00) UTC.
        (
            "Europe/Moscow",
            date(2026, 11, 25),
            datetime(2026, 11, 24, 4, tzinfo=UTC),
            datetime(2026, 11, 25, 4, tzinfo=UTC),
        ),
        (
            "UTC",
            date(2026, 11, 25),
            datetime(2026, 11, 24, 7, tzinfo=UTC),
            datetime(2026, 11, 25, 7, tzinfo=UTC),
        ),
        # Berlin leaves summer time on 2026-10-25: that window is 25 hours long.
        (
            "Europe/Berlin",
            date(2026, 10, 25),
            datetime(2026, 10, 24, 5, tzinfo=UTC),
            datetime(2026, 10, 25, 6, tzinfo=UTC),
        ),
        # ... and enters it on 2026-03-29: 23 hours.
        (
            "Europe/Berlin",
            date(2026, 3, 29),
            datetime(2026, 3, 28, 6, tzinfo=UTC),
            datetime(2026, 3, 29, 5, tzinfo=UTC),
        ),
    ],
)
def test_window_is_computed_in_the_schedule_zone(
    zone: str, edition_date: date, start: datetime, end: datetime
) -> None:
    schedule = Schedule(name="daily", title="t", timezone=zone)
    assert schedule.bounds(edition_date) == (start, end)


def test_window_start_time_and_length_come_from_the_schedule() -> None:
    schedule = Schedule(
        name="weekly",
        title="t",
        timezone="Europe/Moscow",
        window=WindowSpec(start=datetime(2000, 1, 1, 9, 30).time(), days=7),
    )
    start, end = schedule.bounds(date(2026, 11, 30))
    assert start == datetime(2026, 11, 23, 6, 30, tzinfo=UTC)
    assert end == datetime(2026, 11, 30, 6, 30, tzinfo=UTC)


def test_today_is_the_date_in_the_schedule_zone() -> None:
    schedule = Schedule(name="daily", title="t", timezone="Europe/Moscow")
    # 22:30 UTC on the 24th is already 01:30 on the 25th in Moscow.
    assert schedule.today(datetime(2026, 11, 24, 22, 30, tzinfo=UTC)) == date(2026, 11, 25)


# -- the day's articles -------------------------------------------------------------


def test_newest_first_and_the_lead_is_the_most_read_with_a_picture() -> None:
    day = [
        art(1, 5, views=900),
        art(2, 4, views=50, image=True),
        art(3, 3, views=10),
        art(4, 2, views=80, image=True),
    ]
    chosen = select_edition(day, [], SPEC, window_end=END)
    assert chosen.lead.article.id == 4
    assert [p.article.id for p in chosen.day] == [3, 2, 1]


def test_without_pictures_the_most_read_leads() -> None:
    chosen = select_edition([art(1, 5, views=9), art(2, 4, views=99)], [], SPEC, window_end=END)
    assert chosen.lead.article.id == 2


def test_max_articles_keeps_the_newest() -> None:
    day = [art(n, hours_before_end=n) for n in range(1, 10)]
    chosen = select_edition(day, [], SPEC, window_end=END)
    assert len(chosen.day) + 1 == SPEC.max_articles
    assert {p.article.id for p in [chosen.lead, *chosen.day]} == {1, 2, 3, 4, 5}


def test_a_weekly_edition_keeps_the_most_read_of_the_week() -> None:
    # Older articles were read more: "most_read" keeps them, "newest" would not.
    week = [art(n, hours_before_end=24 * n, views=100 * n) for n in range(1, 8)]
    spec = SelectSpec(max_articles=3, max_discussed=0, order="most_read")
    chosen = select_edition(week, [], spec, window_end=END)
    assert [p.article.id for p in [chosen.lead, *chosen.day]] == [7, 6, 5]


def test_an_empty_window_makes_no_edition() -> None:
    with pytest.raises(EmptyEdition, match="no new articles"):
        select_edition([], [talk(art(9, 30), x=5)], SPEC, window_end=END)


def test_same_rows_in_any_order_give_the_same_edition() -> None:
    day = [art(n, hours_before_end=2, views=7) for n in range(1, 8)]  # full ties
    talks = [talk(art(n, 30), a=1, b=1) for n in range(20, 26)]
    first = select_edition(day, talks, SPEC, window_end=END)
    second = select_edition(list(reversed(day)), list(reversed(talks)), SPEC, window_end=END)
    assert first == second
    assert first.lead.article.external_id == "a001"  # ties end on the external id


# -- most discussed -----------------------------------------------------------------


def test_each_commenter_counts_at_most_three_comments() -> None:
    flame_war = talk(art(10, 30), tank=40, pilot=40)  # 80 comments, 2 people: 3+3+2 = 8
    broad = talk(art(11, 30), **{f"r{i}": 1 for i in range(6)})  # 6 comments, 6 people: 12
    chosen = select_edition([art(1)], [flame_war, broad], SPEC, window_end=END)
    assert [p.article.id for p in chosen.discussed] == [11, 10]
    assert chosen.discussed[1].comments_in_window == 80


def test_discussed_ties_go_by_views_then_id() -> None:
    a = talk(art(20, 30, views=5), x=1)
    b = talk(art(21, 30, views=50), y=1)
    c = talk(art(22, 30, views=50), z=1)
    chosen = select_edition([art(1)], [a, c, b], SPEC, window_end=END)
    assert [p.article.id for p in chosen.discussed] == [21, 22, 20]


def test_an_article_in_both_lists_shows_once_in_the_day_list_marked() -> None:
    fresh = art(2, 3)
    day = [art(1, 1), fresh]
    talks = [talk(fresh, a=3, b=3, c=3), talk(art(30, 30), d=1)]
    chosen = select_edition(day, talks, SPEC, window_end=END)
    day_ids = [p.article.id for p in [chosen.lead, *chosen.day]]
    assert day_ids.count(2) == 1
    assert [p.article.id for p in chosen.discussed] == [30]
    marked = next(p for p in [chosen.lead, *chosen.day] if p.article.id == 2)
    assert marked.discussed and marked.comments_in_window == 9
    assert not next(p for p in [*chosen.day, chosen.lead] if p.article.id == 1).discussed


def test_max_discussed_and_zero_comments() -> None:
    talks = [talk(art(n, 30), **{f"u{n}": n}) for n in range(20, 27)]
    talks.append(Discussion(art(40, 30), {}, 500))  # no comment in the window
    chosen = select_edition([art(1)], talks, SPEC, window_end=END)
    assert len(chosen.discussed) == SPEC.max_discussed
    assert 40 not in {p.article.id for p in chosen.discussed}


# -- editions remember each other -----------------------------------------------------


def test_an_article_already_sent_is_not_repeated_among_the_day() -> None:
    chosen = select_edition([art(1), art(2)], [], SPEC, window_end=END, already_sent={2: 0})
    assert {p.article.id for p in [chosen.lead, *chosen.day]} == {1}
    assert chosen.skipped_repeats == [2]


def test_everything_already_sent_means_no_edition() -> None:
    with pytest.raises(EmptyEdition):
        select_edition([art(1)], [], SPEC, window_end=END, already_sent={1: 0})


@pytest.mark.parametrize(("new_comments", "comes_back"), [(0, False), (19, False), (20, True)])
def test_a_sent_article_returns_to_discussed_only_with_enough_new_comments(
    new_comments: int, comes_back: bool
) -> None:
    old = talk(art(50, 30), a=3, b=3)
    chosen = select_edition([art(1)], [old], SPEC, window_end=END, already_sent={50: new_comments})
    assert (50 in {p.article.id for p in chosen.discussed}) is comes_back


# -- the scoring function, table-driven --------------------------------------------------


@pytest.mark.parametrize(
    ("per_commenter", "ranking", "age_hours", "score"),
    [
        ({}, "capped", 0, 0),
        ({"a": 1}, "capped", 0, 2),
        ({"a": 3}, "capped", 0, 4),
        ({"a": 50}, "capped", 0, 4),
        ({"a": 2, "b": 5}, "capped", 0, 7),
        ({"a": 1, "b": 1, "c": 1}, "capped", 0, 6),
        ({"a": 1}, "hot", 0, 2 / 2**1.2),
        ({"a": 1}, "hot", 22, 2 / 24**1.2),
        ({"a": 50}, "hot", 6, 4 / 8**1.2),
    ],
)
def test_discussion_score(
    per_commenter: dict[str, int], ranking: str, age_hours: float, score: float
) -> None:
    assert discussion_score(
        per_commenter, 3, ranking=ranking, age_hours=age_hours
    ) == pytest.approx(score)


def test_hot_ranking_prefers_fresh_activity() -> None:
    spec = SelectSpec(max_discussed=2, ranking="hot")
    old = talk(art(60, 100), **{f"o{i}": 1 for i in range(10)})
    new = talk(art(61, 5), **{f"n{i}": 1 for i in range(4)})
    chosen = select_edition([art(1)], [old, new], spec, window_end=END)
    assert [p.article.id for p in chosen.discussed] == [61, 60]
