"""The service units of deploy/systemd: `systemd-analyze verify` finds nothing to
say about them (with this checkout's paths), and every command line they run is
one `digest` understands."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import DIGEST

PROJECT = Path(__file__).resolve().parents[2]
UNITS = sorted((PROJECT / "deploy" / "systemd").glob("*.service"))
HARDENING = (
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "PrivateTmp=yes",
    "User=digest",
    "EnvironmentFile=/etc/digest/digest.env",
    "Restart=on-failure",
    "KillSignal=SIGTERM",
)


def analyzer() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is missing (Debian's systemd package)")
        pytest.skip("systemd-analyze is missing")
    return found


def test_there_are_the_three_units() -> None:
    assert [u.name for u in UNITS] == [
        "digest-scheduler.service",
        "digest-web.service",
        "digest-worker@.service",
    ]


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_systemd_analyze_verify_has_nothing_to_say(unit: Path, tmp_path: Path) -> None:
    text = unit.read_text(encoding="utf-8")
    for line in HARDENING:
        assert line in text, f"{unit.name} lacks {line}"
    local = text.replace("/srv/digest/.venv/bin/digest", DIGEST).replace(
        "/etc/digest/digest.env", str(PROJECT / "deploy" / "digest.env.example")
    )
    name = unit.name.replace("@.service", "@1.service")  # a template is verified as an instance
    (tmp_path / name).write_text(local, encoding="utf-8")
    result = subprocess.run(
        [analyzer(), "verify", str(tmp_path / name)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_every_command_a_unit_runs_is_one_digest_knows(unit: Path) -> None:
    for line in unit.read_text(encoding="utf-8").splitlines():
        if not line.startswith(("ExecStart=", "ExecStartPre=")):
            continue
        words = shlex.split(line.partition("=")[2])
        assert words[0] == "/srv/digest/.venv/bin/digest", line
        command = [w for w in words[1:] if not w.startswith("-") and not w[0].isdigit()]
        options = [w for w in words[1:] if w.startswith("--")]
        helped = subprocess.run(
            [DIGEST, *command, "--help"], capture_output=True, text=True, timeout=60
        )
        assert helped.returncode == 0, helped.stderr
        for option in options:
            assert option in helped.stdout, f"{line}: `digest {' '.join(command)}` has no {option}"
