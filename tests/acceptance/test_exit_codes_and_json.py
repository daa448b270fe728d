"""The ops CLI of the scheduler issue, each command as a subprocess: its exit
status (0 ok, 1 something failed, 2 bad usage) and its --json output."""

from __future__ import annotations

import email
import email.policy
import json
import os
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from digest.capture import CaptureServer, free_port
from tests.support.cli import DIGEST, base_env, digest, load_demo, migrated

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def relay() -> Iterator[CaptureServer]:
    with CaptureServer() as server:
        yield server


def schedules_dir(workdir: Path, cron: str, send: str = "") -> Path:
    """The project's daily.toml with another cron (and [send] table): tests must not
    depend on the hour they run at."""
    folder = workdir / "schedules"
    folder.mkdir(exist_ok=True)
    text = (PROJECT / "schedules" / "daily.toml").read_text(encoding="utf-8")
    text = text.replace('cron = "0 7 * * *"', f'cron = "{cron}"')
    if send:
        text = text.split("[send]")[0] + "[send]\n" + send
    (folder / "daily.toml").write_text(text, encoding="utf-8")
    return folder


def moscow_today() -> str:
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo("Europe/Moscow")).date().isoformat()


@pytest.fixture
def ops(workdir: Path, relay: CaptureServer) -> dict[str, str]:
    """Demo data for today (Moscow), 10 readers, and an env with the relay."""
    env = base_env(workdir, DIGEST_SMTP_URL=relay.url)
    # What `digest demo --no-send` leaves, built in this process (issue 26).
    load_demo(workdir, env, 10, date.fromisoformat(moscow_today()), draft=False)
    return env


def run_json(workdir: Path, env: dict[str, str], *args: str) -> tuple[int, object, str]:
    result = digest(workdir, *args, "--json", env=env)
    try:
        data = json.loads(result.stdout) if result.stdout.strip() else None
    except json.JSONDecodeError:
        pytest.fail(f"`digest {' '.join(args)} --json` printed no JSON: {result.stdout!r}")
    return result.returncode, data, result.stderr


def test_schedules_lists_next_fire_times_in_moscow_and_utc(workdir: Path) -> None:
    env = base_env(workdir)
    migrated(workdir, env)
    code, rows, err = run_json(workdir, env, "schedules", "--count", "2")
    assert code == 0, err
    assert isinstance(rows, list)
    by_name = {r["schedule"]: r for r in rows}
    assert set(by_name) == {"daily", "weekly"}
    first = by_name["daily"]["next"][0]
    moscow, utc = datetime.fromisoformat(first["local"]), datetime.fromisoformat(first["utc"])
    assert moscow == utc and moscow.utcoffset() == timedelta(hours=3)
    assert (moscow.hour, moscow.minute) == (7, 0)
    assert datetime.fromisoformat(by_name["weekly"]["next"][0]["local"]).weekday() == 0
    assert by_name["daily"]["last_edition"] is None


def test_a_malformed_schedule_file_is_refused_at_start(workdir: Path) -> None:
    folder = schedules_dir(workdir, "0 7 * * *", 'unapproved = "maybe"\n')
    env = base_env(workdir, DIGEST_SCHEDULES_DIR=str(folder))
    migrated(workdir, env)
    for command in (["scheduler", "--once"], ["schedules"], ["run", "daily"]):
        result = digest(workdir, *command, env=env)
        assert result.returncode == 1, command
        message = " ".join(result.stderr.split())
        assert "daily.toml: send.unapproved:" in message and "'send' or 'hold'" in message


def test_run_sends_within_the_grace_time_and_logs_the_edition_in_every_line(
    workdir: Path, ops: dict[str, str], relay: CaptureServer
) -> None:
    # A cron that fired within the last minute: inside any grace time.
    env = {**ops, "DIGEST_SCHEDULES_DIR": str(schedules_dir(workdir, "* * * * *"))}
    result = digest(workdir, "--log-json", "run", "daily", env=env)
    assert result.returncode == 0, result.stderr
    assert len(relay.messages) == 10
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    send_lines = [line for line in lines if "send" in line["msg"] or "sending" in line["msg"]]
    assert send_lines and all(isinstance(line.get("edition"), int) for line in send_lines)
    again = digest(workdir, "run", "daily", "--json", env=env)
    assert again.returncode == 0 and json.loads(again.stdout)["outcome"] == "already"
    assert len(relay.messages) == 10


