"""Reading a site's database (issue 29): `digest sources sync` of a WordPress-layout
MariaDB holding N articles and M comments into a fresh SQLite database, timed, with
its peak RSS, beside two figures measured in the same run:

- the floor: the same rows read raw (PyMySQL's server-side cursor, nothing mapped
  or written), in a process of its own;
- the memory baseline: the same sync of a site a tenth the size. Flat memory is a
  peak RSS ratio near 1 for ten times the rows.

    python bench/sources.py --articles 100000 --comments 1000000

A private MariaDB (its own data directory, port and socket in a temporary folder)
is started and removed. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import measured
from digest.capture import free_port
from digest.demo.site import LocalMariaDB
from digest.store.wordpress import WordPressSite

DIGEST = str(Path(sys.executable).with_name("digest"))
NOW = datetime.now(UTC).replace(microsecond=0)
CHUNK = 5000

RAW = """
import sys, pymysql, pymysql.cursors
conn = pymysql.connect(host="127.0.0.1", port=int(sys.argv[1]), user="root", database=sys.argv[2],
                       charset="utf8mb4", cursorclass=pymysql.cursors.SSCursor)
rows = 0
for table in ("wp_posts", "wp_comments"):
    with conn.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table}")
        while batch := cursor.fetchmany(500):
            rows += len(batch)
print(rows)
"""


def fill(url: str, articles: int, comments: int) -> None:
    """Posts spread over the last 25 days, two categories, comments spread over posts."""
    site = WordPressSite(url)
    site.create("https://vpk.example.ru")
    army, fleet = site.add_category("Армия", "army"), site.add_category("Флот", "fleet")
    for start in range(1, articles + 1, CHUNK):
        site.add_posts(
            {
                "ID": n,
                "title": f"Статья номер {n}: «Армата» прошла испытания",
                "excerpt": "Первый абзац статьи, как его пишет редакция сайта. " * 3,
                "date": NOW - timedelta(minutes=(articles - n) * 25 * 1440 // articles + 5),
                "category": army if n % 2 else fleet,
                "views": n % 997,
            }
            for n in range(start, min(start + CHUNK, articles + 1))
        )
    per = max(1, comments // articles)
    for start in range(0, comments, CHUNK):
        site.add_comments(
            {
                "post": n // per % articles + 1,
                "author": f"читатель{n % 5000}",
                "date": NOW - timedelta(seconds=(comments - n) * 20 * 86400 // comments + 60),
                "content": "Согласен с автором, но есть вопросы к срокам поставки.",
            }
            for n in range(start, min(start + CHUNK, comments))
        )
    site.close()


def child(command: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """(seconds, this process's own peak RSS in MB, its stdout)."""
    with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryFile("w+") as err:
        out = Path(folder) / "stdout"
        seconds, rss, code = measured.outcome(measured.start(command, env, err, str(out)))
        if code != 0:
            err.seek(0)
            raise SystemExit(f"{command[:3]} failed: {err.read()[-2000:]}")
        return seconds, int(rss), out.read_text()


def measure(server: LocalMariaDB, folder: Path, articles: int, comments: int) -> dict[str, float]:
    database = f"site{articles}"
    url = server.start(database)
    started = time.monotonic()
    fill(url, articles, comments)
    filled = time.monotonic() - started
    (folder / "sources").mkdir(exist_ok=True)
    (folder / "sources" / "site.toml").write_text(
        'url_env = "SITE_URL"\npreset = "wordpress"\ntimeout = 600\nbatch = 1000\n'
    )
    env = {
        **os.environ,
        "SITE_URL": url,
        "DIGEST_SOURCES_DIR": str(folder / "sources"),
        "DIGEST_DATABASE_URL": f"sqlite:///{folder / f'digest-{articles}.sqlite3'}",
        "DIGEST_VAR_DIR": str(folder / "var"),
    }
    subprocess.run([DIGEST, "db", "upgrade"], env=env, check=True, capture_output=True)
    raw_s, raw_rss, raw_rows = child([sys.executable, "-c", RAW, str(server.port), database], env)
    sync_s, rss, first = child([DIGEST, "sources", "sync"], env)
    again_s, _, again = child([DIGEST, "sources", "sync"], env)
    rows = articles + comments
    print(
        f"{articles:>7} articles, {comments:>8} comments (filled in {filled:.0f} s):\n"
        f"  sync {sync_s:6.1f} s = {rows / sync_s:8.0f} rows/s; peak RSS {rss} MB\n"
        f"  raw read {raw_s:6.1f} s = {int(raw_rows) / raw_s:8.0f} rows/s; sync / raw = "
        f"{sync_s / raw_s:.1f}; its peak RSS {raw_rss} MB\n"
        f"  first sync — {first.strip().splitlines()[0]}\n"
        f"  second sync (nothing new): {again_s:.1f} s — {again.strip().splitlines()[0]}",
        flush=True,
    )
    return {"rss": rss, "rate": rows / sync_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--articles", type=int, default=100_000)
    parser.add_argument("--comments", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="digest-bench-sources-") as tmp:
        folder = Path(tmp)
        server = LocalMariaDB(folder / "mariadb", free_port())
        try:
            small = measure(server, folder, args.articles // 10, args.comments // 10)
            full = measure(server, folder, args.articles, args.comments)
        finally:
            server.stop()
    print(
        f"ten times the rows: peak RSS {full['rss']:.0f} MB vs {small['rss']:.0f} MB "
        f"(x{full['rss'] / small['rss']:.2f}); rate x{full['rate'] / small['rate']:.2f}"
    )


if __name__ == "__main__":
    main()
