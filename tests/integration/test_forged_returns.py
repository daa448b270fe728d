"""Issue 24 §2: returned mail is written by strangers. A reader who received one
edition knows their own Message-ID and return path, every other reader's
address, and the shapes of our ids; none of that may let a forged report change
another reader. And one bad message never stops the intake."""

from __future__ import annotations

import mailbox
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from digest.models import Delivery, Edition, Event, Subscriber
from digest.track.intake import ReturnsReport
from digest.wiring import Services
from tests.support.mail import READERS, run

Sent = tuple[Services, Edition, dict[str, tuple[str, str]]]
DOMAIN = "vpk.example.ru"


def snapshot(services: Services) -> tuple[object, ...]:
    with services.factory() as session:
        readers = session.execute(select(Subscriber.id, Subscriber.status)).all()
        deliveries = session.execute(select(Delivery.id, Delivery.status)).all()
        events = session.scalar(select(func.count()).select_from(Event))
    return sorted(readers), sorted(deliveries), events


def subscriber_ids(services: Services) -> dict[str, int]:
    with services.factory() as session:
        return {e: i for e, i in session.execute(select(Subscriber.email, Subscriber.id))}


# -- the report formats, as providers write them ----------------------------------


def original(mid: str, rcpt: str, return_path: str | None) -> str:
    path = f"Return-Path: <{return_path}>\r\n" if return_path else ""
    return (
        f"{path}From: =?utf-8?b?0J3QvtCy0L7RgdGC0Lg=?= <digest@{DOMAIN}>\r\nTo: {rcpt}\r\n"
        f"Subject: digest\r\nMessage-ID: {mid}\r\nDate: Wed, 25 Nov 2026 07:00:00 +0000\r\n"
    )


def postfix_dsn(rcpt: str, mid: str, to: str, rp: str | None) -> bytes:
    return (
        f"From: MAILER-DAEMON@mx.{DOMAIN} (Mail Delivery System)\r\nTo: {to}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="P"\r\n\r\n'
        "--P\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you...\r\n"
        "--P\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
        f"Final-Recipient: rfc822; {rcpt}\r\nOriginal-Recipient: rfc822;{rcpt}\r\n"
        "Action: failed\r\nStatus: 5.1.1\r\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected\r\n\r\n"
        f"--P\r\nContent-Type: text/rfc822-headers\r\n\r\n{original(mid, rcpt, rp)}\r\n--P--\r\n"
    ).encode()


def gmail_dsn(rcpt: str, mid: str, to: str, rp: str | None) -> bytes:
    return (
        f"From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\r\nTo: {to}\r\n"
        "Subject: Delivery Status Notification (Failure)\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; boundary="G"; report-type=delivery-status\r\n\r\n'
        f"--G\r\nContent-Type: text/plain\r\n\r\nAddress not found: {rcpt}\r\n"
        "--G\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; googlemail.com\r\n"
        f"\r\nFinal-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550-5.1.1 The email account that you tried to reach does "
        "not exist.\r\n\r\n"
        f"--G\r\nContent-Type: message/rfc822\r\n\r\n{original(mid, rcpt, rp)}\r\nbody\r\n--G--\r\n"
    ).encode()


def arf(agent: str, rcpt: str, mid: str, to: str, rp: str | None) -> bytes:
    return (
        f"From: {agent} <fbl@feedback.example>\r\nTo: {to}\r\nSubject: FW: digest\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="A"\r\n\r\n'
        "--A\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report\r\n"
        "--A\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n"
        f"User-Agent: {agent}\r\nVersion: 1\r\nOriginal-Rcpt-To: {rcpt}\r\n\r\n"
        f"--A\r\nContent-Type: message/rfc822\r\n\r\n{original(mid, rcpt, rp)}\r\nbody\r\n--A--\r\n"
    ).encode()


FORMATS = {
    "postfix": postfix_dsn,
    "gmail": gmail_dsn,
    "yahoo": lambda *a: arf("Yahoo!-Mail-Feedback/2.0", *a),
    "mailru": lambda *a: arf("Mail.Ru FBL", *a),
}


