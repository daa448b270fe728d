"""digest's services with one site database source (issue 29): ``sources/site.toml``
with ``body``, its URL in ``SITE_DATABASE_URL``, the clock at FIXED_NOW."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from digest import db
from digest.config import load_settings
from digest.sources.sync import SyncReport
from digest.wiring import Services
from tests.support.common import FIXED_NOW


@contextmanager
def with_source(
    monkeypatch: pytest.MonkeyPatch, database_url: str, folder: Path, body: str, site_url: str
) -> Iterator[Services]:
    write_source(folder, body)
    monkeypatch.setenv("SITE_DATABASE_URL", site_url)
    monkeypatch.setenv("DIGEST_SOURCES_DIR", str(folder))
    monkeypatch.setenv("DIGEST_DATABASE_URL", database_url)
    engine = db.make_engine(database_url)
    try:
        yield Services(load_settings(), db.session_factory(engine), lambda: FIXED_NOW)
    finally:
        engine.dispose()


def write_source(folder: Path, body: str, name: str = "site") -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.toml").write_text(body, encoding="utf-8")


def sync_with(services: Services, body: str) -> SyncReport:
    """``sources/site.toml`` rewritten with ``body``, then synced: its one report."""
    write_source(services.settings.sources_dir, body)
    (report,) = services.sources.sync()
    return report
