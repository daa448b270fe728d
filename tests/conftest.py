"""The suite's root: isolated settings and a services on either database. The
shared parts are plugins in tests/support/ (databases, SMTP, the web app, the
browser, the `digest` command)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from digest import db
from digest.config import Settings, load_settings
from digest.wiring import Services
from tests.support.common import FIXED_NOW, PROJECT_ROOT

pytest_plugins = [
    "tests.support.databases",
    "tests.support.smtp",
    "tests.support.mail",
    "tests.support.web",
    "tests.support.browser",
    "tests.support.cli",
    "tests.support.tiers",
    "tests.support.mariadb",
    "tests.support.api",
    "tests.support.passwords",
]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A clean DIGEST_* environment pointing at this test's own folder."""
    for key in list(os.environ):
        if key.startswith("DIGEST_"):
            monkeypatch.delenv(key)
    values = {
        "DIGEST_VAR_DIR": str(tmp_path / "var"),
        "DIGEST_DATABASE_URL": f"sqlite:///{tmp_path / 'digest.sqlite3'}",
        "DIGEST_SECRET_KEY": secrets.token_urlsafe(32),
        "DIGEST_BASE_URL": "https://digest.vpk.example.ru",
        "DIGEST_CONFIG": str(tmp_path / "digest.toml"),
        # Sender processes run on the wall clock, not a test's fixed one.
        "DIGEST_SENDERS": "1",
        # The senders keep their test's priority: a timing test's (nice 0 while the
        # other workers run at 10, tests/support/tiers.py) would otherwise lose it.
        "DIGEST_SEND_NICE": "0",
    }
    (tmp_path / "digest.toml").write_text("", encoding="utf-8")
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    return values


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return load_settings()


@pytest.fixture
def services(
    env: dict[str, str], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Services]:
    """A services on either backend (a migrated copy), with the clock fixed to FIXED_NOW."""
    monkeypatch.setenv("DIGEST_DATABASE_URL", database_url)
    cfg = load_settings()
    engine = db.make_engine(cfg.database)
    yield Services(cfg, db.session_factory(engine), clock=lambda: FIXED_NOW)
    engine.dispose()


@pytest.fixture
def fixed_date() -> date:
    return date(2026, 11, 25)


@pytest.fixture
def project_root() -> Path:
    return PROJECT_ROOT