def their_ids(own_mid: str, victim: int) -> list[str]:
    """What a reader can make of their own Message-ID: the victim's by every shape
    our ids have had (the id swapped in, a suffix kept, dropped or guessed)."""
    local, _, domain = own_mid.strip("<>").partition("@")
    parts = local.split(".")
    made = set()
    for at in range(len(parts)):
        if parts[at].isdigit():
            swapped = [*parts[:at], str(victim), *parts[at + 1 :]]
            made.add(".".join(swapped))  # any MAC of the reader's own kept
            made.add(".".join(swapped[: at + 1]))  # cut after the id
            made.add(".".join([*swapped[: at + 1], "a" * 16]))
    return [f"<{m}@{domain}>" for m in sorted(made)]


def their_tokens(own_return_path: str, victim_delivery: int) -> list[str]:
    match = re.match(r"bounces\+([0-9a-z]+)-([a-z2-7]+)@(.+)", own_return_path)
    if match is None:
        return []
    _ident, mac, domain = match.groups()
    base36 = format_base36(victim_delivery)
    return [f"bounces+{base36}-{mac}@{domain}", f"bounces+{base36}-{'a' * len(mac)}@{domain}"]


def format_base36(n: int) -> str:
    digits, text = "0123456789abcdefghijklmnopqrstuvwxyz", ""
    while True:
        n, r = divmod(n, 36)
        text = digits[r] + text
        if n == 0:
            return text


def drop(folder: Path, *messages: bytes) -> Path:
    box = mailbox.Maildir(folder, create=True)
    for message in messages:
        box.add(message)
    return folder


def test_a_reader_cannot_write_another_readers_report_in_any_providers_format(
    sent: Sent,
    tmp_path: Path,
) -> None:
    """The attack of the issue: the attacker's own Message-ID with the victim's id
    in it, in a Postfix or Gmail DSN and a Yahoo or Mail.ru complaint."""
    services, _, found = sent
    attacker, *victims = sorted(found)
    ids = subscriber_ids(services)
    own_mid = found[attacker][1]
    before = snapshot(services)
    messages = [
        make(victim, mid, f"bounces@{DOMAIN}", None)
        for victim in victims[:6]
        for mid in their_ids(own_mid, ids[victim])
        for make in FORMATS.values()
    ]
    report: ReturnsReport = run(services, drop(tmp_path / "returns", *messages))
    assert report.counts == {"unattributed": len(messages)}, report.counts
    assert snapshot(services) == before


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_report_built_from_what_is_public_changes_any_reader(
    sent: Sent,
    tmp_path_factory: pytest.TempPathFactory,
    data: st.DataObject,
) -> None:
    services, _, found = sent
    attacker, *victims = sorted(found)
    ids = subscriber_ids(services)
    own_path, own_mid = found[attacker]
    victim = data.draw(st.sampled_from(victims), label="victim")
    guess = data.draw(st.integers(1, 10 * READERS), label="guessed id")
    mid = data.draw(
        st.sampled_from(
            [
                *their_ids(own_mid, ids[victim]),
                *their_ids(own_mid, guess),
                f"<daily.20261125.abcde.{ids[victim]}@{DOMAIN}>",
                "<unknown@elsewhere.example>",
            ]
        ),
        label="Message-ID",
    )
    to = data.draw(
        st.sampled_from(
            [
                f"bounces@{DOMAIN}",
                victim,
                *their_tokens(own_path, guess),
                *their_tokens(own_path, ids[victim]),
            ]
        ),
        label="To",
    )
    return_path = data.draw(st.sampled_from([None, to, f"bounces+{victim}"]), label="Return-Path")
    make = FORMATS[data.draw(st.sampled_from(sorted(FORMATS)), label="format")]
    # The attacker's own token or id is theirs to use: it may change only them.
    assume(own_path not in (to, return_path) and mid != own_mid)
    before = snapshot(services)
    folder = tmp_path_factory.mktemp("returns") / "Maildir"
    report = run(services, drop(folder, make(victim, mid, to, return_path)))
    assert set(report.counts) <= {"unattributed", "unparseable"}, report.counts
    assert snapshot(services) == before


