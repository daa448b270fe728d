"""Issue 12.5: hostile files for ingest and import, on real files and a real
store. A deeply nested JSON line once ended the whole run with a RecursionError,
and a 200 MB line was read whole before its size was checked. And a fuzz test:
whatever the lines are, there is no traceback, and every line is either loaded
or reported."""

from __future__ import annotations

import csv
import gzip
import io
import json
import string
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from digest.audience.subscribers import SubscriberBook
from digest.ingest import MAX_LINE, Ingester, read_jsonl, read_source

GOOD = {
    "id": "a1",
    "url": "https://vpk.example.ru/news/1",
    "title": "Заголовок",
    "published_at": "2026-11-25T08:00:00+03:00",
}


def line(record: dict[str, object]) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode() + b"\n"


def test_a_nested_or_huge_line_is_reported_and_the_rest_loaded(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    path = tmp_path / "articles.jsonl"
    with path.open("wb") as out:
        out.write(line(GOOD))  # 1
        out.write(b"[" * 100_000 + b"]" * 100_000 + b"\n")  # 2: nested past any stack
        out.write(b'{"id": "a2", "title": "' + b"x" * (MAX_LINE + 10) + b'"}\n')  # 3: huge
        out.write(line({**GOOD, "id": "a3", "comments": [[[[[[[[[[1]]]]]]]]]]}))  # 4
        out.write(line({**GOOD, "id": "a4", "url": "https://vpk.example.ru/news/4"}))  # 5
    report = Ingester(factory).load(read_jsonl(path))
    assert report.loaded == 3 and report.rejected == 2, report.problems
    where = {p.where.rsplit(":", 1)[1]: p.reason for p in report.problems}
    assert set(where) == {"2", "3"}
    assert "nested too deeply" in where["2"] and "over 16 MB" in where["3"]


def test_an_id_with_a_nul_or_control_character_is_reported_and_the_rest_loaded(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    """PostgreSQL refuses NUL in text: a line whose id (or withdrawal's id) held one
    stopped the load with a DataError there (found by the fuzz test below)."""
    path = tmp_path / "articles.jsonl"
    with path.open("wb") as out:
        out.write(line({**GOOD, "id": "\x00"}))  # 1
        out.write(line({"id": "a\x00b", "withdrawn": True}))  # 2
        out.write(line({**GOOD, "id": "a\x07", "url": "https://vpk.example.ru/news/7"}))  # 3
        out.write(line({**GOOD, "id": "a5", "url": "https://vpk.example.ru/news/5"}))  # 4
    report = Ingester(factory).load(read_jsonl(path))
    assert report.loaded == 1 and report.rejected == 3, report.problems
    where = {p.where.rsplit(":", 1)[1]: p.reason for p in report.problems}
    assert set(where) == {"1", "2", "3"}
    assert all("control character" in reason for reason in where.values()), where


# One store for all examples (a fixture per test): what an example adds stays.
FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
RECORDS = st.fixed_dictionaries(
    {},
    optional={
        "id": st.text(max_size=30) | st.integers(),
        "url": st.sampled_from(["https://vpk.example.ru/a", "javascript:x", "", "ftp://x"])
        | st.text(max_size=30),
        "title": st.text(max_size=50),
        "published_at": st.sampled_from(["2026-11-25T08:00:00+03:00", "вчера", ""])
        | st.text(max_size=20),
        "comments": st.lists(JSON_VALUES, max_size=3),
        "views": st.integers() | st.text(max_size=5),
    },
)
LINES = st.lists(
    RECORDS.map(lambda r: json.dumps(r, ensure_ascii=False))
    | st.text(string.printable, max_size=60)
    | JSON_VALUES.map(json.dumps),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=LINES)
def test_fuzz_ingest_loads_or_reports_every_line(
    factory: sessionmaker[Session], tmp_path: Path, lines: list[str]
) -> None:
    path = tmp_path / "fuzz.jsonl"
    text = "\n".join(s.replace("\n", " ").replace("\r", " ") for s in lines) + "\n"
    path.write_text(text, encoding="utf-8")
    report = Ingester(factory).load(read_jsonl(path))
    counted = sum(1 for s in text.split("\n") if s.strip())
    assert report.loaded + report.updated + report.rejected == counted, report.problems


ROWS = st.lists(
    st.tuples(
        st.sampled_from(["a@example.ru", "b@example.ru", "not-an-address", "x" * 70 + "@e.ru"])
        | st.emails()
        | st.text(max_size=30),
        st.text(max_size=30),
        st.sampled_from(["", "Europe/Moscow", "Europe", "Mars/Olympus"]) | st.text(max_size=15),
        st.sampled_from(["", "html", "text", "pdf"]),
    ),
    min_size=1,
    max_size=10,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=ROWS, junk=st.binary(max_size=20).map(lambda b: b.translate(None, b"\r\n")))
def test_fuzz_import_loads_or_reports_every_row(
    factory: sessionmaker[Session], tmp_path: Path, rows: list[tuple[str, ...]], junk: bytes
) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["email", "name", "timezone", "format"])
    writer.writerows(rows)
    path = tmp_path / "fuzz.csv"
    path.write_bytes(buffer.getvalue().encode("utf-8") + junk)
    report = SubscriberBook(factory, double_opt_in=False).import_csv(path)
    records = sum(1 for r in csv.reader(io.StringIO(buffer.getvalue())) if r) - 1
    handled = report.added + report.updated + report.merged + report.kept_closed
    # The junk tail is at most one more record, loaded or reported.
    assert records <= handled + report.rejected <= records + 1, report.problems


def test_comments_past_the_cap_are_dropped_and_said_the_article_kept(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    """Issue 24 §6: a 10 MB line of comments took 33 s and 1.4 GB. A line is
    bounded (MAX_LINE) and so are its comments (`bench/ingest.py` measures it)."""
    from digest.ingest.records import MAX_COMMENTS

    many = [
        {"number": n, "posted_at": "2026-11-25T09:00:00+03:00", "body": "Да."}
        for n in range(1, MAX_COMMENTS + 51)
    ]
    path = tmp_path / "articles.jsonl"
    path.write_bytes(line({**GOOD, "comments": many}) + line({**GOOD, "id": "a9"}))
    report = Ingester(factory).load(read_jsonl(path))
    assert report.loaded == 2 and report.rejected == 0
    assert report.comments_added == MAX_COMMENTS and report.comments_rejected == 50
    assert any(f"the first {MAX_COMMENTS} kept, 50 dropped" in w.reason for w in report.warnings)


def gzip_server(body: bytes) -> tuple[HTTPServer, str]:
    """A feed served gzip-compressed, as a site's server sends it."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/rss.xml"


RSS = (
    '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item><title>Фрегат'
    "</title><link>https://vpk.example.ru/news/1.html</link><description>{pad}</description>"
    "<pubDate>Tue, 24 Nov 2026 06:00:00 GMT</pubDate></item></channel></rss>"
)


def test_a_gzip_feed_is_inflated_within_its_bound(factory: sessionmaker[Session]) -> None:
    """A 300 KB answer inflating to 300 MB took 1.65 GB: it is refused past MAX_FEED
    once uncompressed, named, and an ordinary compressed feed still loads."""
    from digest.ingest.records import MAX_FEED

    bomb = gzip.compress(RSS.format(pad=" " * (MAX_FEED + 2**20)).encode(), 9)
    ordinary = gzip.compress(RSS.format(pad="Новость").encode())
    for body, loaded in ((bomb, 0), (ordinary, 1)):
        server, url = gzip_server(body)
        try:
            report = Ingester(factory).load(read_source(url))
        finally:
            server.shutdown()
            server.server_close()
        assert report.loaded == loaded, report.problems
        if not loaded:
            assert "MB once uncompressed" in report.problems[0].reason
