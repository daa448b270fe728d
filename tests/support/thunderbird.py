"""Thunderbird from Debian's packages on a private Xvfb screen (issue 27 §5):
a fresh profile opens one message file in its own window, which is captured
(ImageMagick's ``import``) and read back by OCR (Debian's tesseract, Russian
and English), so a test can say the message opened and what is on screen.
``make thunderbird`` installs the parts; under CI=true a missing one is an error."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.common import IN_CI

PARTS = ("thunderbird", "Xvfb", "xdotool", "import", "tesseract")

# A fresh profile asks nothing: no default-client question, no start page, no
# telemetry; remote content stays blocked (Thunderbird's default, kept explicit).
USER_JS = """\
user_pref("mail.shell.checkDefaultClient", false);
user_pref("mailnews.start_page.enabled", false);
user_pref("mail.provider.suppress_dialog_on_startup", true);
user_pref("mail.rights.override", true);
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("toolkit.telemetry.enabled", false);
user_pref("app.update.enabled", false);
user_pref("mail.spotlight.firstRunDone", true);
user_pref("mailnews.message_display.disable_remote_image", true);
user_pref("ui.systemUsesDarkTheme", %d);
"""


def need_thunderbird() -> None:
    missing = [p for p in PARTS if shutil.which(p) is None]
    if missing:
        message = f"missing {', '.join(missing)}: `make thunderbird` installs Debian's packages"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@contextlib.contextmanager
def screen(width: int = 1100, height: int = 900) -> Iterator[str]:
    """A private X display (Xvfb picks a free number and tells it)."""
    read, write = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", f"{width}x{height}x24",
         "-nolisten", "tcp"],
        pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(write)
    with os.fdopen(read) as told:
        number = told.readline().strip()
    try:
        yield f":{number}"
    finally:
        xvfb.terminate()
        xvfb.wait(10)


@dataclass(frozen=True)
class Opened:
    picture: Path
    text: str  # what OCR reads in the message window


def open_message(eml: Path, picture: Path, title: str, dark: bool = False) -> Opened:
    """Open ``eml`` in a fresh Thunderbird; wait for the window whose title
    begins with ``title`` (the subject), capture it to ``picture`` and read it."""
    profile = eml.parent / f"profile-{eml.stem}"
    profile.mkdir()
    (profile / "user.js").write_text(USER_JS % int(dark), encoding="utf-8")
    with screen() as display:
        env = {**os.environ, "DISPLAY": display, "HOME": str(profile)}
        env.pop("MOZ_HEADLESS", None)  # a window on the private screen, not headless
        thunderbird = subprocess.Popen(
            ["thunderbird", "--profile", str(profile), "--no-remote", str(eml)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            window = _window(title, env)
            xdotool = [
                "xdotool",
                "windowmove",
                window,
                "0",
                "0",
                "windowsize",
                window,
                "1100",
                "900",
            ]
            subprocess.run(xdotool, env=env, check=True, timeout=30)
            time.sleep(3)  # the resized window is drawn again (a picture, not a measure)
            subprocess.run(
                ["import", "-window", window, str(picture)], env=env, check=True, timeout=60
            )
        finally:
            thunderbird.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                thunderbird.wait(20)
            thunderbird.kill()
    text = subprocess.run(
        ["tesseract", str(picture), "-", "-l", "rus+eng"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    return Opened(picture, text)


def _window(title: str, env: dict[str, str], patience: float = 120.0) -> str:
    """The id of the window named ``title…``: Thunderbird's start on a fresh
    profile takes seconds; past ``patience`` the message never opened."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        found = subprocess.run(
            ["xdotool", "search", "--name", f"^{title}"], env=env, capture_output=True, text=True
        ).stdout.split()
        if found:
            return found[0]
        time.sleep(0.5)
    raise AssertionError(f"Thunderbird showed no window named {title!r} in {patience:.0f} s")
