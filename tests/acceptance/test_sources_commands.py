"""`digest demo --site`, `digest sources`, `digest sources sync` and `digest doctor`
on a site's database, as an operator runs them (issue 29): the demo's articles in a
WordPress-layout MariaDB, synced, listed, checked; a broken source named in one
line with the others kept, and no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import base_env, digest
from tests.support.mariadb import PrivateMariaDB

pytestmark = [pytest.mark.mariadb]


def test_the_demo_from_a_site_database_then_the_sources_commands(
    workdir: Path, site_mariadb: tuple[PrivateMariaDB, str]
) -> None:
    server, name = site_mariadb
    env = base_env(
        workdir,
        DIGEST_SITE_DATABASE_URL=server.url(name),
        DIGEST_SOURCES_DIR=str(workdir / "sources"),
        DIGEST_DATABASE_URL=f"sqlite:///{workdir / 'digest.sqlite3'}",
    )
    demo = digest(workdir, "demo", "--site", "--subscribers", "20", env=env, timeout=300)
    assert demo.returncode == 0, demo.stderr
    assert "the site's database holds 40 posts" in demo.stdout
    assert "site: read sections 7, articles 40, comments " in demo.stdout
    assert "the capture server received 20 messages" in demo.stdout

    listed = digest(workdir, "sources", env=env)
    assert listed.returncode == 0 and listed.stdout.startswith("site: wordpress, every 15 min")

    again = digest(workdir, "sources", "sync", "site", env=env)
    assert again.returncode == 0, again.stderr
    assert "comments added 0" in again.stdout  # nothing twice

    doctor = digest(workdir, "doctor", "--no-smtp", env=env)
    line = next(x for x in doctor.stdout.splitlines() if "source site" in x)
    assert line.split()[0] == "ok" and "read-only, timeout 10 s, 4 queries" in line

    (workdir / "sources" / "broken.toml").write_text(
        'url_env = "DIGEST_SITE_DATABASE_URL"\n[queries.articles]\nsql = "SELECT 1 AS id"\n',
        encoding="utf-8",
    )
    broken = digest(workdir, "sources", "sync", env=env)
    assert broken.returncode == 1 and "Traceback" not in broken.stderr
    assert "broken: failed source broken, query articles: no column url" in broken.stderr
    assert "site: read " in broken.stdout  # the other source still synced
    unknown = digest(workdir, "sources", "sync", "../pyproject", env=env)
    assert unknown.returncode == 1
    assert "no source '../pyproject' (known: broken, site)" in unknown.stderr
