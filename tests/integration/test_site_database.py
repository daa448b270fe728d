"""A site's own database as the source (issue 29), against a private MariaDB
holding WordPress's table layout: a full sync, then an incremental one after
edits and an unpublish (the correction reaches the desk), the write refused and
the slow query cancelled by the database, a missing column named, bad rows named
and skipped, a cp1251 table read intact, and an edition whose «Обсуждаемое» block
is the site's own comments."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from digest.models import Article, ArticleRevision, Block, Comment, Edition, SourceState
from digest.sources.sync import SyncReport
from digest.store.wordpress import WordPressSite
from digest.wiring import Services
from tests.support.common import FIXED_NOW
from tests.support.mariadb import PrivateMariaDB
from tests.support.sources import sync_with, with_source, write_source

pytestmark = [pytest.mark.mariadb]

HOME = "https://vpk.example.ru"
DAY = date(2026, 11, 25)  # FIXED_NOW's edition: its window ends 04:00 UTC that day
IN_WINDOW = datetime(2026, 11, 24, 12, 0, tzinfo=FIXED_NOW.tzinfo)


@pytest.fixture
def site(site_mariadb: tuple[PrivateMariaDB, str]) -> Iterator[tuple[WordPressSite, str]]:
    server, name = site_mariadb
    url = server.url(name)
    wp = WordPressSite(url)
    wp.create(HOME)
    yield wp, url
    wp.close()


@pytest.fixture
def wired(
    env: dict[str, str],
    database_url: str,
    site: tuple[WordPressSite, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[Services, WordPressSite, Path]]:
    """digest's services (either backend) with sources/site.toml naming the site."""
    wp, url = site
    folder = tmp_path / "sources"
    body = 'url_env = "SITE_DATABASE_URL"\npreset = "wordpress"\n'
    with with_source(monkeypatch, database_url, folder, body, url) as services:
        yield services, wp, folder


def fill(wp: WordPressSite) -> dict[str, int]:
    """Two sections, the day's posts, two older posts discussed today, a draft, a
    password-protected post, approved and unapproved comments."""
    army = wp.add_category("Армия", "army")
    fleet = wp.add_category("Флот", "fleet")
    posts = [
        {"ID": 101, "title": "«Армата» прошла испытания", "excerpt": "Лид первой.",
         "date": IN_WINDOW, "category": army, "views": 950},
        {"ID": 102, "title": "Фрегат вышел в море", "date": IN_WINDOW + timedelta(hours=1),
         "category": fleet, "views": 40},
        {"ID": 103, "title": "Обсуждают три дня", "date": IN_WINDOW - timedelta(days=3),
         "category": army},
        {"ID": 104, "title": "Обсуждают два дня", "date": IN_WINDOW - timedelta(days=2)},
        {"ID": 105, "title": "Черновик", "status": "draft", "date": IN_WINDOW},
    ]  # fmt: skip
    wp.add_posts(posts)
    wp.execute("UPDATE {p}posts SET post_password = 'x' WHERE ID = 102")
    comments = []
    for n in range(6):  # 103: six readers today
        comments.append({"post": 103, "author": f"reader{n}", "date": IN_WINDOW, "content": "Да"})
    for n in range(3):  # 104: three
        comments.append({"post": 104, "author": f"other{n}", "date": IN_WINDOW, "content": "Нет"})
    for n in range(20):  # 101: twenty held for moderation: not counted
        comments.append({"post": 101, "author": f"spam{n}", "date": IN_WINDOW, "approved": "0"})
    wp.add_comments(comments)
    return {"103": 6, "104": 3}


def synced(services: Services) -> SyncReport:
    (report,) = services.sources.sync()
    assert report.error is None, report.error
    return report


def titles(services: Services) -> dict[str, str]:
    with services.factory() as session:
        return dict(session.execute(select(Article.external_id, Article.title)).all())


