"""Debian's Chromium for the browser tests, started once per test process (issue
26) and driven by Playwright over the DevTools protocol.

A test module gets its own Playwright connection (``browser``): Playwright's sync
API keeps an event loop running in the test's thread while it is open, and the
other tests of the process must be free to run theirs."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.common import IN_CI

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling Google's hosts,
# which this sandbox refuses; tests talk to 127.0.0.1 only.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _devtools_port(profile: Path, process: subprocess.Popen[bytes], within: float) -> int:
    """The port Chromium chose: it writes it to DevToolsActivePort in its profile."""
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Chromium exited with {process.returncode} at start")
        if marker.exists() and (first := marker.read_text().split("\n", 1)[0]).isdigit():
            return int(first)
        time.sleep(0.05)
    raise RuntimeError(f"Chromium did not open its DevTools port within {within:.0f} s")


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Chromium for the whole session: its DevTools address."""
    if not os.access(CHROMIUM, os.X_OK):
        message = f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium package"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    profile = tmp_path_factory.mktemp("chromium")
    process = subprocess.Popen(
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={profile}",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{_devtools_port(profile, process, 30)}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        connected = playwright.chromium.connect_over_cdp(chromium)
        yield connected
        connected.close()