def test_run_past_the_grace_time_is_missed_until_run_by_date(
    workdir: Path, ops: dict[str, str], relay: CaptureServer
) -> None:
    # An hourly cron that last fired about half an hour ago, with one minute of grace.
    minute = (datetime.now(UTC) - timedelta(minutes=30)).minute
    folder = schedules_dir(workdir, f"{minute} * * * *", "grace_minutes = 1\n")
    env = {**ops, "DIGEST_SCHEDULES_DIR": str(folder)}
    code, report, err = run_json(workdir, env, "run", "daily")
    assert code == 1, err
    assert isinstance(report, dict) and report["outcome"] == "missed"
    code, rows, _ = run_json(workdir, env, "editions")
    assert code == 0 and isinstance(rows, list) and rows[0]["status"] == "missed"
    assert not relay.messages
    day = report["edition_date"]
    result = digest(workdir, "run", "daily", "--date", day, env=env)
    assert result.returncode == 0, result.stderr
    assert len(relay.messages) == 10
    code, status, _ = run_json(workdir, env, "status", f"daily/{day}")
    assert code == 0 and isinstance(status, dict)
    assert status["status"] == "sent" and status["counts"]["sent"] == 10
    # The levers on a sent edition: retry finds nothing to redo; an unknown edition is an error.
    result = digest(workdir, "retry", f"daily/{day}", "--failed", env=env)
    assert result.returncode == 0 and "0 deliveries queued again" in result.stdout
    for lever in ("pause", "resume", "cancel", "retry"):
        assert digest(workdir, lever, "daily/1999-01-01", env=env).returncode == 1


def test_approve_and_take_it_back(workdir: Path, ops: dict[str, str]) -> None:
    folder = schedules_dir(workdir, "0 7 * * *", "approval = true\n")
    env = {**ops, "DIGEST_SCHEDULES_DIR": str(folder)}
    built = digest(workdir, "preview", "daily", "--date", moscow_today(), env=env)
    assert built.returncode == 0, built.stderr
    label = f"daily/{moscow_today()}"
    result = digest(workdir, "approve", label, env=env)
    assert result.returncode == 0 and "approved" in result.stdout
    result = digest(workdir, "approve", label, "--undo", env=env)
    assert result.returncode == 0 and "draft" in result.stdout
    assert digest(workdir, "approve", "daily/1999-01-01", env=env).returncode == 1


def test_doctor_says_what_is_wrong_one_line_each(
    workdir: Path, ops: dict[str, str], relay: CaptureServer
) -> None:
    code, checks, err = run_json(workdir, ops, "doctor")
    assert code == 0, (checks, err)
    assert isinstance(checks, list)
    names = [c["check"] for c in checks]
    assert names[:6] == ["config", "database", "scheduler", "lists", "schedules", "templates"]
    assert any(n.startswith("smtp ") for n in names) and names[-1] == "dkim"
    assert all(c["ok"] for c in checks)

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    broken = {
        **ops,
        "DIGEST_SMTP_URL": f"smtp://127.0.0.1:{port}",
        "DIGEST_DKIM_KEY_FILE": "/nonexistent.pem",
    }
    result = digest(workdir, "doctor", env=broken)
    assert result.returncode == 1
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 2, result.stdout
    assert "cannot connect" in failed[0] and "cannot read /nonexistent.pem" in failed[1]


@pytest.mark.parametrize(
    "args",
    [["run"], ["editions", "--limit", "0"], ["schedules", "--count", "x"], ["run", "--nope"]],
)
def test_bad_usage_exits_2(workdir: Path, args: list[str]) -> None:
    assert digest(workdir, *args).returncode == 2


