"""`digest special` and `digest send LABEL` as processes (issue 28 §6): breaking
news made from chosen articles of any day, refused in words when the order is
wrong, held until approved, then sent to a real SMTP server by its label."""

from __future__ import annotations

import email
import email.policy
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from digest.capture import CaptureServer
from tests.support.cli import base_env, digest


@pytest.fixture
def relay() -> Iterator[CaptureServer]:
    with CaptureServer() as server:
        yield server


def article_ids(workdir: Path, count: int) -> list[str]:
    with sqlite3.connect(workdir / "var" / "digest.sqlite3") as db:
        rows = db.execute("SELECT id FROM article ORDER BY id LIMIT ?", (count,)).fetchall()
    return [str(r[0]) for r in rows]


def test_a_special_edition_is_made_held_until_approved_and_sent_by_its_label(
    demo_db: Path, relay: CaptureServer
) -> None:
    env = base_env(demo_db, DIGEST_SMTP_URL=relay.url)
    first, second = article_ids(demo_db, 2)
    empty = digest(demo_db, "special", "daily", "--subject", "Срочно", env=env)
    assert empty.returncode == 1 and "Выберите от одной" in empty.stderr
    assert "Traceback" not in empty.stderr
    made = digest(
        demo_db,
        "special",
        "daily",
        "-a",
        second,
        "-a",
        first,
        "--subject",
        "Срочно: итоги",
        env=env,
    )
    assert made.returncode == 0, made.stderr
    label = made.stdout.split(":", 1)[0]
    assert label.endswith("/special-1") and "every reader of the list" in made.stdout
    held = digest(demo_db, "send", label, env=env)
    assert held.returncode == 1 and "wants approval" in held.stderr and not relay.messages
    assert digest(demo_db, "approve", label, env=env).returncode == 0
    sent = digest(demo_db, "send", label, env=env)
    assert sent.returncode == 0, sent.stderr
    assert len(relay.messages) == 20  # the demo's twenty readers, every one of them
    message = email.message_from_bytes(relay.messages[0].data, policy=email.policy.default)
    assert message["Subject"] == "Срочно: итоги"
    status = digest(demo_db, "status", label, env=env)
    assert status.returncode == 0 and "sent" in status.stdout
