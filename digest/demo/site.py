"""`make demo-site` (issue 29): the demo's articles and comments written into a
WordPress-layout database, read back by a source like any site's, then the
edition built and sent from it. Also the private MariaDB the demo and the
benchmark start (its own data directory, port and socket under var/), never the
machine's own server."""

from __future__ import annotations

import shutil
import subprocess  # nosec B404  # Debian's mariadb binaries, arguments ours
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from digest.demo.words import SECTIONS
from digest.errors import DigestError
from digest.store.wordpress import WordPressSite

# A small server for a demo and the tests: a 32 MB buffer pool and InnoDB's own
# threads for I/O, not io_uring, whose locked memory is a limit shared with every
# other process on the machine (a CI run once failed to make the data directory
# with the cause unseen; it is now in the error).
LIGHT = ("--innodb-buffer-pool-size=32M", "--innodb-use-native-aio=0")

SOURCE_FILE = 'url_env = "DIGEST_SITE_DATABASE_URL"\npreset = "wordpress"\nsync_every = 15\n'


def load_site(url: str, home: str, records: list[dict[str, Any]], now: datetime) -> int:
    """The demo's records as WordPress posts, categories and approved comments
    (a fresh layout each time); returns the number of posts."""
    # The demo makes a whole window, part of it still ahead when the edition is
    # today's; a site has published nothing after now, and a sync reads only up
    # to now, so later times are moved back to a minute ago (the order kept).
    latest = now - timedelta(minutes=1)

    def at(text: str) -> datetime:
        return min(datetime.fromisoformat(text), latest)

    site = WordPressSite(url)
    try:
        for table in ("options", "posts", "postmeta", "terms", "term_taxonomy",
                      "term_relationships", "comments"):  # fmt: skip
            site.execute(f"DROP TABLE IF EXISTS {{p}}{table}")  # our own table names
        site.create(home)
        categories = {name: site.add_category(name, f"s{n}") for n, name in enumerate(SECTIONS)}
        posts, comments = [], []
        for number, record in enumerate(records, start=1):
            published = at(record["published_at"])
            section = record.get("section")
            if section and section not in categories:
                categories[section] = site.add_category(section, f"s{len(categories)}")
            posts.append({
                "ID": number, "title": record["title"], "excerpt": record.get("lead") or "",
                "date": published, "category": categories.get(section) if section else None,
                "views": record.get("views", 0),
            })  # fmt: skip
            comments += [
                {"post": number, "author": c.get("author"), "content": c.get("body", ""),
                 "date": at(c["posted_at"]), "karma": c.get("votes", 0)}
                for c in record.get("comments", [])
            ]  # fmt: skip
        site.add_posts(posts)
        site.add_comments(comments)
        return len(posts)
    finally:
        site.close()


def _tail(done: subprocess.CompletedProcess[str]) -> str:
    lines = (done.stderr or done.stdout or "").strip().splitlines()
    return " | ".join(lines[-5:]) or f"exit status {done.returncode}"


class LocalMariaDB:
    """A private MariaDB under ``root`` on 127.0.0.1:``port``: started if it is not
    running, its data kept between runs."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root.resolve()
        self.port = port
        self.socket = self.root / "mysqld.sock"
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, database: str) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/{database}"

    def _admin(self, *args: str) -> subprocess.CompletedProcess[str]:
        admin = shutil.which("mariadb-admin") or "mariadb-admin"
        return subprocess.run(  # nosec B603
            [admin, "--no-defaults", f"--socket={self.socket}", "--user=root", *args],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip

    def start(self, database: str) -> str:
        if self._admin("ping").returncode != 0:
            self._boot()
        self._admin("create", database, "--force")  # exists already: fine
        return self.url(database)

    def _boot(self) -> None:
        server = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        install = shutil.which("mariadb-install-db")
        if install is None:
            raise DigestError("MariaDB is not installed (make demo-site installs mariadb-server)")
        data, tmp = self.root / "data", self.root / "tmp"
        # Its own temporary folder: the machine's /tmp is shared, and a file the
        # installer's temporary tables put there can be cleaned away under it.
        tmp.mkdir(parents=True, exist_ok=True)
        if not data.is_dir():
            made = subprocess.run(  # nosec B603
                [install, "--no-defaults", f"--datadir={data}", f"--tmpdir={tmp}", "--user=root",
                 "--auth-root-authentication-method=normal", "--skip-test-db", *LIGHT],
                check=False, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            if made.returncode != 0:
                shutil.rmtree(data, ignore_errors=True)  # half made: the next start begins again
                raise DigestError(f"MariaDB's data directory could not be made: {_tail(made)}")
        self.process = subprocess.Popen(  # nosec B603
            [server, "--no-defaults", f"--datadir={data}", f"--tmpdir={tmp}",
             f"--socket={self.socket}", f"--port={self.port}", "--bind-address=127.0.0.1",
             "--user=root",
             f"--pid-file={self.root / 'mysqld.pid'}", f"--log-error={self.root / 'error.log'}",
             "--skip-log-bin", "--character-set-server=utf8mb4", *LIGHT],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        for _ in range(150):
            if self._admin("ping").returncode == 0:
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        log = self.root / "error.log"
        last = log.read_text(errors="replace").splitlines()[-5:] if log.exists() else []
        raise DigestError(f"MariaDB did not start; see {log}: " + " | ".join(last))

    def stop(self) -> None:
        self._admin("shutdown")
        if self.process is not None:  # started here: reaped here
            self.process.wait(timeout=60)