def test_the_scheduler_runs_until_sigterm(workdir: Path, ops: dict[str, str]) -> None:
    env = {**ops, "DIGEST_SCHEDULES_DIR": str(schedules_dir(workdir, "0 7 * * *"))}
    with subprocess.Popen(
        [DIGEST, "--log-json", "scheduler", "--enqueue-only"],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            deadline = time.monotonic() + 60
            seen = ""
            assert process.stderr is not None
            while time.monotonic() < deadline:
                line = process.stderr.readline()
                seen += line
                if "job send:daily: next at" in line or not line:
                    break
            assert "job send:daily: next at" in seen, seen
            # Issue 15: a running scheduler beats; doctor (and /healthz) see it.
            assert "beat" in str(scheduler_check(workdir, env)["detail"])
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
    # A clean stop is not a dead scheduler.
    assert str(scheduler_check(workdir, env, running=False)["detail"]).startswith("none running")


def scheduler_check(workdir: Path, env: dict[str, str], running: bool = True) -> dict[str, object]:
    deadline = time.monotonic() + 20
    while True:
        _, checks, err = run_json(workdir, env, "doctor", "--no-smtp")
        assert isinstance(checks, list), err
        found = next(c for c in checks if c["check"] == "scheduler")
        if ("none running" not in found["detail"]) == running or time.monotonic() > deadline:
            return dict(found)
        time.sleep(0.3)  # the first beat is written just after the jobs are listed


@pytest.mark.postgres
def test_two_scheduler_processes_on_postgresql_make_one_edition(
    workdir: Path, postgres_url: str, relay: CaptureServer
) -> None:
    folder = schedules_dir(workdir, "* * * * *")
    env = base_env(
        workdir,
        DIGEST_DATABASE_URL=postgres_url,
        DIGEST_SMTP_URL=relay.url,
        DIGEST_SCHEDULES_DIR=str(folder),
    )
    result = digest(
        workdir, "demo", "--subscribers", "50", "--date", moscow_today(), "--no-send", env=env
    )
    assert result.returncode == 0, result.stderr
    both = [
        subprocess.Popen(
            [DIGEST, "scheduler", "--once"],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in both]
    assert [p.returncode for p in both] == [0, 0], outputs
    code, rows, _ = run_json(workdir, env, "editions")
    assert code == 0 and isinstance(rows, list)
    daily = [r for r in rows if r["label"].startswith("daily/")]
    assert len(daily) == 1 and daily[0]["total"] == 50


def test_a_mistyped_edition_is_bad_usage_in_one_line(workdir: Path) -> None:
    """Issue 12.6: «²» passes str.isdigit() and int() refuses it; a huge id overflows
    the column. Each is a one-line error with exit status 2, never a traceback."""
    env = base_env(workdir)
    migrated(workdir, env)
    for ref in ("²", "99999999999999999999", "daily/2026-13-45x", "0"):
        result = digest(workdir, "status", ref, env=env)
        assert result.returncode == 2, (ref, result.stderr)
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    missing = digest(workdir, "status", "daily/2026-11-25", env=env)
    assert missing.returncode == 1 and "no edition" in missing.stderr


def test_digest_serve_logs_requests_with_their_tokens_masked(workdir: Path) -> None:
    """Issue 12.7: /u/, /p/, /confirm/ tokens never expire; uvicorn's access log
    printed them. `digest serve` logs each request with the token masked."""
    env = base_env(workdir, DIGEST_LOG_LEVEL="INFO")
    migrated(workdir, env)
    port = free_port()
    proc = subprocess.Popen(
        [DIGEST, "serve", "--port", str(port)],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "digest serve did not listen"
                time.sleep(0.1)
        for path in ("/u/SECRETu.tok", "/p/SECRETp.tok", "/confirm/SECRETc.tok", "/archive/"):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(
                    f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
                )
                assert sock.recv(100).startswith(b"HTTP/1.1 ")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    logged = out + err
    assert "GET /u/… HTTP/1.1" in logged and "GET /archive/ HTTP/1.1" in logged, logged
    assert "SECRET" not in logged


def test_a_missed_edition_previews_and_sends_by_hand_and_stays_missed_for_the_scheduler(
    workdir: Path, ops: dict[str, str], relay: CaptureServer
) -> None:
    """Issue 14: `digest send` and `preview` on an edition the scheduler marked
    missed once died with a StopIteration traceback, and a second `digest run`
    said "already — missed" with exit status 0."""
    minute = (datetime.now(UTC) - timedelta(minutes=30)).minute
    folder = schedules_dir(workdir, f"{minute} * * * *", "grace_minutes = 1\n")
    env = {**ops, "DIGEST_SCHEDULES_DIR": str(folder)}
    code, report, err = run_json(workdir, env, "run", "daily")
    assert code == 1 and isinstance(report, dict) and report["outcome"] == "missed", err
    again = digest(workdir, "run", "daily", env=env)
    assert again.returncode == 1 and "missed" in again.stdout, again.stdout + again.stderr
    day = report["edition_date"]
    preview = digest(workdir, "preview", "daily", "--date", day, "--out", "-", env=env)
    assert preview.returncode == 0 and "Traceback" not in preview.stderr, preview.stderr
    assert "<html" in preview.stdout
    sent = digest(workdir, "send", "daily", "--date", day, env=env)
    assert sent.returncode == 0 and "Traceback" not in sent.stderr, sent.stderr
    assert len(relay.messages) == 10
    code, status, _ = run_json(workdir, env, "status", f"daily/{day}")
    assert isinstance(status, dict) and status["status"] == "sent", status


def test_scheduler_once_sends_what_it_queued_as_cron_would_want(
    workdir: Path, ops: dict[str, str], relay: CaptureServer
) -> None:
    """Issue 14: `--once` is the cron line, so it sends what the send time queued
    (it only queued, and the edition stayed `sending` until a worker ran);
    `--once --enqueue-only` leaves the sending to workers."""
    env = {**ops, "DIGEST_SCHEDULES_DIR": str(schedules_dir(workdir, "* * * * *"))}
    queued = digest(workdir, "scheduler", "--once", "--enqueue-only", env=env)
    assert queued.returncode == 0 and "queued" in queued.stdout, queued.stdout + queued.stderr
    assert not relay.messages
    sent = digest(workdir, "scheduler", "--once", env=env)
    assert sent.returncode == 0, sent.stderr
    assert len(relay.messages) == 10 and "sent 10" in sent.stdout, sent.stdout
    code, rows, _ = run_json(workdir, env, "editions")
    assert code == 0 and isinstance(rows, list) and rows[0]["status"] == "sent", rows


def test_send_refuses_an_unapproved_draft_when_the_schedule_wants_approval(
    workdir: Path, ops: dict[str, str], relay: CaptureServer
) -> None:
    """Issue 14: `digest send` sent an unapproved draft without a word. It refuses
    (exit 1, naming `digest approve`) unless --force, which is logged; a test copy
    and a dry run still work on the draft."""
    env = {
        **ops,
        "DIGEST_SCHEDULES_DIR": str(schedules_dir(workdir, "0 7 * * *", "approval = true\n")),
    }
    day = moscow_today()
    refused = digest(workdir, "send", "daily", "--date", day, env=env)
    assert refused.returncode == 1 and "digest approve daily/" in refused.stderr, refused.stderr
    queued = digest(workdir, "send", "daily", "--date", day, "--enqueue-only", env=env)
    assert queued.returncode == 1 and not relay.messages
    assert digest(workdir, "send", "daily", "--date", day, "--dry-run", env=env).returncode == 0
    test = digest(workdir, "send", "daily", "--date", day, "--test-to", "ed@example.ru", env=env)
    assert test.returncode == 0 and len(relay.messages) == 1, test.stderr
    forced = digest(workdir, "--log-json", "send", "daily", "--date", day, "--force", env=env)
    assert forced.returncode == 0, forced.stderr
    assert len(relay.messages) == 11
    lines = [json.loads(line) for line in forced.stderr.splitlines() if line.startswith("{")]
    assert any("not approved" in line["msg"] and line["level"] == "warning" for line in lines)


def lead_article(workdir: Path) -> tuple[str, str, str, str, str]:
    """(external id, title, url, published_at, lead) of the lead of the only edition."""
    with sqlite3.connect(workdir / "var" / "digest.sqlite3") as db:
        row = db.execute(
            "SELECT a.external_id, a.title, a.url, a.published_at, a.lead FROM article a "
            "JOIN edition_item i ON i.article_id = a.id WHERE i.block = 'lead'"
        ).fetchone()
    return row[0], row[1], row[2], str(row[3]), row[4]


def test_a_correction_pauses_the_send_status_shows_it_and_a_rebuild_sends_it_corrected(
    workdir: Path, ops: dict[str, str], relay: CaptureServer
) -> None:
    """Issue 14 §2 from the command line: ingest a corrected headline while the
    edition is queued; the send pauses before its first batch; `digest status`
    shows old and new; a plain resume is refused; `digest editions rebuild` and a
    resume send every message with the corrected headline."""
    day = moscow_today()
    label = f"daily/{day}"
    queued = digest(workdir, "send", "daily", "--date", day, "--enqueue-only", env=ops)
    assert queued.returncode == 0, queued.stderr
    ident, title, url, published, lead = lead_article(workdir)
    fixed = "Исправлено: заголовок главной новости"
    lines = [
        {"id": ident, "url": url, "title": fixed, "lead": lead, "published_at": published + "Z"},
        {"id": "no-such-article", "withdrawn": True},
    ]
    (workdir / "fix.jsonl").write_text(
        "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8"
    )
    ingested = digest(workdir, "ingest", "fix.jsonl", env=ops)
    assert ingested.returncode == 0 and "(1 corrected, 0 withdrawn)" in ingested.stdout
    assert "no such article to withdraw" in ingested.stderr, ingested.stderr

    paused = digest(workdir, "resume", label, env=ops)
    assert "articles changed since it was approved" in paused.stderr, paused.stderr
    assert "Traceback" not in paused.stderr and not relay.messages
    status = digest(workdir, "status", label, env=ops)
    assert "PAUSED (articles corrected)" in status.stdout, status.stdout
    assert f"title: '{title}' → '{fixed}'" in status.stdout, status.stdout
    code, data, _ = run_json(workdir, ops, "status", label)
    assert isinstance(data, dict) and data["corrections"][0]["after"] == {"title": fixed}
    refused = digest(workdir, "resume", label, env=ops)
    assert refused.returncode == 1 and f"digest editions rebuild {label}" in refused.stderr

    rebuilt = digest(workdir, "editions", "rebuild", label, env=ops)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "10 message(s) not yet sent take the new text" in rebuilt.stdout, rebuilt.stdout
    sent = digest(workdir, "resume", label, env=ops)
    assert sent.returncode == 0, sent.stderr
    assert len(relay.messages) == 10
    assert all(fixed.encode() in decoded_text(m.data) for m in relay.messages)
    code, rows, _ = run_json(workdir, ops, "editions")
    assert code == 0 and isinstance(rows, list) and rows[0]["status"] == "sent"


def decoded_text(data: bytes) -> bytes:
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    body = parsed.get_body(("plain",))
    assert body is not None
    return str(body.get_content()).encode()


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def sent_count(body: str) -> float:
    return sum(
        float(line.rpartition(" ")[2])
        for line in body.splitlines()
        if line.startswith("digest_messages_total{") and 'outcome="sent"' in line
    )


def test_a_worker_exposes_its_metrics_and_they_count_the_send_as_it_goes(
    workdir: Path, ops: dict[str, str], relay: CaptureServer
) -> None:
    """Issue 15: `digest worker --metrics-port` serves Prometheus text while it
    sends; scraped during the send the count is partial, at the end it is exact.
    The worker sends at DIGEST_SEND_NICE's priority (issue 31), read from the kernel."""
    day = moscow_today()
    # 10 messages in about two seconds
    # Above the nice 10 of the suite's workers (tests/support/tiers.py), so it shows.
    env = {**ops, "DIGEST_SMTP_RATE": "5", "DIGEST_SEND_NICE": "15"}
    assert (
        digest(workdir, "send", "daily", "--date", day, "--enqueue-only", env=env).returncode == 0
    )
    port = free_port()
    worker = subprocess.Popen(
        [DIGEST, "worker", "--metrics-port", str(port)],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        seen: list[float] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                seen.append(sent_count(scrape(f"http://127.0.0.1:{port}/metrics")))
            except OSError:
                time.sleep(0.1)
                continue
            if seen[-1] >= 10:
                break
            time.sleep(0.2)
        # Serving metrics: past its start, still sending.
        nice = os.getpriority(os.PRIO_PROCESS, worker.pid)
        body = scrape(f"http://127.0.0.1:{port}/metrics")
    finally:
        worker.send_signal(signal.SIGTERM)
        _out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    assert nice == 15 and os.getpriority(os.PRIO_PROCESS, 0) < 15, nice  # its own, not inherited
    assert any(0 < n < 10 for n in seen), seen  # it moved during the send
    assert sent_count(body) == 10 == len(relay.messages)
    assert 'digest_queue_depth{state="due"} 0.0' in body
    assert "digest_dkim_sign_seconds_count" in body and "process_resident_memory_bytes" in body
