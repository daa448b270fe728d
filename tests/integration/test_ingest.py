"""Ingest on both backends: JSON Lines, RSS 2.0 and Atom (files and a local URL)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from functools import partial
from http.server import HTTPServer, SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from digest import db, store
from digest.ingest import Ingester, read_source
from digest.models import Article, ArticleRevision, Comment, Section
from tests.support.common import FIXED_NOW as NOW


def line(**fields: Any) -> str:
    record = {
        "id": "a1",
        "url": "https://vpk.example.ru/news/1.html",
        "title": "Заголовок",
        "published_at": "2026-11-24T10:00:00+03:00",
    }
    record.update(fields)
    return json.dumps(record, ensure_ascii=False)


def comment(number: int, **fields: Any) -> dict[str, Any]:
    value = {
        "number": number,
        "author": f"автор{number}",
        "posted_at": "2026-11-24T12:00:00+03:00",
        "body": f"текст {number}",
        "votes": 1,
    }
    value.update(fields)
    return value


def ingest(factory: sessionmaker[Session], path: Path):  # type: ignore[no-untyped-def]
    return Ingester(factory).load(read_source(str(path)))


def counts(factory: sessionmaker[Session]) -> tuple[int, int]:
    with factory() as session:
        return (
            session.scalar(select(func.count()).select_from(Article)) or 0,
            session.scalar(select(func.count()).select_from(Comment)) or 0,
        )


def test_good_lines_load_and_bad_lines_are_reported_by_number(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    path = tmp_path / "articles.jsonl"
    path.write_text(
        "\n".join(
            [
                line(id="ok-1", comments=[comment(1), comment(2)]),
                "{not json",
                line(id="no-title", title=""),
                line(id="naive", published_at="2026-11-24T10:00:00"),
                line(id="bad-url", url="javascript:alert(1)"),
                "",
                line(id="huge", title="Ж" * 3_000_000),
                "[1, 2]",
                line(id="ok-2", section="Флот", views=5, image_url="https://vpk.example.ru/i.jpg"),
                json.dumps({"url": "https://e.ru/x", "title": "no id"}),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    report = ingest(factory, path)
    assert (report.loaded, report.updated, report.rejected) == (2, 0, 7)
    reasons = {p.where.rsplit(":", 1)[1]: p.reason for p in report.problems}
    assert reasons["2"].startswith("not valid JSON")
    assert reasons["3"] == "title: String should have at least 1 character"
    assert "published_at" in reasons["4"] and "timezone" in reasons["4"]
    assert reasons["5"] == "url: must be an absolute http(s) URL"
    assert reasons["7"] == "title: too long (3000000 characters; at most 1000)"
    assert reasons["8"] == "a line must be a JSON object"
    assert reasons["10"] == "id: is required; published_at: is required"
    assert counts(factory) == (2, 2)


def test_reingest_updates_and_never_doubles(factory: sessionmaker[Session], tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text(line(views=10, comments=[comment(1), comment(2)]) + "\n", encoding="utf-8")
    assert ingest(factory, path).loaded == 1
    path.write_text(
        line(
            views=99,
            title="Новый заголовок",
            comments=[comment(1, votes=7), comment(2), comment(3)],
        )
        + "\n",
        encoding="utf-8",
    )
    report = ingest(factory, path)
    assert (report.loaded, report.updated, report.comments_added) == (0, 1, 1)
    again = ingest(factory, path)
    assert (again.updated, again.comments_added) == (1, 0)
    assert counts(factory) == (1, 3)
    with factory() as session:
        article = session.scalar(select(Article))
        assert article is not None and (article.views, article.title) == (99, "Новый заголовок")
        votes = session.scalar(select(Comment.votes).where(Comment.number == 1))
        assert votes == 7


def test_hostile_text_is_kept_as_text_on_one_line(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text(
        line(
            title="<script>alert(1)</script>\r\nBcc: x@y.ru",
            section="Флот\r\nX-Evil: 1",
            comments=[comment(1, author="Вася\r\nBcc: a@b.ru", body="<b>жирный</b>\r\nстрока")],
        )
        + "\n",
        encoding="utf-8",
    )
    assert ingest(factory, path).loaded == 1
    with factory() as session:
        article = session.scalar(select(Article))
        assert article is not None
        assert article.title == "<script>alert(1)</script> Bcc: x@y.ru"
        section = session.scalar(select(Section))
        assert section is not None and section.title == "Флот X-Evil: 1"
        c = session.scalar(select(Comment))
        assert (
            c is not None and c.author == "Вася Bcc: a@b.ru" and c.body == "<b>жирный</b>\nстрока"
        )


def test_a_bad_comment_is_skipped_and_the_article_kept(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text(
        line(comments=[comment(1), comment(0), {"number": 3}, "junk"]) + "\n", encoding="utf-8"
    )
    report = ingest(factory, path)
    assert (report.loaded, report.comments_added, report.comments_rejected) == (1, 1, 3)
    assert "comment 3" in str(report.warnings[1]) and "posted_at: is required" in str(
        report.warnings[1]
    )


def test_a_missing_file_is_reported(factory: sessionmaker[Session], tmp_path: Path) -> None:
    report = ingest(factory, tmp_path / "nope.jsonl")
    assert report.rejected == 1 and report.problems[0].reason == "no such file"


RSS = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>ВПК.name</title><link>https://vpk.example.ru/</link>
<item><title>Фрегат вышел в поход</title><link>https://vpk.example.ru/news/1.html</link>
<guid>https://vpk.example.ru/news/1.html</guid><category>Флот</category>
<description>&lt;p&gt;Корабль &lt;b&gt;выполнит&lt;/b&gt; задачи.&lt;/p&gt;</description>
<pubDate>Tue, 24 Nov 2026 10:15:00 +0300</pubDate>
<enclosure url="https://vpk.example.ru/i/1.jpg" type="image/jpeg" length="1"/></item>
<item><title>Без даты</title><link>https://vpk.example.ru/news/2.html</link></item>
</channel></rss>"""

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>ВПК.name</title><id>urn:vpk</id>
<updated>2026-11-24T12:00:00Z</updated>
<entry><title>Спутник выведен на орбиту</title><id>urn:vpk:2</id>
<link href="https://vpk.example.ru/news/3.html"/><published>2026-11-24T09:00:00+03:00</published>
<updated>2026-11-24T09:30:00+03:00</updated><summary>Аппарат взят на управление.</summary>
<category term="Космос"/></entry></feed>"""


def test_rss_and_atom_files(factory: sessionmaker[Session], tmp_path: Path) -> None:
    (tmp_path / "news.rss").write_text(RSS, encoding="utf-8")
    (tmp_path / "news.xml").write_text(ATOM, encoding="utf-8")
    rss = ingest(factory, tmp_path / "news.rss")
    assert (rss.loaded, rss.rejected) == (1, 1)
    assert "published_at" in rss.problems[0].reason and "entry 2" in rss.problems[0].where
    assert ingest(factory, tmp_path / "news.xml").loaded == 1
    with factory() as session:
        first = session.scalar(select(Article).where(Article.url.endswith("/1.html")))
        assert first is not None
        assert first.lead == "Корабль выполнит задачи."
        assert first.section is not None and first.section.title == "Флот"
        assert first.image_url == "https://vpk.example.ru/i/1.jpg"
        assert first.published_at.isoformat() == "2026-11-24T07:15:00+00:00"
        assert first.source == "ВПК.name"
        atom = session.scalar(select(Article).where(Article.external_id == "urn:vpk:2"))
        assert atom is not None and atom.published_at.hour == 6


@pytest.fixture
def feed_url(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "feed.xml").write_text(ATOM, encoding="utf-8")
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = HTTPServer(("127.0.0.1", 0), handler)
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/feed.xml"
    server.shutdown()
    server.server_close()


def test_a_feed_by_url(factory: sessionmaker[Session], feed_url: str) -> None:
    report = Ingester(factory).load(read_source(feed_url))
    assert report.loaded == 1


def revisions(factory: sessionmaker[Session]) -> list[tuple[str, Any, Any]]:
    with factory() as session:
        return [
            (r.kind, r.before, r.after)
            for r in session.scalars(select(ArticleRevision).order_by(ArticleRevision.id))
        ]


def test_a_changed_title_lead_or_url_is_a_revision_and_nothing_else_is(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text(line(lead="Текст", views=5) + "\n", encoding="utf-8")
    ingest(factory, path)
    path.write_text(line(lead="Текст", views=900, rating=3) + "\n", encoding="utf-8")
    assert ingest(factory, path).corrected == 0  # views and rating are no correction
    path.write_text(line(title="Новый заголовок", lead="Текст") + "\n", encoding="utf-8")
    report = ingest(factory, path)
    assert report.updated == 1 and report.corrected == 1 and report.withdrawn == 0
    assert revisions(factory) == [("changed", {"title": "Заголовок"}, {"title": "Новый заголовок"})]


def test_a_correction_line_changes_what_it_names_and_keeps_the_rest(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    """Issue 28 §7: a correction line without `lead` blanked the lead (and its views
    and section went with it)."""
    path = tmp_path / "a.jsonl"
    full = line(lead="Анонс", views=700, section="Армия", image_url="https://vpk.example.ru/1.jpg")
    path.write_text(full + "\n", encoding="utf-8")
    ingest(factory, path)
    path.write_text(line(title="Исправленный заголовок") + "\n", encoding="utf-8")
    report = ingest(factory, path)
    assert report.corrected == 1 and not report.problems
    with factory() as session:
        article = session.scalars(select(Article)).one()
        assert (article.title, article.lead, article.views) == (
            "Исправленный заголовок",
            "Анонс",
            700,
        )
        assert (
            article.image_url == "https://vpk.example.ru/1.jpg" and article.section_id is not None
        )
    assert revisions(factory) == [
        ("changed", {"title": "Заголовок"}, {"title": "Исправленный заголовок"})
    ]
    path.write_text(line(title="Исправленный заголовок", lead=None) + "\n", encoding="utf-8")
    ingest(factory, path)  # said: the lead is gone
    with factory() as session:
        assert session.scalars(select(Article.lead)).one() is None


def test_withdrawn_needs_saying_and_missing_is_not_withdrawn(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    first = tmp_path / "first.jsonl"
    first.write_text(line() + "\n" + line(id="a2", url="https://vpk.example.ru/2") + "\n")
    ingest(factory, first)
    later = tmp_path / "later.jsonl"  # a2 is not in it: still published
    later.write_text(
        json.dumps({"id": "a1", "withdrawn": True})
        + "\n"
        + json.dumps({"id": "nope", "withdrawn": True})
        + "\n",
        encoding="utf-8",
    )
    report = ingest(factory, later)
    assert report.withdrawn == 1 and report.rejected == 0
    assert [str(w) for w in report.warnings] == [f"{later}:2: id nope: no such article to withdraw"]
    with factory() as session:
        gone = dict(session.execute(select(Article.external_id, Article.withdrawn_at)).all())
    assert gone["a1"] is not None and gone["a2"] is None
    # The old file read again (no "withdrawn" key) does not put it back; false does.
    ingest(factory, first)
    assert revisions(factory) == [("withdrawn", None, None)]
    later.write_text(line(withdrawn=False) + "\n", encoding="utf-8")
    ingest(factory, later)
    assert [kind for kind, _, _ in revisions(factory)] == ["withdrawn", "restored"]


def test_an_ingest_while_another_process_writes_keeps_every_record(
    database_url: str, factory: sessionmaker[Session], tmp_path: Path
) -> None:
    """The site's export is ingested while a send records outcomes. On SQLite a
    transaction that read first and wrote after the other committed failed at
    once with "database is locked" (no busy wait): records were rejected."""
    path = tmp_path / "many.jsonl"
    path.write_text(
        "".join(
            line(id=f"m{n}", url=f"https://vpk.example.ru/{n}", comments=[comment(1)]) + "\n"
            for n in range(400)
        ),
        encoding="utf-8",
    )
    other = db.make_engine(database_url)  # another process's connection
    done = threading.Event()

    def writer() -> None:
        n = 0
        while not done.is_set():
            with other.begin() as conn:
                conn.execute(
                    insert(Section).values(slug=f"busy-{n}", title=f"busy {n}", position=n)
                )
            n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        report = Ingester(factory, commit_every=1).load(read_source(str(path)))
    finally:
        done.set()
        thread.join()
        other.dispose()
    assert report.problems == [] and report.loaded == 400


def test_rows_the_database_refuses_in_one_stream_undo_only_their_savepoint(
    factory: sessionmaker[Session],
) -> None:
    """Comments go in one stream (COPY on PostgreSQL). A duplicate there (another
    writer added the same comment first) is refused as any statement is: a
    DatabaseError the ingest reports for that record, its savepoint undone, the
    rest of the transaction kept (a raw driver error escaped the ingest before)."""
    with factory() as session:
        article = Article(
            external_id="a1", url="https://vpk.example.ru/a1", title="Т", published_at=NOW
        )
        session.add(article)
        session.flush()
        row = {"article_id": article.id, "author": "Иван", "posted_at": NOW, "body": "…"}
        store.add_comments(session, [{**row, "number": 1, "votes": 0}], [])
        refused = pytest.raises(db.DatabaseError, match=r"(?i)unique|duplicate")
        with refused, session.begin_nested():
            store.add_comments(
                session,
                [{**row, "number": 2, "votes": 0}, {**row, "number": 1, "votes": 5}],
                [],
            )
        session.commit()
    with factory() as session:
        kept = session.execute(select(Comment.number, Comment.votes)).all()
    assert kept == [(1, 0)]  # the first write kept, the refused stream's rows all undone
