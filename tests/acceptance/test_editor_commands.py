"""`digest editors` as a process (issue 28 §3): accounts made, listed, changed and
removed without a restart; a password never an argument; the last admin kept; and
the other by-hand rule of the team's day, the sunset (§5)."""

from __future__ import annotations

import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

from tests.support.cli import DIGEST, base_env, digest, migrated

PASSWORD = "пароль-анны-1"


def with_stdin(workdir: Path, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DIGEST, *args],
        cwd=workdir,
        env=base_env(workdir),
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_accounts_are_added_listed_changed_and_removed(workdir: Path) -> None:
    migrated(workdir)
    empty = digest(workdir, "editors", "list")
    assert empty.returncode == 0 and "no accounts" in empty.stdout
    # No terminal and no --password-stdin: refused, never read from an argument.
    blind = digest(workdir, "editors", "add", "anna", "--admin")
    assert blind.returncode == 2 and "--password-stdin" in blind.stderr
    added = with_stdin(
        workdir, PASSWORD + "\n", "editors", "add", "anna", "--admin", "--password-stdin"
    )
    assert added.returncode == 0 and "anna: added, admin" in added.stdout, added.stderr
    boris = with_stdin(workdir, PASSWORD + "\n", "editors", "add", "boris", "--password-stdin")
    assert boris.returncode == 0, boris.stderr
    short = with_stdin(workdir, "short\n", "editors", "add", "vera", "--password-stdin")
    assert short.returncode == 1 and "Пароль" in short.stderr and "Traceback" not in short.stderr
    listed = digest(workdir, "editors", "list")
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:2] == ["anna", "admin"] and lines[1].split()[:2] == ["boris", "editor"]
    last = digest(workdir, "editors", "remove", "anna")
    assert last.returncode == 1 and "последний администратор" in last.stderr
    assert digest(workdir, "editors", "role", "boris", "admin").returncode == 0
    assert digest(workdir, "editors", "remove", "anna").returncode == 0
    changed = with_stdin(
        workdir, "новый-пароль-бориса\n", "editors", "passwd", "boris", "--password-stdin"
    )
    assert changed.returncode == 0 and "new password" in changed.stdout
    assert digest(workdir, "editors", "list").stdout.split()[:2] == ["boris", "admin"]
    doctor = digest(workdir, "doctor")
    assert "accounts: boris (admin)" in doctor.stdout + doctor.stderr
    # The command hashes at the product's parameters (the suite's own processes
    # hash cheaper: tests/support/passwords.py).
    with closing(sqlite3.connect(workdir / "var" / "digest.sqlite3")) as conn:
        (stored,) = conn.execute("SELECT password_hash FROM editor").fetchone()
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$"), stored[:40]


def test_the_product_hashes_at_rfc_9106_parameters() -> None:
    from argon2 import profiles

    from tests.support.passwords import PRODUCT

    assert PRODUCT == profiles.RFC_9106_LOW_MEMORY  # 64 MiB, three passes, four lanes


def test_the_sunset_rule_by_hand_says_why_it_does_not_run(workdir: Path) -> None:
    """`digest subscribers sunset` (issue 28 §5): off by default, and on a list that
    does not tell readers' clicks apart it refuses in words, without a traceback."""
    migrated(workdir)
    off = digest(workdir, "subscribers", "sunset", "--dry-run")
    assert off.returncode == 1 and "DIGEST_SUNSET_AFTER=0" in off.stderr, off.stderr
    env = {**base_env(workdir), "DIGEST_SUNSET_AFTER": "6"}
    blind = digest(workdir, "subscribers", "sunset", env=env)
    assert blind.returncode == 1 and "readers' clicks apart" in blind.stderr, blind.stderr
    assert "Traceback" not in off.stderr + blind.stderr
