"""Returned mail against a real store and a real Maildir on disk (MAIL-RULES 24, 26):
a report reaches a subscriber only through a VERP token that verifies or a
Message-ID of ours; 5.7.x is never a hard bounce; a queue-expiry DSN (4.x.x)
is a soft failure; the reason is stored once; a read message is not read again;
and `digest status` groups failure reasons so none vanishes."""

from __future__ import annotations

import mailbox
from pathlib import Path

from sqlalchemy import func, select

from digest import store
from digest.models import Delivery, DeliveryStatus, Edition, Event, EventKind, Subscriber
from digest.track.reports import edition_report
from digest.wiring import Services
from tests.support.common import FIXED_NOW
from tests.support.mail import READERS, run

HARD_MID_ONLY = 3


def dsn(
    recipient: str,
    *,
    to: str = "bounces@vpk.example.ru",
    action: str = "failed",
    status: str = "5.1.1",
    diagnostic: str = "550 5.1.1 user unknown",
    mid: str = "<unknown@elsewhere.example>",
) -> bytes:
    """A delivery status notification as RFC 3464 lays it out."""
    return (
        f"From: MAILER-DAEMON@mx.example.org\r\nTo: {to}\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="R"\r\n\r\n'
        f"--R\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        f"--R\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; mx.example.org\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nOriginal-Recipient: rfc822; {recipient}\r\n"
        f"Action: {action}\r\nStatus: {status}\r\nDiagnostic-Code: smtp; {diagnostic}\r\n\r\n"
        f"--R\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Message-ID: {mid}\r\nTo: {recipient}\r\nSubject: digest\r\n\r\n--R--\r\n"
    ).encode()


def state(services: Services, address: str) -> tuple[str, Delivery]:
    with services.factory() as session:
        subscriber = session.scalar(select(Subscriber).where(Subscriber.email == address))
        assert subscriber is not None
        delivery = session.scalar(select(Delivery).where(Delivery.subscriber_id == subscriber.id))
        assert delivery is not None
        return str(subscriber.status), delivery


def test_a_report_without_a_token_of_ours_changes_nobody(
    sent: tuple[Services, Edition, dict[str, tuple[str, str]]], tmp_path: Path
) -> None:
    services, _, found = sent
    victims = sorted(found)[:4]
    box = mailbox.Maildir(tmp_path / "returns", create=True)
    box.add(dsn(victims[0]))  # Final-Recipient and To: alone
    box.add(dsn(victims[1], to="bounces+zz-aaaaaaaaaa@vpk.example.ru"))  # a forged token
    box.add(dsn(victims[2], mid="<forged.1.2@vpk.example.ru>"))  # a Message-ID not ours
    box.add(
        b"From: fbl@mail.example.ru\r\nTo: abuse@vpk.example.ru\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=feedback-report; boundary="F"\r\n\r\n'
        b"--F\r\nContent-Type: message/feedback-report\r\n\r\n"
        b"Feedback-Type: abuse\r\nVersion: 1\r\nOriginal-Rcpt-To: "
        + victims[3].encode()
        + b"\r\n\r\n--F--\r\n"
    )
    report = run(services, tmp_path / "returns")
    assert report.counts == {"unattributed": 4}, report.counts
    for victim in victims:
        status, delivery = state(services, victim)
        assert status == "active" and delivery.status is DeliveryStatus.SENT


def test_verp_and_our_message_id_attribute_and_the_reason_is_stored_once(
    sent: tuple[Services, Edition, dict[str, tuple[str, str]]], tmp_path: Path
) -> None:
    services, _, found = sent
    (hard, policy, expired, mid_only, delayed, relayed) = sorted(found)[:6]
    box = mailbox.Maildir(tmp_path / "returns", create=True)
    hard_reply = f"550 5.1.1 <{hard}>: Recipient address rejected: User unknown"
    box.add(dsn(hard, to=found[hard][0], diagnostic=hard_reply))
    # 5.7.x is policy (never a hard bounce) unless its words say the mailbox is gone.
    spam = "554 5.7.1 Message rejected as spam"
    box.add(dsn(policy, to=found[policy][0], status="5.7.1", diagnostic=spam))
    # Postfix gave up after its queue lifetime: failed with a 4.x.x status.
    box.add(
        dsn(
            expired,
            to=found[expired][0],
            status="4.2.2",
            diagnostic="452 4.2.2 Mailbox full",
        )
    )
    box.add(dsn(mid_only, mid=found[mid_only][1]))  # the return path was rewritten
    box.add(dsn(delayed, to=found[delayed][0], action="delayed", status="4.4.7"))
    box.add(dsn(relayed, to=found[relayed][0], action="relayed", status="2.0.0"))
    report = run(services, tmp_path / "returns")
    assert report.counts == {"bounced": 2, "failed": 1, "soft": 1, "delayed": 1, "ignored": 1}
    status, delivery = state(services, hard)
    assert status == "bounced" and delivery.status is DeliveryStatus.BOUNCED
    assert (delivery.smtp_code, delivery.smtp_reply) == (550, hard_reply[4:])
    status, delivery = state(services, policy)
    assert status == "active" and delivery.status is DeliveryStatus.FAILED
    status, delivery = state(services, expired)
    assert status == "active" and delivery.status is DeliveryStatus.FAILED
    assert (delivery.smtp_code, delivery.smtp_reply) == (452, "4.2.2 Mailbox full")
    assert state(services, mid_only)[0] == "bounced"
    for untouched in (delayed, relayed):
        status, delivery = state(services, untouched)
        assert status == "active" and delivery.status is DeliveryStatus.SENT
    with services.factory() as session:
        rows = session.scalars(select(Event).where(Event.kind == EventKind.BOUNCE)).all()
    soft = [e for e in rows if e.detail and e.detail.get("soft")]
    assert len(soft) == 1


