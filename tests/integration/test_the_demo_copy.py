"""The suite's copy of the demo's rows (tests/support/demo_data.py) leaves a
database as a real load does: the same rows, and ids that go on from there."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from digest import db, demo
from digest.ingest import Ingester
from digest.models import Article, Comment
from digest.wiring import Services
from tests.support.databases import migrated_copy
from tests.support.demo_data import load_demo_articles


@pytest.fixture
def other_database(request: pytest.FixtureRequest, database_url: str, tmp_path: Path) -> str:
    """A second migrated database on the same backend."""
    backend = "sqlite" if database_url.startswith("sqlite") else "postgres"
    return migrated_copy(request, backend, tmp_path / "other.sqlite3")


def _seen(services: Services) -> tuple[int, int, list[tuple[str, str]]]:
    with services.factory() as session:
        articles = session.scalar(select(func.count()).select_from(Article)) or 0
        comments = session.scalar(select(func.count()).select_from(Comment)) or 0
        titles = [(a.external_id, a.title) for a in session.scalars(select(Article))]
    return articles, comments, sorted(titles)


def test_a_copied_load_holds_what_a_real_one_holds(
    services: Services, fixed_date: date, other_database: str
) -> None:
    schedule = services.schedule("daily")
    engine = db.make_engine(other_database)
    try:
        load_demo_articles(db.session_factory(engine), schedule, fixed_date)
    finally:
        engine.dispose()

    assert load_demo_articles(services.factory, schedule, fixed_date) is True
    real = demo.build(schedule, fixed_date)
    articles, comments, titles = _seen(services)
    assert articles == len(real.records)
    assert comments == sum(len(r["comments"]) for r in real.records)
    assert titles == sorted((r["id"], r["title"]) for r in real.records)

    # New rows get new ids: the copy moved PostgreSQL's sequences past its own.
    extra = dict(real.records[0], id="after-the-copy", url="https://vpk.example.ru/a.html")
    Ingester(services.factory, clock=services.clock).load([("after-the-copy", extra)])
    assert _seen(services)[:2] == (articles + 1, comments + len(extra["comments"]))