def test_a_full_sync_then_an_incremental_one_after_edits_and_an_unpublish(
    wired: tuple[Services, WordPressSite, Path],
) -> None:
    services, wp, _ = wired
    fill(wp)
    first = synced(services)
    # The draft and the password-protected post never arrive; nothing is "rejected".
    assert titles(services) == {
        "101": "«Армата» прошла испытания",
        "103": "Обсуждают три дня",
        "104": "Обсуждают два дня",
    }
    assert first.ingest.rejected == 0 and first.ingest.comments_added == 9
    with services.factory() as session:
        views = dict(session.execute(select(Article.external_id, Article.views)).all())
        sections = {a.external_id: a.section.title for a in session.scalars(select(Article))
                    if a.section}  # fmt: skip
    assert views["101"] == 950 and sections == {"101": "Армия", "103": "Армия"}

    # The editor approves the day's edition; then the site changes.
    schedule = services.schedule("daily")
    edition = services.editions.build(schedule, DAY)
    services.lifecycle.approve(edition)
    later = FIXED_NOW + timedelta(minutes=5)
    wp.execute(
        "UPDATE {p}posts SET post_title = 'Исправлено: «Армата»', post_modified_gmt = :at "
        "WHERE ID = 101",
        {"at": later.replace(tzinfo=None)},
    )
    wp.execute(
        "UPDATE {p}posts SET post_status = 'draft', post_modified_gmt = :at WHERE ID = 104",
        {"at": later.replace(tzinfo=None)},
    )
    wp.execute("UPDATE {p}postmeta SET meta_value = '1200' WHERE post_id = 101")
    wp.add_comments([{"post": 103, "author": "late", "date": later, "content": "Ещё"}])

    services.clock = lambda: FIXED_NOW + timedelta(minutes=10)  # type: ignore[method-assign]
    services.sources.clock = services.clock
    second = synced(services)
    assert second.ingest.corrected == 1 and second.ingest.withdrawn == 1
    assert second.ingest.comments_added == 1 and second.views_changed == 1
    # Re-reading is idempotent: every comment once, none twice.
    third = synced(services)
    assert third.ingest.comments_added == 0 and third.ingest.corrected == 0
    with services.factory() as session:
        assert session.scalar(select(func.count()).select_from(Comment)) == 10
        kinds = sorted(session.scalars(select(ArticleRevision.kind)))
        assert kinds == ["changed", "withdrawn"]
        assert session.scalar(select(Article.views).where(Article.external_id == "101")) == 1200
        marks = {s.query: s.mark_at for s in session.scalars(select(SourceState))}
    assert marks["articles"] is not None and marks["articles"] >= later - timedelta(seconds=1)
    # The corrections reach the desk: the approved edition says what changed.
    pending = services.corrections.pending(edition)
    assert {c.kind for c in pending} >= {"changed"}
    items = services.desk.preview(edition.id).items
    assert any(i.title == "Исправлено: «Армата»" or i.withdrawn for i in items)


def test_an_edition_built_from_the_site_discusses_what_its_readers_discussed(
    wired: tuple[Services, WordPressSite, Path],
) -> None:
    services, wp, _ = wired
    expected = fill(wp)
    # No sync by hand: a build reads the site first.
    edition = services.editions.build(services.schedule("daily"), DAY)
    with services.factory() as session:
        current = session.get(Edition, edition.id)
        assert current is not None
        discussed = [
            (i.article.external_id, i.comments_in_window)
            for i in sorted(current.items, key=lambda i: i.position)
            if i.block is Block.DISCUSSED
        ]
    # Most discussed first, by the site's approved comments; the held ones not at all.
    assert discussed == sorted(expected.items(), key=lambda kv: -kv[1])


def test_a_query_that_writes_is_refused_by_the_database(
    wired: tuple[Services, WordPressSite, Path],
) -> None:
    services, wp, _ = wired
    fill(wp)
    report = sync_with(
        services,
        'url_env = "SITE_DATABASE_URL"\n[queries.articles]\n'
        "sql = \"UPDATE wp_posts SET post_title = 'взломано' WHERE post_modified_gmt >= :since\"\n",
    )
    assert report.error is not None
    assert "source site, query articles" in report.error and "refused a write" in report.error
    assert wp.scalar("SELECT COUNT(*) FROM {p}posts WHERE post_title = 'взломано'") == 0
    assert titles(services) == {}


def test_a_slow_query_is_cancelled_at_the_timeout_and_named(
    wired: tuple[Services, WordPressSite, Path],
) -> None:
    services, wp, _ = wired
    fill(wp)
    report = sync_with(
        services,
        'url_env = "SITE_DATABASE_URL"\npreset = "wordpress"\ntimeout = 1\n'
        '[queries.comments]\nsql = "SELECT SLEEP(30) AS article_id, 1 AS number, '
        ':since AS posted_at FROM DUAL WHERE :until IS NOT NULL"\n',
    )
    assert report.error is not None
    assert "source site, query comments: cancelled by the database after 1 s" in report.error
    with services.factory() as session:
        state = session.get(SourceState, ("site", "comments"))
        assert state is not None and state.error and state.mark_at is None  # not moved
    assert "site" in services.sources.overview()[0].name
    assert services.sources.overview()[0].error == report.error


