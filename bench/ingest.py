"""Ingest's memory on hostile input (issue 24 §6): peak RSS of `digest ingest` for
one JSON Lines line of N MB of comments, and for a gzip feed that inflates to N MB,
each beside a baseline measured in the same run (a line and a feed of ordinary size).

    python bench/ingest.py --line-mb 10,50 --feed-mb 300

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DIGEST = str(Path(sys.executable).with_name("digest"))

from bench import measured  # noqa: E402


def article_line(ident: str, comments_mb: float) -> bytes:
    """An article with ``comments_mb`` MB of short comments (many small objects is
    what costs: ~100 bytes of JSON each)."""
    body = "Согласен."
    count = max(1, int(comments_mb * 2**20 / (len(body.encode()) + 90)))
    comments = [
        {"number": n, "author": f"r{n}", "posted_at": "2026-11-24T10:00:00+03:00", "body": body}
        for n in range(1, count + 1)
    ]
    record = {
        "id": ident,
        "url": f"https://vpk.example.ru/news/{ident}",
        "title": "Статья",
        "published_at": "2026-11-24T09:00:00+03:00",
        "comments": comments,
    }
    return json.dumps(record, ensure_ascii=False).encode() + b"\n"


def gzip_feed(folder: Path, inflated_mb: int) -> Path:
    """An RSS document whose gzip stream inflates to ``inflated_mb`` MB of padding."""
    head = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item>'
    tail = b"<title>x</title><link>https://vpk.example.ru/1</link></item></channel></rss>"
    path = folder / f"feed-{inflated_mb}.gz"
    with gzip.open(path, "wb", compresslevel=9) as out:
        out.write(head + b"<description>")
        chunk = b" " * 2**20
        for _ in range(inflated_mb):
            out.write(chunk)
        out.write(b"</description>" + tail)
    return path


@contextmanager
def served_gzip(path: Path) -> Iterator[str]:
    """The file over HTTP on 127.0.0.1 with Content-Encoding: gzip, as a site's
    server would send a compressed feed."""
    data = path.read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/feed.xml"
    finally:
        server.shutdown()


def peak_rss(folder: Path, source: Path | str) -> tuple[float, float, int]:
    """(peak RSS in MB, seconds, exit status) of one `digest ingest` process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(DIGEST_VAR_DIR=str(folder / "var"), DIGEST_SECRET_KEY="bench-" + "k" * 32)
    argv = [DIGEST, "ingest", str(source)]
    seconds, rss, code = measured.outcome(
        measured.start(argv, env | {"COLUMNS": "120"}, subprocess.DEVNULL)
    )
    return rss, seconds, code


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--line-mb", default="10,50")
    parser.add_argument("--feed-mb", default="300")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = os.environ | {"DIGEST_VAR_DIR": str(folder / "var")}
        subprocess.run([DIGEST, "db", "upgrade"], env=env, check=True, capture_output=True)
        base_line = folder / "base.jsonl"
        base_line.write_bytes(article_line("base", 0.1))
        base, seconds, _ = peak_rss(folder, base_line)
        print(f"{'input':<34} {'peak RSS':>10} {'× base':>7} {'seconds':>8} exit")
        print(f"{'one line, 0.1 MB of comments':<34} {base:>8.0f}MB {1:>7.2f} {seconds:>8.1f}")
        for mb in (float(x) for x in args.line_mb.split(",") if x):
            path = folder / f"line-{mb:g}.jsonl"
            path.write_bytes(article_line(f"big{mb:g}", mb) + article_line("after", 0.01))
            rss, seconds, code = peak_rss(folder, path)
            label = f"one line, {mb:g} MB of comments"
            print(f"{label:<34} {rss:>8.0f}MB {rss / base:>7.2f} {seconds:>8.1f} {code}")
        for mb in (int(x) for x in args.feed_mb.split(",") if x):
            path = gzip_feed(folder, mb)
            with served_gzip(path) as url:
                rss, seconds, code = peak_rss(folder, url)
            label = f"gzip feed inflating to {mb} MB ({path.stat().st_size // 1024} KB)"
            print(f"{label:<34} {rss:>8.0f}MB {rss / base:>7.2f} {seconds:>8.1f} {code}")


if __name__ == "__main__":
    main()
