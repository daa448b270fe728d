"""The `digest` command, run for real as a subprocess."""

from __future__ import annotations

import email
import email.policy
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from digest.capture import CaptureServer, free_port
from digest.cli import everything
from tests.support.cli import DAY, base_env, digest, in_a_terminal, start

app = everything()  # every command registered, as `digest --help` has them


@pytest.fixture
def relay() -> Iterator[CaptureServer]:
    with CaptureServer() as server:
        yield server


COMMANDS = [
    ["db", "upgrade"],
    ["ingest"],
    ["demo"],
    ["preview"],
    ["send"],
    ["status"],
    ["worker"],
    ["pause"],
    ["resume"],
    ["cancel"],
    ["retry"],
    ["bounces"],
    ["subscribers", "import"],
    ["subscribers", "add"],
    ["subscribers", "remove"],
    ["subscribers", "show"],
    ["subscribers", "list"],
    ["subscribers", "export"],
    ["subscribers", "forget"],
    ["dkim", "keygen"],
    ["serve"],
    ["inbound"],
    ["subscribers", "invite"],
    ["schedules"],
    ["run"],
    ["editions"],
    ["approve"],
    ["scheduler"],
    ["doctor"],
    ["editors", "add"],
    ["editors", "remove"],
    ["editors", "passwd"],
    ["editors", "role"],
    ["editors", "list"],
    ["dev-relay"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_every_command_explains_itself_with_an_example(command: list[str]) -> None:
    # In this process (Typer's runner): the help is the point, not a Python start;
    # the top-level help below runs the installed command itself.
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example: digest " in result.stdout


@pytest.mark.parametrize("group", ["db", "dkim", "subscribers", "editors"])
def test_every_command_group_explains_itself_with_an_example(group: str) -> None:
    """Issue 28 §7: `digest db --help` and `digest dkim --help` had no example."""
    result = CliRunner().invoke(app, [group, "--help"])
    assert result.exit_code == 0 and "Example: digest " + group in result.stdout, result.output


def test_top_level_help_lists_the_commands(workdir: Path) -> None:
    result = digest(workdir, "--help")
    assert result.returncode == 0
    for name in ("db", "ingest", "demo", "preview", "send", "status"):
        assert name in result.stdout


def test_demo_sends_once_and_saves_every_message(workdir: Path) -> None:
    env = base_env(workdir)
    env.pop("DIGEST_SECRET_KEY")  # the demo makes its own key under var/
    first = digest(workdir, "demo", "--subscribers", "25", "--date", DAY, env=env)
    assert first.returncode == 0, first.stderr
    assert "subscribers: 25 demo readers (25 new)" in first.stdout
    assert "the capture server received 25 messages in this run" in first.stdout
    assert (workdir / "var" / "secret.key").is_file()
    outbox = sorted((workdir / "var" / "outbox").glob("*.eml"))
    assert len(outbox) == 25
    message = email.message_from_bytes(outbox[0].read_bytes(), policy=email.policy.default)
    assert message["Subject"] == "Новости ВПК за 25 ноября 2026"
    preview = workdir / "var" / "preview" / f"daily-{DAY}.html"
    assert preview.is_file() and "Азербайджан держит курс на ОДКБ?" in preview.read_text()
    again = digest(workdir, "demo", "--subscribers", "25", "--date", DAY, env=env)
    assert again.returncode == 0, again.stderr
    assert "loaded 0, updated 40, rejected 0; comments added 0" in again.stdout
    assert "the capture server received 0 messages in this run" in again.stdout
    assert len(list((workdir / "var" / "outbox").glob("*.eml"))) == 25
    status = digest(workdir, "status", f"daily/{DAY}", "--json", env=env)
    report = json.loads(status.stdout)
    assert report["counts"]["sent"] == 25 and report["status"] == "sent" and report["pending"] == 0


def test_demo_uses_the_configured_relay(workdir: Path, relay: CaptureServer) -> None:
    result = digest(
        workdir,
        "demo",
        "--subscribers",
        "6",
        "--date",
        DAY,
        env=base_env(workdir, DIGEST_SMTP_URL=relay.url),
    )
    assert result.returncode == 0, result.stderr
    assert f"sending through {relay.url}" in result.stdout
    assert len(relay.messages) == 6
    assert not (workdir / "var" / "outbox").exists()


def test_ingest_reports_bad_lines_and_exits_3(workdir: Path) -> None:
    assert digest(workdir, "db", "upgrade").returncode == 0
    data = workdir / "in.jsonl"
    good = {"url": "https://e.ru/1", "title": "Новость", "published_at": "2026-11-24T10:00+03:00"}
    lines = [json.dumps({"id": "1", **good}), "{oops", json.dumps({"id": "3", **good})]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = digest(workdir, "ingest", str(data))
    assert result.returncode == 3
    assert f"{data}:2: not valid JSON" in result.stderr
    assert "loaded 2, updated 0, rejected 1" in result.stdout
    clean = workdir / "ok.jsonl"
    clean.write_text(data.read_text().splitlines()[0] + "\n")
    assert digest(workdir, "ingest", str(clean)).returncode == 0


def test_commands_refuse_a_database_that_is_not_upgraded(workdir: Path) -> None:
    result = digest(workdir, "status")
    assert result.returncode == 1 and "digest db upgrade" in result.stderr


def test_preview_shows_what_would_be_sent(demo_db: Path) -> None:
    text = digest(demo_db, "preview", "--date", DAY, "--format", "text", "--out", "-")
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("НОВОСТИ ВПК — 25 ноября 2026")
    assert "Отписаться: https://" in text.stdout
    eml = digest(
        demo_db,
        "preview",
        "--date",
        DAY,
        "--format",
        "eml",
        "--subscriber",
        "reader00003@yandex.example.ru",
        "--out",
        "x.eml",
    )
    assert eml.returncode == 0, eml.stderr
    message = email.message_from_bytes(
        (demo_db / "x.eml").read_bytes(), policy=email.policy.default
    )
    assert message["To"].addresses[0].addr_spec == "reader00003@yandex.example.ru"
    html = digest(demo_db, "preview", "--date", DAY)
    assert html.returncode == 0 and f"var/preview/daily-{DAY}.html" in html.stdout
    # Issue 28 §7: an address nobody subscribed with was rendered as if a reader's.
    nobody = digest(demo_db, "preview", "--date", DAY, "--subscriber", "nobody@example.ru")
    assert nobody.returncode == 1 and "no subscriber nobody@example.ru" in nobody.stderr
    status = digest(demo_db, "status", "--json")
    assert json.loads(status.stdout)[0]["status"] == "draft"  # previews never send


def test_send_dry_run_limit_and_test_copy(demo_db: Path, relay: CaptureServer) -> None:
    env = base_env(demo_db, DIGEST_SMTP_URL=relay.url)
    dry = digest(demo_db, "send", "--date", DAY, "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "would send 20 messages" in dry.stdout and not relay.messages
    test = digest(demo_db, "send", "--date", DAY, "--test-to", "editor@example.ru", env=env)
    assert test.returncode == 0, test.stderr
    assert len(relay.messages) == 1 and relay.messages[0].rcpt_to == ("editor@example.ru",)
    subject = email.message_from_bytes(relay.messages[0].data, policy=email.policy.default)[
        "Subject"
    ]
    assert subject.startswith("[ТЕСТ] ")
    # Issue 28 §1: the demo's day is past its schedule's period by now: asked first.
    asked = digest(demo_db, "send", "--date", DAY, "--limit", "5", env=env)
    assert asked.returncode == 1 and "it would reach 20 reader(s) now" in asked.stderr
    assert "--yes" in asked.stderr and len(relay.messages) == 1
    part = digest(demo_db, "send", "--date", DAY, "--limit", "5", "--yes", env=env)
    assert part.returncode == 0, part.stderr
    assert len(relay.messages) == 6
    # Issue 28 §7: in a pipe no progress bar, cut to «100… 0:0…»; at a terminal one.
    assert "━" not in part.stderr and "…" not in part.stderr
    code, seen = in_a_terminal(
        demo_db, "send", "--date", DAY, "--limit", "5", "--yes", DIGEST_SMTP_URL=relay.url
    )
    assert code == 0 and "━" in seen and "5/5" in seen, seen[-1500:]
    assert len(relay.messages) == 11
    rest = digest(demo_db, "--log-json", "send", "--date", DAY, "--yes", env=env)
    assert rest.returncode == 0, rest.stderr
    assert len(relay.messages) == 21
    lines = [json.loads(line) for line in rest.stderr.splitlines() if line.startswith("{")]
    assert any(line.get("edition") for line in lines)
    assert all({"ts", "level", "logger", "msg"} <= set(line) for line in lines)
    status = digest(demo_db, "status", f"daily/{DAY}")
    assert "sent" in status.stdout and "20" in status.stdout


def test_send_exits_3_when_messages_fail(demo_db: Path) -> None:
    from tests.support.smtp import ScriptedHandler

    handler = ScriptedHandler()
    handler.rules = {
        "reader00001@example.com": "550 5.1.1 user unknown",
        "reader00002@mail.example.ru": "552 5.2.2 Mailbox full, over quota",
    }
    with CaptureServer(handler) as server:
        env = base_env(demo_db, DIGEST_SMTP_URL=server.url)
        result = digest(demo_db, "send", "--date", DAY, "--yes", env=env)
        # Issue 28 §7: run again, nothing new fails: not exit 3 for the old failures.
        again = digest(demo_db, "send", "--date", DAY, "--yes", env=env)
    assert result.returncode == 3, result.stderr
    assert "550 5.1.1 user unknown" in result.stdout
    assert again.returncode == 0, again.stderr
    assert "550 5.1.1 user unknown" in again.stdout  # the report still shows them
    # Issue 28 §1: a retry of an edition past its period asks, naming whom it reaches.
    retry = digest(demo_db, "retry", f"daily/{DAY}", "--failed")
    assert retry.returncode == 1 and "it would reach 1 reader(s) now" in retry.stderr
    assert "--yes" in retry.stderr and "Traceback" not in retry.stderr
    retried = digest(demo_db, "retry", f"daily/{DAY}", "--failed", "--yes")
    assert retried.returncode == 0 and "1 deliveries queued again" in retried.stdout
    resume = digest(demo_db, "resume", f"daily/{DAY}", "--enqueue-only")
    assert resume.returncode == 1 and "it would reach 1 reader(s) now" in resume.stderr


def test_an_empty_window_sends_nothing(demo_db: Path, relay: CaptureServer) -> None:
    result = digest(
        demo_db, "send", "--date", "2020-01-01", env=base_env(demo_db, DIGEST_SMTP_URL=relay.url)
    )
    assert result.returncode == 0
    assert "nothing to send" in result.stdout and "no new articles" in result.stdout
    assert not relay.messages


def test_clear_errors(demo_db: Path) -> None:
    no_relay = digest(demo_db, "send", "--date", DAY)
    assert no_relay.returncode == 1 and "DIGEST_SMTP_URL is not set" in no_relay.stderr
    bad = digest(demo_db, "status", env=base_env(demo_db, DIGEST_SMTP_CONNECTIONS="0"))
    assert bad.returncode == 1 and "DIGEST_SMTP_CONNECTIONS:" in bad.stderr
    down = digest(
        demo_db, "send", "--date", DAY, env=base_env(demo_db, DIGEST_SMTP_URL="smtp://127.0.0.1:9")
    )
    assert down.returncode == 1 and "cannot connect" in down.stderr
    assert "Traceback" not in down.stderr + bad.stderr + no_relay.stderr
    bad_date = digest(demo_db, "send", "--date", "25.11.2026")
    assert bad_date.returncode == 2 and "--date" in bad_date.stderr
    unknown = digest(demo_db, "status", "daily/1999-01-01")
    assert unknown.returncode == 1 and "no edition" in unknown.stderr


@pytest.mark.postgres
def test_the_demo_on_postgresql(workdir: Path, postgres_url: str) -> None:
    env = base_env(workdir, DIGEST_DATABASE_URL=postgres_url)
    first = digest(workdir, "demo", "--subscribers", "12", "--date", DAY, env=env)
    assert first.returncode == 0, first.stderr
    assert "the capture server received 12 messages in this run" in first.stdout
    again = digest(workdir, "demo", "--subscribers", "12", "--date", DAY, env=env)
    assert "the capture server received 0 messages in this run" in again.stdout
    report = json.loads(digest(workdir, "status", f"daily/{DAY}", "--json", env=env).stdout)
    assert report["counts"]["sent"] == 12 and report["status"] == "sent"
    assert not (workdir / "var" / "digest.sqlite3").exists()


def test_dkim_keygen_prints_the_record_and_never_overwrites(workdir: Path) -> None:
    out = workdir / "keys" / "dkim.pem"
    args = ("dkim", "keygen", "--selector", "s2026", "--domain", "vpk.example.ru", "--out")
    made = digest(workdir, *args, str(out))
    assert made.returncode == 0, made.stderr
    assert "publish this TXT record at s2026._domainkey.vpk.example.ru" in made.stdout
    assert "v=DKIM1; k=rsa; p=MIIB" in made.stdout and out.stat().st_mode & 0o777 == 0o600
    key = out.read_bytes()
    again = digest(workdir, *args, str(out))
    assert again.returncode == 1 and "exists" in again.stderr
    assert out.read_bytes() == key
    ed = workdir / "keys" / "ed25519.pem"
    made = digest(workdir, *args, str(ed), "--type", "ed25519")
    assert made.returncode == 0, made.stderr
    assert "v=DKIM1; k=ed25519; p=" in made.stdout and ed.stat().st_mode & 0o777 == 0o600
    assert b"BEGIN PRIVATE KEY" in ed.read_bytes()


def test_secrets_and_personal_data_are_private_from_the_start(tmp_path: Path) -> None:
    """Issue 12.7: the signing key was written then chmod-ed, and the database and
    the captured messages (live unsubscribe links) were world-readable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env["DIGEST_CONFIG"] = str(tmp_path / "none.toml")
    (tmp_path / "none.toml").write_text("", encoding="utf-8")
    os.umask(0o022)  # the usual umask: anything not made private is world-readable
    result = digest(tmp_path, "demo", "--subscribers", "5", env=env)
    assert result.returncode == 0, result.stderr
    var = tmp_path / "var"
    private = [var / "secret.key", var / "digest.sqlite3", *(var / "outbox").glob("*.eml")]
    assert len(private) > 3
    for path in private:
        assert path.stat().st_mode & 0o077 == 0, (path, oct(path.stat().st_mode))
    assert (var / "outbox").stat().st_mode & 0o077 == 0


def test_version_answers_without_a_command(workdir: Path) -> None:
    done = digest(workdir, "--version")
    assert done.returncode == 0 and done.stdout.startswith("digest "), done.stdout + done.stderr


def test_dev_relay_takes_what_a_newcomer_sends_and_saves_it(demo_db: Path) -> None:
    """Issue 28 §7: after the demo there was no relay to play with: `send --test-to`
    failed and `digest doctor` said FAIL smtp."""
    port = free_port()
    relay = start(demo_db, base_env(demo_db), "dev-relay", "--port", str(port))
    try:
        assert relay.stdout is not None
        assert "capture relay at smtp://127.0.0.1:" in relay.stdout.readline()
        env = base_env(demo_db, DIGEST_SMTP_URL=f"smtp://127.0.0.1:{port}")
        test = digest(demo_db, "send", "--date", DAY, "--test-to", "ed@example.ru", env=env)
        assert test.returncode == 0, test.stderr
        doctor = digest(demo_db, "doctor", env=env)
        assert f"ok   smtp smtp://127.0.0.1:{port}: EHLO ok" in doctor.stdout, doctor.stdout
        saved = list((demo_db / "var" / "outbox").glob("*ed@example.ru.eml"))
        assert len(saved) == 1 and b"Subject:" in saved[0].read_bytes()
        busy = digest(demo_db, "dev-relay", "--port", str(port))
        assert busy.returncode == 1 and "cannot listen" in busy.stderr
    finally:
        relay.send_signal(signal.SIGTERM)
        out, err = relay.communicate(timeout=30)
    assert relay.returncode == 0, err
    assert "1 message(s) received" in out and "Traceback" not in err