def test_a_soft_bounce_counts_once_a_day(
    sent: tuple[Services, Edition, dict[str, tuple[str, str]]], tmp_path: Path
) -> None:
    services, _, found = sent
    reader = sorted(found)[0]
    box = mailbox.Maildir(tmp_path / "returns", create=True)
    for _ in range(services.settings.soft_bounce_limit + 1):
        box.add(dsn(reader, to=found[reader][0], status="5.2.2", diagnostic="552 5.2.2 full"))
    assert run(services, tmp_path / "returns").counts == {"soft": 4}
    status, delivery = state(services, reader)
    assert status == "active" and delivery.status is DeliveryStatus.FAILED
    with services.factory() as session:
        days = store.soft_bounce_days(session, delivery.subscriber_id, FIXED_NOW.replace(day=1))
    assert len(days) == 1


def test_a_message_left_in_place_is_read_once_and_named_by_its_file(
    sent: tuple[Services, Edition, dict[str, tuple[str, str]]], tmp_path: Path
) -> None:
    services, _, _ = sent
    folder = tmp_path / "returns"
    box = mailbox.Maildir(folder, create=True)
    key = box.add(b"From: someone@example.org\r\nSubject: hello\r\n\r\nJust saying hi.\r\n")
    first = run(services, folder)
    assert first.counts == {"unparseable": 1}
    assert first.problems[0].startswith(f"{folder}/new/{key}: ")
    assert (folder / "new" / key).exists() is False
    kept = mailbox.Maildir(folder, create=False)
    assert "S" in kept.get_message(key).get_flags() and kept.get_message(key).get_subdir() == "cur"
    second = run(services, folder)
    assert (second.messages, second.counts) == (0, {})


def test_status_groups_failure_reasons_and_says_how_many_more(
    sent: tuple[Services, Edition, dict[str, tuple[str, str]]], tmp_path: Path
) -> None:
    services, edition, found = sent
    readers = sorted(found)
    replies = [
        "550 5.1.1 <{}>: Recipient address rejected: User unknown",
        "552 5.2.2 <{}>: Mailbox full",
        "554 5.7.1 Message rejected as spam",
        "550 5.1.2 Host unknown for {}",
        "553 5.1.3 Invalid address {}",
        "550 5.2.1 Mailbox {} disabled",
        "552 5.3.4 Message size exceeds fixed limit",
    ]
    with services.factory.begin() as session:
        for i, reader in enumerate(readers[:16]):
            reply = replies[min(i // 3, len(replies) - 1) if i < 15 else 6].format(reader)
            subscriber = session.scalar(select(Subscriber).where(Subscriber.email == reader))
            assert subscriber is not None
            delivery = session.scalar(
                select(Delivery).where(Delivery.subscriber_id == subscriber.id)
            )
            assert delivery is not None
            delivery.status = DeliveryStatus.FAILED
            delivery.smtp_code, delivery.smtp_reply = int(reply[:3]), reply[4:]
    with services.factory() as session:
        current = session.get(Edition, edition.id)
        assert current is not None
        report = edition_report(session, current)
        total = session.scalar(select(func.count()).select_from(Delivery))
    assert total == READERS
    shown = report.failures
    assert len(shown) == 5 and report.more_failures == 1
    first = shown[0]
    assert first["count"] == 3 and first["code"] == 550 and first["enhanced"] == "5.1.1"
    assert first["reply"] == "<…>: Recipient address rejected: User unknown"
    assert sum(f["count"] for f in shown) + report.more_failures_count == 16


def test_a_providers_outage_expiring_in_the_queue_suppresses_nobody(
    sent: tuple[Services, Edition, dict[str, tuple[str, str]]], tmp_path: Path
) -> None:
    """Issue 25 §4: Postfix's queue-expiry DSN for a destination that was down
    (4.4.1 connection refused, 4.7.0 greeting refused) counted as a soft bounce
    against each of its readers: three days of a provider outage would suppress its
    readership. One about the mailbox (4.2.2 full) still counts."""
    services, _, found = sent
    down, greeting, full = sorted(found)[:3]
    box = mailbox.Maildir(tmp_path / "returns", create=True)
    for _ in range(services.settings.soft_bounce_limit + 1):
        refused = "connect to mx.example.ru[192.0.2.1]:25: Connection refused"
        box.add(dsn(down, to=found[down][0], status="4.4.1", diagnostic=refused))
        box.add(
            dsn(greeting, to=found[greeting][0], status="4.7.0", diagnostic="421 4.7.0 Try later")
        )
    box.add(dsn(full, to=found[full][0], status="4.2.2", diagnostic="452 4.2.2 Mailbox full"))
    report = run(services, tmp_path / "returns")
    assert report.counts == {"failed": 2 * (services.settings.soft_bounce_limit + 1), "soft": 1}
    for reader in (down, greeting):
        status, delivery = state(services, reader)
        assert status == "active" and delivery.status is DeliveryStatus.FAILED
    with services.factory() as session:
        counted = session.scalar(
            select(func.count()).select_from(Event).where(Event.kind == EventKind.BOUNCE)
        )
    assert counted == 1  # the full mailbox alone
