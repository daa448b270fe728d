"""A generic site schema on PostgreSQL as the source (issue 29): the generic
preset's views over the site's own tables, a sync and a re-sync, a write that
returns rows refused by the database, a slow statement cancelled by it."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import func, select

from digest.models import Article, Comment
from digest.wiring import Services
from tests.support.common import FIXED_NOW
from tests.support.sources import sync_with, with_source

pytestmark = [pytest.mark.postgres]

SITE = """
CREATE TABLE news (id serial PRIMARY KEY, link text NOT NULL, headline text, intro text,
  rubric text, published timestamptz NOT NULL, changed timestamptz NOT NULL,
  hits integer NOT NULL DEFAULT 0, hidden boolean NOT NULL DEFAULT false);
CREATE TABLE replies (id serial PRIMARY KEY, news_id integer REFERENCES news,
  nick text, said text, at timestamptz NOT NULL);
CREATE VIEW digest_articles AS SELECT id, link AS url, headline AS title, intro AS lead,
  rubric AS section, published AS published_at, changed AS updated_at, hits AS views,
  hidden AS withdrawn FROM news;
CREATE VIEW digest_comments AS SELECT news_id AS article_id, id AS number, nick AS author,
  at AS posted_at, said AS body FROM replies;
"""


def _psycopg(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture
def site_url(postgres_databases: Callable[..., str]) -> str:
    url = postgres_databases()
    at = FIXED_NOW - timedelta(hours=3)
    with psycopg.connect(_psycopg(url), autocommit=True) as conn:
        conn.execute(SITE)
        for n in range(1, 4):
            conn.execute(
                "INSERT INTO news (link, headline, rubric, published, changed, hits) "
                "VALUES (%s, %s, 'Армия', %s, %s, %s)",
                (f"https://vpk.example.ru/news/{n}", f"Новость {n}", at, at, n * 100),
            )
        for n in range(5):
            conn.execute(
                "INSERT INTO replies (news_id, nick, said, at) VALUES (2, %s, 'Да', %s)",
                (f"r{n}", at + timedelta(minutes=n)),
            )
    return url


@pytest.fixture
def services(
    env: dict[str, str],
    sqlite_template: Path,
    site_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Services]:
    sqlite_url = f"sqlite:///{shutil.copy(sqlite_template, tmp_path / 'digest.sqlite3')}"
    body = 'url_env = "SITE_DATABASE_URL"\npreset = "generic"\ntimeout = 1\n'
    url = site_url.replace("+psycopg", "")
    with with_source(monkeypatch, sqlite_url, tmp_path / "sources", body, url) as services:
        yield services


def test_a_generic_site_is_synced_and_resynced_without_doubling(
    services: Services, site_url: str
) -> None:
    (first,) = services.sources.sync()
    assert first.error is None and first.ingest.loaded == 3
    assert first.ingest.comments_added == 5
    later = FIXED_NOW + timedelta(minutes=1)
    with psycopg.connect(_psycopg(site_url), autocommit=True) as conn:
        conn.execute("UPDATE news SET hidden = true, changed = %s WHERE id = 3", (later,))
    services.sources.clock = lambda: FIXED_NOW + timedelta(minutes=5)
    (second,) = services.sources.sync()
    assert second.error is None and second.ingest.withdrawn == 1
    # A counter moves without `changed`: the article is past the watermark's
    # overlap now, and the views query still brings the new count.
    with psycopg.connect(_psycopg(site_url), autocommit=True) as conn:
        conn.execute("UPDATE news SET hits = 999 WHERE id = 1")
    (third,) = services.sources.sync()
    assert third.rows["articles"] == 1 and third.views_changed == 1
    with services.factory() as session:
        assert session.scalar(select(func.count()).select_from(Comment)) == 5
        views = dict(session.execute(select(Article.external_id, Article.views)).all())
        gone = session.scalar(select(Article.withdrawn_at).where(Article.external_id == "3"))
    assert views["1"] == 999 and gone is not None


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM news WHERE changed >= :since AND changed < :until RETURNING id",
        "WITH gone AS (UPDATE news SET headline = 'x' WHERE changed < :until "
        "AND changed >= :since RETURNING *) SELECT * FROM gone",
    ],
)
def test_a_query_that_writes_is_refused_and_the_site_is_untouched(
    services: Services, site_url: str, sql: str
) -> None:
    report = sync_with(
        services, f'url_env = "SITE_DATABASE_URL"\n[queries.articles]\nsql = "{sql}"\n'
    )
    assert report.error is not None
    assert report.error.startswith("source site, query articles: the database refused a write")
    with psycopg.connect(_psycopg(site_url)) as conn:
        assert conn.execute("SELECT count(*) FROM news WHERE headline <> 'x'").fetchone() == (3,)


def test_a_slow_statement_is_cancelled_by_postgresql(services: Services) -> None:
    report = sync_with(
        services,
        'url_env = "SITE_DATABASE_URL"\npreset = "generic"\ntimeout = 0.5\n'
        '[queries.views]\nsql = "SELECT 1 AS article_id, 0 AS views FROM pg_sleep(20) '
        'WHERE :since IS NOT NULL"\n',
    )
    assert report.error == (
        "source site, query views: cancelled by the database after 0.5 s "
        "(the source's timeout; make the query cheaper or raise `timeout`)"
    )


def test_doctor_checks_the_source_is_read_only_timed_and_complete(services: Services) -> None:
    from digest.sources.overview import check

    source = services.sources.sources()["site"]
    result = check(source, FIXED_NOW)
    assert result.ok, result.detail
    assert result.detail == "read-only, timeout 1 s, 3 queries: articles, comments, views"