def test_a_missing_column_stops_that_source_with_one_line_and_others_sync(
    wired: tuple[Services, WordPressSite, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    services, wp, folder = wired
    fill(wp)
    write_source(
        folder,
        name="broken",
        body='url_env = "SITE_DATABASE_URL"\npreset = "wordpress"\n'
        '[queries.articles]\nsql = "SELECT ID AS id FROM wp_posts WHERE post_date_gmt >= :since '
        'AND post_date_gmt < :until"\ncolumns = { title = "headline" }\n',
    )
    reports = {r.source: r for r in services.sources.sync()}
    assert reports["broken"].error == (
        "source broken, query articles: no column url (digest's url), headline (digest's "
        "title), published_at (digest's published_at), updated_at (digest's updated_at) in "
        "its result (it returns id)"
    )
    assert reports["site"].error is None and reports["site"].ingest.loaded == 3


def test_bad_rows_are_named_and_skipped_and_the_rest_kept(
    wired: tuple[Services, WordPressSite, Path],
) -> None:
    services, wp, _ = wired
    fill(wp)
    wp.add_posts(
        [
            {"ID": 201, "title": "", "date": IN_WINDOW},
            {"ID": 202, "title": "Без даты", "date": IN_WINDOW},
        ]
    )
    wp.execute("UPDATE {p}posts SET post_date_gmt = '0000-00-00 00:00:00' WHERE ID = 202")
    wp.execute("UPDATE {p}posts SET post_modified_gmt = :at WHERE ID = 202",
               {"at": IN_WINDOW.replace(tzinfo=None)})  # fmt: skip
    report = synced(services)
    problems = {p.where: p.reason for p in report.ingest.problems}
    assert set(problems) == {"source site, articles id 201", "source site, articles id 202"}
    assert "title" in problems["source site, articles id 201"]
    assert "published_at" in problems["source site, articles id 202"]
    assert set(titles(services)) == {"101", "103", "104"}


def test_a_cp1251_table_arrives_as_intact_cyrillic(
    wired: tuple[Services, WordPressSite, Path],
) -> None:
    services, wp, folder = wired
    wp.execute(
        "CREATE TABLE news (id INT PRIMARY KEY, headline VARCHAR(200), link VARCHAR(200), "
        "published DATETIME, changed DATETIME) DEFAULT CHARSET=cp1251"
    )
    wp.execute(
        "INSERT INTO news VALUES (7, 'Ъ: «Щит» и ёлка', 'https://vpk.example.ru/7', :at, :at)",
        {"at": IN_WINDOW.replace(tzinfo=None)},
    )
    write_source(
        folder,
        'url_env = "SITE_DATABASE_URL"\n[queries.articles]\n'
        'sql = "SELECT * FROM news WHERE changed >= :since AND changed < :until"\n'
        'columns = { title = "headline", url = "link", published_at = "published", '
        'updated_at = "changed" }\n',
    )
    synced(services)
    assert titles(services) == {"7": "Ъ: «Щит» и ёлка"}


def test_the_scheduler_syncs_every_sync_every_minutes_and_metrics_say_when(
    wired: tuple[Services, WordPressSite, Path],
) -> None:
    from apscheduler.triggers.interval import IntervalTrigger

    from digest.observe.metrics import exposition
    from digest.schedule import jobs
    from digest.schedule.files import load_schedules

    services, wp, _ = wired
    fill(wp)
    scheduler = services.scheduling.build(load_schedules(services.settings.schedules_dir))
    job = scheduler.get_job("sync:site")
    assert isinstance(job.trigger, IntervalTrigger)
    assert job.trigger.interval.total_seconds() == 15 * 60
    jobs.sync_job("site")  # what the scheduler runs
    assert set(titles(services)) == {"101", "103", "104"}
    text = exposition(services.factory, services.clock).decode()
    assert 'digest_source_sync_age_seconds{source="site"} 0.0' in text
    assert 'digest_source_rows_total{query="articles",source="site"}' in text
