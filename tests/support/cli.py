"""The `digest` command for the tests: run as a subprocess wherever the process is
under test (exit codes, signals, kill -9, output), and the demo data it works on
built in this process (what `digest demo --no-send` does, without a Python start
per test: issue 26)."""

from __future__ import annotations

import email
import email.parser
import json
import os
import pty
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine

from digest import db, demo
from digest.capture import CaptureServer
from digest.config import load_settings
from digest.models import utcnow
from digest.wiring import Services
from tests.support.databases import new_migrated_sqlite
from tests.support.demo_data import load_demo_articles
from tests.support.faults import FaultHandler

DIGEST = str(Path(sys.executable).parent / "digest")
DAY = "2026-11-25"
CONNECTIONS = 4
FAST = {
    "DIGEST_SMTP_CONNECTIONS": str(CONNECTIONS),
    "DIGEST_RETRY_SCHEDULE": "0.5,1,2",
    "DIGEST_DOMAIN_PAUSE": "0.5",
    "DIGEST_BATCH_SIZE": "100",
}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The folder a `digest` subprocess runs in (its var/ and database live here)."""
    return tmp_path


def base_env(workdir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(
        {
            "COLUMNS": "200",
            "DIGEST_CONFIG": str(workdir / "none.toml"),
            "DIGEST_SECRET_KEY": "cli-test-secret-key-0123456789",
            # One sender process unless a test asks for more (tests/acceptance
            # /test_operations.py runs the crash and stop tests with two).
            "DIGEST_SENDERS": "1",
            "DIGEST_SEND_NICE": "0",  # as tests/conftest.py's env: the suite fills the cores
        }
    )
    (workdir / "none.toml").write_text("", encoding="utf-8")
    env.update(extra)
    return env


def env_for(workdir: Path, server: CaptureServer | None = None, **extra: str) -> dict[str, str]:
    values = dict(FAST, **extra)
    if server is not None:
        values["DIGEST_SMTP_URL"] = server.url
    return base_env(workdir, **values)


def digest(
    workdir: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DIGEST, *args],
        cwd=workdir,
        env=env or base_env(workdir),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start(workdir: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [DIGEST, *args],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@contextmanager
def environment(env: dict[str, str], cwd: Path) -> Iterator[None]:
    """This process's environment and folder as a `digest` process would have them."""
    saved, here = dict(os.environ), Path.cwd()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        os.chdir(here)


def _up_to_date(url: str) -> Engine:
    """An engine on the database at ``url``, brought up to date as `digest db upgrade`
    would: a copy of the migrated template where it is a new SQLite file (not 25
    migrations a test: the command's own run is tested in test_the_command, the
    chain in test_schema_and_migrations), the migrations otherwise."""
    fresh = new_migrated_sqlite(url)
    engine = db.make_engine(url)
    if not fresh:
        db.upgrade(engine)
    return engine


def migrated(workdir: Path, env: dict[str, str] | None = None) -> None:
    """The database ``env`` names, as `digest db upgrade` leaves it."""
    with environment(env or base_env(workdir), workdir):
        _up_to_date(load_settings().database).dispose()


def load_demo(
    workdir: Path, env: dict[str, str], readers: int, on: date | None = None, draft: bool = True
) -> str:
    """The demo's articles and ``readers`` subscribers in the database ``env`` names,
    as `digest demo --no-send` leaves them, and with ``draft`` the day's edition
    drafted, as `digest preview` then leaves it; the edition's label (or day)."""
    with environment(env, workdir):
        cfg = load_settings()
        engine = _up_to_date(cfg.database)
        try:
            services = Services(cfg, db.session_factory(engine), clock=utcnow)
            schedule = services.schedule("daily")
            day = on or schedule.today(utcnow())
            load_demo_articles(services.factory, schedule, day)
            demo.add_subscribers(services.factory, readers, now=utcnow())
            return services.editions.build(schedule, day).label if draft else str(day)
        finally:
            engine.dispose()


def setup_demo(workdir: Path, readers: int, **extra: str) -> str:
    """Demo data for today and ``readers`` subscribers, nothing sent; the edition's label."""
    return load_demo(workdir, env_for(workdir, **extra), readers)


@pytest.fixture
def demo_db(workdir: Path) -> Path:
    """A working folder with the demo data and 20 subscribers loaded (no send)."""
    load_demo(workdir, base_env(workdir), 20, date.fromisoformat(DAY))
    return workdir


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def status(workdir: Path, label: str, env: dict[str, str]) -> dict[str, object]:
    result = digest(workdir, "status", label, "--json", env=env)
    assert result.returncode == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def message_ids(handler: FaultHandler) -> dict[str, set[str]]:
    ids: dict[str, set[str]] = {}
    headers = email.parser.BytesHeaderParser()  # the headers alone: thousands of letters
    for m in handler.messages:
        parsed = headers.parsebytes(m.data)
        ids.setdefault(m.rcpt_to[0], set()).add(str(parsed["Message-ID"]))
    return ids


def in_a_terminal(workdir: Path, *args: str, **extra: str) -> tuple[int, str]:
    """The command with its stdout and stderr on a pseudo-terminal, as a person sees
    it; (exit status, what the terminal got)."""
    main, side = pty.openpty()
    env = base_env(workdir, TERM="xterm", COLUMNS="120", **extra)
    proc = subprocess.Popen([DIGEST, *args], cwd=workdir, env=env, stdout=side, stderr=side)
    os.close(side)
    seen = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the other side closed: the process is done with it
            break
        if not chunk:
            break
        seen += chunk
    os.close(main)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen.decode(errors="replace"))  # colours
    return proc.wait(timeout=120), text
