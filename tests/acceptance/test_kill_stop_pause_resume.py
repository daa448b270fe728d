"""Operations for real: `digest send` killed with SIGKILL and resumed, stopped
with SIGTERM, paused from another terminal, two `digest worker` processes on
one PostgreSQL edition, and returned mail through `digest bounces`."""

from __future__ import annotations

import email
import json
import mailbox
import os
import random
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from digest.capture import CaptureServer
from tests.support.cli import (
    DIGEST,
    digest,
    env_for,
    in_a_terminal,
    message_ids,
    migrated,
    setup_demo,
    start,
    status,
    wait_until,
)
from tests.support.common import senders_nice
from tests.support.faults import FaultHandler

CONNECTIONS = 4


# Issue 16: `digest send` on both cores keeps every promise of one process.
SENDERS = pytest.mark.parametrize("senders", ["1", "2"])


@SENDERS
def test_kill_9_at_random_moments_then_resume_loses_nobody(workdir: Path, senders: str) -> None:
    readers = 600
    label = setup_demo(workdir, readers)
    handler = FaultHandler(delay=0.002)
    rng = random.Random()
    seed = rng.randrange(1_000_000)
    rng.seed(seed)
    kills = 0
    with CaptureServer(handler) as server:
        env = env_for(workdir, server, DIGEST_SENDERS=senders)
        for _ in range(3):
            before = len(handler.messages)
            proc = start(workdir, env, "send")
            # Kill at a random point of the send's progress (a count of messages
            # received, not a time: a fast machine must not finish before it).
            target = before + rng.randrange(1, (readers - before) // 3 + 2)
            wait_until(
                lambda p=proc, t=target: len(handler.messages) >= t or p.poll() is not None  # type: ignore[misc]
            )
            if proc.poll() is not None:
                proc.communicate()
                break
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
            kills += 1
        assert kills >= 1, f"the send finished before any kill (seed {seed})"
        assert 0 < len(handler.messages) < readers, f"seed {seed}"
        resumed = digest(workdir, "resume", label, env=env, timeout=300)
        assert resumed.returncode == 0, resumed.stderr
    received = Counter(m.rcpt_to[0] for m in handler.messages)
    assert len(received) == readers, f"missing subscribers (seed {seed})"
    duplicates = sum(n - 1 for n in received.values())
    # At most one message per connection of each process killed (a sender stops
    # cleanly when its parent dies, so usually none of its own).
    bound = kills * CONNECTIONS * int(senders)
    assert duplicates <= bound, f"{duplicates} duplicates (seed {seed})"
    # A duplicate is the same message: the same Message-ID.
    for rcpt, ids in message_ids(handler).items():
        assert len(ids) == 1, rcpt
    report = status(workdir, label, env)
    assert report["status"] == "sent" and report["counts"]["sent"] == readers  # type: ignore[index]


@SENDERS
def test_sigterm_stops_cleanly_and_says_how_to_resume(workdir: Path, senders: str) -> None:
    label = setup_demo(workdir, 300)
    handler = FaultHandler(delay=0.005, hold_after=50)  # held until the signal is sent
    with CaptureServer(handler) as server:
        env = env_for(workdir, server, DIGEST_SENDERS=senders)
        proc = start(workdir, env, "send")
        wait_until(lambda: len(handler.messages) >= 50)
        proc.send_signal(signal.SIGTERM)
        handler.release()
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 143, stderr
        assert f"digest resume {label}" in stderr
        report = status(workdir, label, env)
        counts = report["counts"]
        assert isinstance(counts, dict)
        # In-flight messages finished and were recorded; nothing is left claimed.
        assert counts["sending"] == 0 and counts["sent"] == len(handler.messages) < 300
        resumed = digest(workdir, "resume", label, env=env, timeout=300)
        assert resumed.returncode == 0, resumed.stderr
    received = Counter(m.rcpt_to[0] for m in handler.messages)
    assert len(received) == 300 and set(received.values()) == {1}  # a clean stop: no dups


def _interruptible() -> None:
    """Ctrl-C's target as a terminal starts it: SIGINT at its default. A suite run
    as a script's background job (`make test &`) has SIGINT ignored, which every
    process it starts inherits, and digest rightly keeps an ignored signal ignored
    (this test failed twice so, 4 December: the send never heard its Ctrl-C)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_stop_to_the_process_group_is_reported_by_every_sender(
    workdir: Path, sig: signal.Signals
) -> None:
    """Issue 25 §5: Ctrl-C in the terminal reaches every process of the group. A
    two-sender send exited 130 saying `1 sender process(es) ended without a report`
    and `sent 264 this run` while 522 were accepted, and left 742 rows `sending`.
    Every sender reports what it sent, the summary adds them up, no claim is left."""
    label = setup_demo(workdir, 800)
    # The relay holds its answers from the 200th message until the signal is sent
    # (a full run, 4 December: on a busy machine the send had finished all 800).
    handler = FaultHandler(delay=0.01, hold_after=200)
    with CaptureServer(handler) as server:
        env = env_for(workdir, server, DIGEST_SENDERS="2")
        proc = subprocess.Popen(
            [DIGEST, "send"], cwd=workdir, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True,
            preexec_fn=_interruptible,
        )  # fmt: skip
        wait_until(lambda: len(handler.messages) >= 200)
        os.killpg(proc.pid, sig)  # as the terminal sends it: to the whole group
        handler.release()
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 128 + sig, stderr
        report = status(workdir, label, env)
    assert "without a report" not in stderr, stderr
    counts = report["counts"]
    assert isinstance(counts, dict)
    assert counts["sending"] == 0 and counts["sent"] == len(handler.messages) < 800
    said = re.search(r"sent (\d+) this run", stderr)
    assert said and int(said[1]) == counts["sent"], stderr


@SENDERS
def test_pause_and_cancel_act_on_a_send_running_in_another_terminal(
    workdir: Path, senders: str
) -> None:
    label = setup_demo(workdir, 1000)
    # ~130 messages/s, and the relay's answers held from the 30th message until the
    # command has acted: however slow its start, the send is still running.
    handler = FaultHandler(delay=0.03, hold_after=30)
    with CaptureServer(handler) as server:
        env = env_for(workdir, server, DIGEST_SENDERS=senders)
        proc = start(workdir, env, "send")
        wait_until(lambda: len(handler.messages) >= 30)
        paused = digest(workdir, "pause", label, env=env)
        handler.release()
        assert paused.returncode == 0 and "paused" in paused.stdout
        _, stderr = proc.communicate(timeout=30)  # stops within seconds
        assert proc.returncode == 0 and "is paused" in stderr, stderr
        report = status(workdir, label, env)
        assert report["paused"] is True and report["pending"] > 0  # type: ignore[operator]
        sent_when_paused = len(handler.messages)
        time.sleep(0.5)
        assert len(handler.messages) == sent_when_paused  # nothing goes while paused
        # Resume in one terminal, cancel from another (the answers held again).
        handler.hold(after=sent_when_paused + 30)
        resumed = start(workdir, env, "resume", label)
        wait_until(lambda: len(handler.messages) >= sent_when_paused + 30)
        cancelled = digest(workdir, "cancel", label, env=env)
        handler.release()
        assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
        _, stderr = resumed.communicate(timeout=30)
        assert "cancelled" in stderr, stderr.replace("  ", "")
        report = status(workdir, label, env)
    counts = report["counts"]
    assert isinstance(counts, dict) and report["status"] == "cancelled"
    received = Counter(m.rcpt_to[0] for m in handler.messages)
    assert set(received.values()) == {1}, [r for r, n in received.items() if n > 1]
    assert counts["sent"] == len(handler.messages) < 1000
    assert counts["sent"] + counts["suppressed"] == 1000
    # What `digest cancel` said is what was suppressed (issue 14: it said 500 of 741):
    # the queue at once, and of what the running send held, what it had not sent.
    said = cancelled.stdout.replace("\n", " ")
    now = int(re.search(r"(\d+) queued message\(s\) will not be sent", said)[1])  # type: ignore[index]
    held = re.search(r"holds (\d+) more", said)
    assert now <= counts["suppressed"] <= now + (int(held[1]) if held else 0), said


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_two_senders_of_one_send_each_send_a_share_and_nobody_twice(
    workdir: Path, database: str, request: pytest.FixtureRequest
) -> None:
    """DIGEST_SENDERS=2: the parent and one sender process claim from one edition;
    both take part, the progress and the report count both, nobody gets two. The
    sender process sends at DIGEST_SEND_NICE's priority (issue 31)."""
    # The relay answers no message until both processes have one in DATA: the
    # sender process, started at nice 14 on a busy machine, may take longer to
    # start than the parent takes to send the list (CI: a share of 0).
    readers = 600
    extra = {"DIGEST_SENDERS": "2"}
    if database == "postgres":
        extra["DIGEST_DATABASE_URL"] = str(request.getfixturevalue("postgres_url"))
    label = setup_demo(workdir, readers, **extra)
    handler = FaultHandler(delay=0.02, processes=2)
    with CaptureServer(handler) as server, senders_nice(str(workdir)) as nice:
        # Above the nice 10 of the suite's workers (tests/support/tiers.py), so it shows.
        env = env_for(workdir, server, **extra, DIGEST_SEND_NICE="14")
        sent = digest(workdir, "send", env=env, timeout=300)
    assert sent.returncode == 0, sent.stderr
    assert nice and set(nice.values()) == {14} and os.getpriority(os.PRIO_PROCESS, 0) < 14, nice
    shares = re.search(r"sent by 2 sender processes: (\d+) \+ (\d+)", sent.stderr)
    assert shares, sent.stderr
    assert all(int(n) > 0 for n in shares.groups()) and sum(map(int, shares.groups())) == readers
    received = Counter(m.rcpt_to[0] for m in handler.messages)
    assert len(received) == readers and set(received.values()) == {1}
    for rcpt, ids in message_ids(handler).items():
        assert len(ids) == 1, rcpt
    report = status(workdir, label, env_for(workdir, **extra))
    assert report["status"] == "sent" and report["counts"]["sent"] == readers  # type: ignore[index]


@pytest.mark.postgres
def test_two_workers_share_one_edition_on_postgresql(workdir: Path, postgres_url: str) -> None:
    readers = 800  # ~4 s for one worker at the slow relay: both have time to take part
    label = setup_demo(workdir, readers, DIGEST_DATABASE_URL=postgres_url)
    handler = FaultHandler(delay=0.02)
    with CaptureServer(handler) as server:
        env = env_for(workdir, server, DIGEST_DATABASE_URL=postgres_url)
        queued = digest(workdir, "send", "--enqueue-only", env=env)
        assert queued.returncode == 0 and f"{readers} deliveries queued" in queued.stdout
        workers = [start(workdir, env, "worker", "--once") for _ in range(2)]
        outputs = [w.communicate(timeout=300) for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    sent_by = [int(out.split("sent ", 1)[1].split(",", 1)[0]) for out, _ in outputs]
    assert all(n > 0 for n in sent_by), sent_by  # both took part
    assert sum(sent_by) == readers
    received = Counter(m.rcpt_to[0] for m in handler.messages)
    assert len(received) == readers and set(received.values()) == {1}  # none twice
    report = status(workdir, label, env)
    assert report["status"] == "sent"


@pytest.mark.postgres
@pytest.mark.timing
def test_three_workers_keep_one_rate_together(workdir: Path, postgres_url: str) -> None:
    """DIGEST_SMTP_RATE=30 is the fleet's, not each worker's: three `digest worker`
    processes on one PostgreSQL send at most 300 + 5 % in every full 10-second
    window (each at its own rate would send 900), and not much under it."""
    rate, readers = 30, 1350  # 45 s: four full windows at least
    label = setup_demo(workdir, readers, DIGEST_DATABASE_URL=postgres_url)
    handler = FaultHandler()
    with CaptureServer(handler) as server:
        env = env_for(workdir, server, DIGEST_DATABASE_URL=postgres_url, DIGEST_SMTP_RATE=str(rate))
        queued = digest(workdir, "send", "--enqueue-only", env=env)
        assert queued.returncode == 0, queued.stderr
        workers = [start(workdir, env, "worker", "--once") for _ in range(3)]
        outputs = [w.communicate(timeout=300) for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    sent_by = [int(out.split("sent ", 1)[1].split(",", 1)[0]) for out, _ in outputs]
    assert sum(sent_by) == readers and all(n > 0 for n in sent_by), sent_by
    times = sorted(t for seen in handler.seen.values() for t in seen)
    start_at = times[0]
    windows = Counter(int((t - start_at) // 10) for t in times)
    full = [windows[w] for w in range(int((times[-1] - start_at) // 10))]
    assert len(full) >= 4, windows
    # Never over the fleet's rate (+5 %: one grant's worth) in any window, and the
    # fleet reaches it (a limiter that gave each worker a third would stay near 200).
    # Under it only by what a starved machine loses: a grant leased by a worker the
    # CPU did not run lapses unused (at 60 a second alone: 600–601 a window; the full
    # suite on two cores measured windows of 416–581, a mean of 77 %), so the run's mean is
    # held only to half the rate, still far above a divided limiter's third.
    assert all(n <= rate * 10 * 1.05 for n in full), full
    assert max(full) >= rate * 10 * 0.85, full
    assert sum(full) / len(full) >= rate * 10 * 0.5, full
    assert status(workdir, label, env)["status"] == "sent"


@pytest.mark.postgres
@pytest.mark.timing
def test_a_domain_cap_is_the_fleets_not_each_workers(workdir: Path, postgres_url: str) -> None:
    """DIGEST_DOMAIN_CAPS=mail.example.ru=600 (one message every 0.1 s) with three
    workers: the domain's slots are one schedule in the database, so the relay sees
    the capped domain at 10 a second, not 30, in every window, from the start."""
    readers, cap = 900, 600  # 180 to the capped domain: 18 s at the cap
    setup_demo(workdir, readers, DIGEST_DATABASE_URL=postgres_url)
    handler = FaultHandler()
    with CaptureServer(handler) as server:
        env = env_for(
            workdir,
            server,
            DIGEST_DATABASE_URL=postgres_url,
            DIGEST_DOMAIN_CAPS=f"mail.example.ru={cap}",
        )
        assert digest(workdir, "send", "--enqueue-only", env=env).returncode == 0
        workers = [start(workdir, env, "worker", "--once") for _ in range(3)]
        outputs = [w.communicate(timeout=300) for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    capped = sorted(
        t for r, seen in handler.seen.items() if r.endswith("@mail.example.ru") for t in seen
    )
    assert len(capped) >= 150, len(capped)
    # Slots 0.1 s apart for the fleet: n messages span (n - 1) slots (a message
    # arrives up to a slot late, and a late one's slot is dropped, not made up).
    span = capped[-1] - capped[0]
    assert span >= (len(capped) - 3) * 60 / cap * 0.95, span
    per_5s = Counter(int((t - capped[0]) // 5) for t in capped)
    assert max(per_5s.values()) <= 5 * cap / 60 + 3, per_5s


def test_a_worker_without_once_keeps_serving_until_stopped(workdir: Path) -> None:
    label = setup_demo(workdir, 40)
    handler = FaultHandler()
    with CaptureServer(handler) as server:
        env = env_for(workdir, server, DIGEST_WORKER_POLL="0.2")
        worker = start(workdir, env, "worker")
        queued = digest(workdir, "send", "--enqueue-only", env=env)
        assert queued.returncode == 0, queued.stderr
        wait_until(lambda: len(handler.messages) == 40)
        assert worker.poll() is None  # still serving, waiting for the next edition
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    assert "sent 40" in out
    assert status(workdir, label, env)["status"] == "sent"


# -- returned mail ---------------------------------------------------------------------


def dsn(to: str, recipient: str, action: str, status_: str, diagnostic: str, mid: str) -> bytes:
    """A delivery status notification as RFC 3464 lays it out."""
    return (
        f"From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\r\n"
        f"To: {to}\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\n"
        f"MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="R"\r\n\r\n'
        f"--R\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        f"--R\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; mx.example.org\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\n"
        f"Action: {action}\r\nStatus: {status_}\r\n"
        f"Diagnostic-Code: smtp; {diagnostic}\r\n\r\n"
        f"--R\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Message-ID: {mid}\r\nSubject: digest\r\n\r\n"
        f"--R--\r\n"
    ).encode()


def arf(to: str, recipient: str, mid: str, feedback: str = "abuse") -> bytes:
    """An abuse report as RFC 5965 lays it out."""
    return (
        f"From: fbl@mail.example.ru\r\nTo: {to}\r\nSubject: FW: complaint\r\n"
        f"MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=feedback-report; boundary="F"\r\n\r\n'
        f"--F\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n"
        f"--F\r\nContent-Type: message/feedback-report\r\n\r\n"
        f"Feedback-Type: {feedback}\r\nUser-Agent: FBL/1.0\r\nVersion: 1\r\n"
        f"Original-Rcpt-To: {recipient}\r\n\r\n"
        f"--F\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {mid}\r\n\r\n"
        f"--F--\r\n"
    ).encode()


QMAIL = (
    "From: MAILER-DAEMON@mx.example.org\r\nTo: {to}\r\nSubject: failure notice\r\n\r\n"
    "Hi. This is the qmail-send program at mx.example.org.\r\n"
    "I'm afraid I wasn't able to deliver your message to the following addresses.\r\n"
    "This is a permanent error; I've given up. Sorry it didn't work out.\r\n\r\n"
    "<{rcpt}>:\r\nSorry, no mailbox here by that name. (#5.1.1)\r\n\r\n"
    "--- Below this line is a copy of the message.\r\n\r\nSubject: digest\r\n"
)


def test_bounces_and_complaints_from_a_maildir(workdir: Path) -> None:
    label = setup_demo(workdir, 12)
    handler = FaultHandler()
    with CaptureServer(handler) as server:
        env = env_for(workdir, server)
        sent = digest(workdir, "send", env=env)
        assert sent.returncode == 0, sent.stderr
    mails = sorted(handler.messages, key=lambda m: m.rcpt_to[0])
    verp = [
        (m.mail_from, m.rcpt_to[0], str(email.message_from_bytes(m.data)["Message-ID"]))
        for m in mails
    ]
    assert all(v[0].startswith("bounces+") for v in verp)
    box = mailbox.Maildir(workdir / "returns", create=True)
    (hard_to, hard_rcpt, hard_mid), (soft_to, soft_rcpt, soft_mid) = verp[0], verp[1]
    (spam_to, spam_rcpt, spam_mid), (late_to, late_rcpt, late_mid) = verp[2], verp[3]
    (abuse_to, abuse_rcpt, abuse_mid), (q_to, q_rcpt, _) = verp[4], verp[5]
    _, mid_only_rcpt, mid_only = verp[6]
    samples = {
        "hard": dsn(hard_to, hard_rcpt, "failed", "5.1.1", "550 5.1.1 user unknown", hard_mid),
        "soft": dsn(soft_to, soft_rcpt, "failed", "5.2.2", "552 5.2.2 mailbox full", soft_mid),
        "spam": dsn(spam_to, spam_rcpt, "failed", "5.7.1", "554 5.7.1 spam detected", spam_mid),
        "late": dsn(late_to, late_rcpt, "delayed", "4.4.7", "421 4.4.7 still trying", late_mid),
        "abuse": arf(abuse_to, abuse_rcpt, abuse_mid),
        "qmail": QMAIL.format(to=q_to, rcpt=q_rcpt).encode(),
        # No VERP (the return path was rewritten): found by the original Message-ID.
        "by-mid": dsn(
            "bounces@vpk.example.ru",
            mid_only_rcpt,
            "failed",
            "5.1.1",
            "550 5.1.1 no such user",
            mid_only,
        ),
        "forged": dsn(
            "bounces+1-aaaaaaaaaa@vpk.example.ru",
            "x@nowhere.example",
            "failed",
            "5.1.1",
            "550 5.1.1 user unknown",
            "<nothing@here>",
        ),
        "junk": b"From: someone@example.org\r\nSubject: hello\r\n\r\nJust saying hi.\r\n",
        # Issue 24: a stranger's message that breaks a parser is set aside, alone.
        "no-from": b"To: bounces@vpk.example.ru\r\nSubject: x\r\n\r\nhello\r\n",
        "deep": b"From: x@example.org\r\nMIME-Version: 1.0\r\n"
        + b"".join(
            b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
            for i in range(3000)
        ),
    }
    keys = {name: box.add(data) for name, data in samples.items()}
    result = digest(workdir, "bounces", str(workdir / "returns"), env=env)
    assert result.returncode == 3, result.stderr  # four could not be understood or attributed
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "11 messages" in result.stdout and "unparseable 2" in result.stdout
    assert "unreadable 1" in result.stdout, result.stdout
    assert "bounced 3" in result.stdout and "complained 1" in result.stdout
    assert "delayed 1" in result.stdout and "soft 1" in result.stdout
    assert "unattributed 1" in result.stdout  # the forged token reaches nobody
    assert "left in place" in result.stderr and "/new/" in result.stderr
    # The junk and the forgery stay for a person, marked seen; the rest moved to .processed.
    aside = ("junk", "forged", "no-from", "deep")
    assert set(box.keys()) == {keys[k] for k in aside}
    assert all("S" in box.get_message(keys[k]).get_flags() for k in aside[:3])
    assert len(box.get_folder("processed")) == 7
    listing = json.loads(digest(workdir, "status", label, "--json", env=env).stdout)
    assert listing["counts"]["bounced"] == 3 and listing["counts"]["failed"] == 2
    reasons = {(f["code"], f["enhanced"], f["reply"]) for f in listing["failures"]}
    assert (550, "5.1.1", "user unknown") in reasons
    states = subscriber_states(workdir, env)
    assert states[hard_rcpt] == "bounced" and states[q_rcpt] == "bounced"
    assert states[mid_only_rcpt] == "bounced" and states[abuse_rcpt] == "complained"
    assert states[soft_rcpt] == "active" and states[spam_rcpt] == "active"
    assert states[late_rcpt] == "active"
    # Running it again finds nothing new: nothing is read or reported twice.
    again = digest(workdir, "bounces", str(workdir / "returns"), env=env)
    assert again.returncode == 0 and "0 messages" in again.stdout


def subscriber_states(workdir: Path, env: dict[str, str]) -> dict[str, str]:
    import sqlite3

    with sqlite3.connect(workdir / "var" / "digest.sqlite3") as conn:
        return dict(conn.execute("SELECT email, status FROM subscriber").fetchall())


def test_a_servers_words_are_shown_as_they_are_never_as_markup(workdir: Path) -> None:
    """Issue 25 §2: `digest status` read replies as Rich markup: a bracketed name
    vanished, and "[/policy]" ended it with a MarkupError traceback."""
    label = setup_demo(workdir, 6)
    handler = FaultHandler()
    words = "550 5.7.1 SPF check for [vpk.example.ru] did not pass [/policy] [bold]"
    with CaptureServer(handler) as server:
        env = env_for(workdir, server)
        handler.script("reader00002@mail.example.ru", [f"rcpt:{words}"])
        sent = digest(workdir, "send", env=env)
        assert sent.returncode == 3, sent.stderr  # one failed: said by the exit status
    shown = digest(workdir, "status", label, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "Traceback" not in shown.stderr
    assert "SPF check for [vpk.example.ru] did not pass [/policy] [bold]" in shown.stdout


@pytest.mark.parametrize("pipelining", ["1", "0"])
def test_a_line_dropped_after_the_end_of_data_is_said_and_counted(
    workdir: Path, pipelining: str
) -> None:
    """Issue 25 §2: a connection that drops after the message's data went and before
    its final reply is an ambiguous delivery (Postfix: "message may be sent more than
    once"). digest retried it and said nothing; now it is logged for that message,
    counted in the run's summary and in `digest status`."""
    label = setup_demo(workdir, 6)
    handler = FaultHandler()
    reader = "reader00003@yandex.example.ru"
    with CaptureServer(handler) as server:
        env = env_for(workdir, server, DIGEST_SMTP_PIPELINING=pipelining)
        handler.script(reader, ["drop"])
        sent = digest(workdir, "send", env=env)
    assert sent.returncode == 0, sent.stderr[-3000:]
    said = [line for line in sent.stderr.splitlines() if "may arrive twice" in line]
    assert len(said) == 2, sent.stderr[-3000:]  # the message's own line, and the summary
    assert "retried with the same Message-ID" in said[0] and "1 ambiguous" in said[1]
    assert handler.attempts[reader] == 2  # the relay had the whole message both times
    assert len(message_ids(handler)[reader]) == 1
    shown = digest(workdir, "status", label, env=env)
    assert "ambiguous: 1" in shown.stdout, shown.stdout
    assert status(workdir, label, env)["ambiguous"] == 1


@pytest.mark.timing
def test_status_names_each_held_domain_with_its_reason_and_its_end(workdir: Path) -> None:
    """Issue 25 §3: during a 10-minute hold status said `pending: 400; ETA: 0m 02s`
    and named no domain. Each held domain is shown with the reply that decided it,
    since when and until when, and the ETA waits for it."""
    import sqlite3
    from datetime import UTC, datetime, timedelta

    label = setup_demo(workdir, 10)
    env = env_for(workdir)
    assert digest(workdir, "send", "--enqueue-only", env=env).returncode == 0
    now = datetime.now(UTC)
    with sqlite3.connect(workdir / "var" / "digest.sqlite3") as conn:
        conn.execute(
            "INSERT INTO domain_pause (domain, until, reason, since) VALUES (?, ?, ?, ?)",
            (
                "mail.example.ru",
                (now + timedelta(minutes=10)).strftime("%Y-%m-%d %H:%M:%S.%f"),
                "421 4.7.0 [mxs] Try again later, closing connection",
                now.strftime("%Y-%m-%d %H:%M:%S.%f"),
            ),
        )
        # Two of its readers were deferred before the hold, due again in a minute.
        conn.execute(
            "UPDATE delivery SET status = 'deferred', next_attempt_at = ? WHERE id IN "
            "(SELECT d.id FROM delivery d JOIN subscriber s ON s.id = d.subscriber_id "
            "WHERE s.email LIKE '%@mail.example.ru' LIMIT 2)",
            ((now + timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S.%f"),),
        )
    shown = digest(workdir, "status", label, env=env)
    assert shown.returncode == 0, shown.stderr
    held = [line for line in shown.stdout.splitlines() if line.startswith("held:")]
    assert len(held) == 1 and "mail.example.ru" in held[0], shown.stdout
    assert "421 4.7.0 [mxs] Try again later, closing connection" in held[0]
    assert "waiting" in held[0] and "until" in held[0]
    report = status(workdir, label, env)
    (hold,) = report["holds"]  # type: ignore[misc]
    assert hold["domain"] == "mail.example.ru" and hold["waiting"] > 0
    assert report["eta_seconds"] is not None and report["eta_seconds"] > 500
    # Their retry waits for the hold: not "next retry in 1 min" during a 10-minute hold.
    next_retry = datetime.fromisoformat(str(report["next_retry"]))
    assert next_retry >= now + timedelta(minutes=10) - timedelta(seconds=1), report


def test_a_large_returns_folder_shows_progress_at_a_terminal(workdir: Path) -> None:
    """Issue 28 §7: `digest bounces` on a large Maildir was silent while it worked.
    At a terminal a bar counts the messages read; in a pipe only the summary."""
    migrated(workdir)
    for folder in ("returns", "piped"):
        box = mailbox.Maildir(workdir / folder, create=True)
        for n in range(150):  # strangers' mail: none of it ours, all left in place
            box.add(f"From: someone{n}@example.org\nSubject: hello {n}\n\nnot ours\n".encode())
    code, seen = in_a_terminal(workdir, "bounces", str(workdir / "returns"))
    assert code == 3, seen[-2000:]
    assert "bounces returns" in seen and "150 messages" in seen, seen[-2000:]
    piped = digest(workdir, "bounces", str(workdir / "piped"))
    assert "bounces piped" not in piped.stderr and "150 messages" in piped.stdout
