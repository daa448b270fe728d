"""Fixtures for the web tests: the app served by uvicorn on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from digest import demo
from digest.capture import free_port
from digest.config import parse_smtp_url
from digest.models import Edition
from digest.send import RelayPool, RunResult, SmtpConnection, run_async
from digest.web.app import WebContext, create_app
from digest.wiring import Services
from tests.conftest import FIXED_NOW
from tests.serving import serving

PASSWORD = "правильный-пароль"


@pytest.fixture
def site(pipeline: Services) -> Iterator[tuple[Services, str]]:
    """The app with three readers and one editor, anna (an admin), on either database."""
    port = free_port()
    cfg = pipeline.settings.model_copy(
        update={
            "base_url": f"http://127.0.0.1:{port}",
            "editors": SecretStr(f"anna:{PASSWORD}"),
            "desk_admins": "anna",
        }
    )
    pipe = Services(cfg, pipeline.factory, clock=pipeline.clock)
    schedule = pipe.schedule("daily")
    demo.load(pipe.factory, demo.build(schedule, FIXED_NOW.date()))
    demo.add_subscribers(pipe.factory, 3, now=FIXED_NOW)
    with serving(create_app(WebContext(cfg, pipe.factory, clock=pipe.clock)), port) as base:
        yield pipe, base


@pytest.fixture
def list_settings() -> dict[str, Any]:
    """Overrides of the daily list's lists.toml keys; a test parametrizes it."""
    return {}


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return json.dumps(value, ensure_ascii=False)  # strings, numbers and lists read the same


@pytest.fixture
def web_pipeline(pipeline: Services, list_settings: dict[str, Any], tmp_path: Path) -> Services:
    """The pipeline with the project's lists.toml, changed as the test asks."""
    if not list_settings:
        return pipeline
    source = (pipeline.settings.subscribers_dir / "lists.toml").read_text(encoding="utf-8")
    folder = tmp_path / "subscribers"
    folder.mkdir()
    extra = "".join(
        f"{k} = {str(v).lower() if isinstance(v, bool) else v!r}\n"
        for k, v in list_settings.items()
    )
    lines = [
        line for line in source.splitlines() if line.split("=")[0].strip() not in list_settings
    ]
    (folder / "lists.toml").write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    cfg = pipeline.settings.model_copy(update={"subscribers_dir": folder})
    return Services(cfg, pipeline.factory, clock=pipeline.clock)


@pytest.fixture
def served(web_pipeline: Services, fixed_date: date) -> Iterator[tuple[Services, str]]:
    pipeline = web_pipeline
    schedule = pipeline.schedule("daily")
    demo.load(pipeline.factory, demo.build(schedule, fixed_date))
    demo.add_subscribers(pipeline.factory, 5, now=FIXED_NOW)
    app = create_app(WebContext(pipeline.settings, pipeline.factory, pipeline.clock))
    with serving(app) as base:
        yield pipeline, base


def send_through(pipe: Services, edition: Edition, url: str, worker: str = "test") -> RunResult:
    """Start ``edition`` and send every due delivery through the relay at ``url``."""
    schedule = pipe.schedule(edition.schedule)
    pipe.lifecycle.start_sending(schedule, edition)
    run = pipe.sender.send_run(
        schedule,
        edition,
        lambda t: SmtpConnection(t, 10),
        worker=worker,
        relays=RelayPool([parse_smtp_url(url)]),
    )
    return run_async(run.run())


def in_thread(fn: Callable[[], object], timeout: float = 60) -> None:
    """``fn()`` in a thread of its own, waited for: Playwright's sync API keeps an
    event loop in the test's thread, so a send cannot run its own there."""
    thread = threading.Thread(target=fn)
    thread.start()
    thread.join(timeout=timeout)
    assert not thread.is_alive(), "it did not finish in time"


def together(fn: Callable[[], object], threads: int = 2, timeout: float = 60) -> None:
    """``fn()`` in ``threads`` threads at once (two processes racing), all waited for."""
    started = [threading.Thread(target=fn) for _ in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join(timeout=timeout)
        assert not thread.is_alive(), "it did not finish in time"