def test_ones_own_report_still_counts(
    sent: Sent,
    tmp_path: Path,
) -> None:
    """The guard is no wall: a real report through the VERP path or the real
    Message-ID of a delivery still bounces and complains."""
    services, _, found = sent
    bounced, complained = sorted(found)[:2]
    messages = [
        postfix_dsn(bounced, "<unknown@elsewhere.example>", found[bounced][0], None),
        arf("Mail.Ru FBL", complained, found[complained][1], f"fbl@{DOMAIN}", None),
    ]
    report = run(services, drop(tmp_path / "returns", *messages))
    assert report.counts == {"bounced": 1, "complained": 1}
    with services.factory() as session:
        states = {e: s for e, s in session.execute(select(Subscriber.email, Subscriber.status))}
    assert (str(states[bounced]), str(states[complained])) == ("bounced", "complained")


# -- one bad message never stops the intake ----------------------------------------


def nested(depth: int) -> bytes:
    head = b"From: x@example.org\r\nTo: bounces@" + DOMAIN.encode() + b"\r\nMIME-Version: 1.0\r\n"
    parts = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(depth)
    )
    return head + parts + b"Content-Type: text/plain\r\n\r\nx\r\n"


def test_a_message_that_breaks_a_parser_is_set_aside_and_the_rest_applied(
    sent: Sent,
    tmp_path: Path,
) -> None:
    services, _, found = sent
    reader = sorted(found)[0]
    folder = drop(
        tmp_path / "returns",
        b"To: bounces@" + DOMAIN.encode() + b"\r\nSubject: no From at all\r\n\r\nhello\r\n",
        nested(3000),
        postfix_dsn(reader, "<x@elsewhere.example>", found[reader][0], None).replace(
            b"Recipient address rejected", b"Recipient \x00address rejected"
        ),
    )
    report = run(services, folder)
    assert report.counts.get("bounced") == 1, report.counts
    assert report.messages == 3
    assert len(report.problems) == 2, report.problems
    assert any("nested" in p for p in report.problems), report.problems
    assert list((folder / "new").iterdir()) == []  # nothing left to stop the next run
    kept = sorted(p.name for p in (folder / "cur").iterdir())
    assert len(kept) == 2 and all(name.endswith(":2,S") for name in kept)
    again = run(services, folder)
    assert (again.messages, again.problems) == (0, [])


def test_a_suppression_keeps_its_evidence_and_the_desk_shows_it(
    sent: Sent,
    tmp_path: Path,
) -> None:
    """Which report, received when, from whom, and the token it matched: on the
    reader's file in the desk, so an admin sees why mail stopped."""
    from pydantic import SecretStr

    from digest.web.app import WebContext, create_app
    from tests.support.serving import reserved_port, serving
    from tests.support.web import PASSWORD, Client

    services, _, found = sent
    bounced = sorted(found)[0]
    path = found[bounced][0]
    folder = drop(tmp_path / "returns", postfix_dsn(bounced, "<x@elsewhere.example>", path, None))
    report = run(services, folder)
    assert report.counts == {"bounced": 1}
    reader_id = subscriber_ids(services)[bounced]
    port = reserved_port()
    cfg = services.settings.model_copy(
        update={
            "base_url": f"http://127.0.0.1:{port}",
            "editors": SecretStr(f"anna:{PASSWORD}"),
            "desk_admins": "anna",
        }
    )
    with serving(create_app(WebContext(cfg, services.factory, clock=services.clock)), port) as base:
        client = Client(base)
        assert client.login() == 303
        status, _, page = client.request(f"/desk/readers/{reader_id}")
    assert status == 200
    token = path.split("+", 1)[1].split("@", 1)[0]
    returns = page.split('id="returns"', 1)[1].split("</table>", 1)[0]
    assert f"VERP {token}" in returns
    assert f"{folder}/new/" in returns and "MAILER-DAEMON@mx.vpk.example.ru" in returns
