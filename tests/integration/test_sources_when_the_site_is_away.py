"""A site database that cannot be reached (issue 29): the edition is still built,
from what digest has, and the failure is logged and kept with the source for
`digest sources` to show; the password in its URL is never shown."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from digest.capture import free_port
from digest.wiring import Services
from tests.support.demo_data import load_demo_articles
from tests.support.sources import with_source


@pytest.fixture
def services(
    env: dict[str, str], database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Services]:
    body = 'url_env = "SITE_DATABASE_URL"\npreset = "wordpress"\ntimeout = 2\n'
    # Nobody listens there: connection refused at once.
    away = f"mysql://digest:s3cret-pw@127.0.0.1:{free_port()}/wp"
    with with_source(monkeypatch, database_url, tmp_path / "sources", body, away) as services:
        yield services


def test_the_edition_is_built_from_what_digest_has_and_the_failure_kept(
    services: Services, fixed_date: date, caplog: pytest.LogCaptureFixture
) -> None:
    schedule = services.schedule("daily")
    load_demo_articles(services.factory, schedule, fixed_date)
    with caplog.at_level(logging.WARNING):
        edition = services.editions.build(schedule, fixed_date)
    assert edition.id is not None
    [warning] = [r.getMessage() for r in caplog.records if "source site" in r.getMessage()]
    assert warning.startswith("source site: cannot connect: ")
    assert warning.endswith("(the edition is built from the last sync)")
    [line] = services.sources.overview()
    assert line.synced_at is None and line.error is not None
    assert line.error.startswith("source site: cannot connect")
    assert "s3cret-pw" not in warning + line.error
