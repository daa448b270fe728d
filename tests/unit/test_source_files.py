"""Source files and row mapping (issue 29), without a database: the shipped
examples load, a file that names an unknown field or a hostile table prefix is
refused with its name, a site's row becomes ingest's record (naive times read in
the source's zone, 0/1 flags, a withdrawn post in the short form)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from digest.config import PROJECT_ROOT
from digest.errors import SourceError
from digest.sources.files import Query, load_sources, pick
from digest.sources.rows import Mapping, as_article


def test_the_shipped_examples_are_valid_source_files(tmp_path: Path) -> None:
    for example in sorted((PROJECT_ROOT / "sources").glob("*.toml.example")):
        (tmp_path / f"{example.name.split('.')[0]}.toml").write_text(example.read_text())
    found = load_sources(tmp_path)
    assert {name: s.preset for name, s in found.items()} == {
        "generic": "generic",
        "site": "wordpress",
    }
    assert set(found["site"].all_queries()) == {"articles", "comments", "sections", "views"}
    assert set(found["generic"].all_queries()) == {"articles", "comments", "views"}


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ('url_env = "X"\npreset = "wordpress"\n[wordpress]\ntable_prefix = "wp_; DROP"\n',
         "wordpress.table_prefix: String should match pattern"),
        ('url_env = "X"\n[queries.articles]\nsql = "SELECT 1"\ncolumns = { titel = "t" }\n',
         "queries: articles: no field titel"),
        ('url_env = "X"\n', "no articles query"),
        ('url_env = "postgresql://u:secret@db/site"\npreset = "generic"\n',
         "url_env: String should match pattern"),
    ],
)  # fmt: skip
def test_a_bad_source_file_is_refused_with_its_name(tmp_path: Path, body: str, said: str) -> None:
    (tmp_path / "site.toml").write_text(body, encoding="utf-8")
    with pytest.raises(SourceError) as caught:
        load_sources(tmp_path)
    assert str(caught.value).startswith(f"{tmp_path / 'site.toml'}: ")
    assert said in str(caught.value) and "secret" not in str(caught.value)


def test_a_name_from_outside_is_looked_up_never_joined_to_a_path(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"no source '\.\./etc/passwd' \(known: none\)"):
        pick(load_sources(tmp_path), "../etc/passwd")


def test_a_row_becomes_ingests_record() -> None:
    mapping = Mapping.of(
        "site", "articles", Query(sql="x", columns={"title": "headline"}), ZoneInfo("Europe/Moscow")
    )
    row = {
        "id": 7,
        "headline": "Новость".encode(),
        "url": "https://vpk.example.ru/7",
        "published_at": datetime(2026, 11, 25, 10, 0),
        "updated_at": datetime(2026, 11, 25, 10, 5),
        "views": Decimal("42"),
        "withdrawn": 0,
    }
    record = as_article(mapping.record(row))
    assert record == {
        "id": 7,
        "title": "Новость",
        "url": "https://vpk.example.ru/7",
        "published_at": datetime(2026, 11, 25, 7, 0, tzinfo=UTC),
        "views": 42,
        "withdrawn": False,
    }
    assert as_article(mapping.record({**row, "withdrawn": 1})) == {"id": 7, "withdrawn": True}
    assert mapping.where(row) == "source site, articles id 7"
    with pytest.raises(SourceError, match="no column headline \\(digest's title\\)"):
        mapping.check(["id", "url", "published_at", "updated_at"])
