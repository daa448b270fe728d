"""Returned mail read without a database (MAIL-RULES 24, 26): RFC 3464 reports,
ARF complaints, the VERP token that alone attributes one, and what is refused."""

from __future__ import annotations

import pytest

from digest.errors import Kind
from digest.tokens import LinkSigner
from digest.track.bounces import BounceReader, Unparseable

SIGNER = LinkSigner(b"k" * 32, "verp")
READER = BounceReader(SIGNER, "bounces@vpk.example.ru")


def dsn(to: str, *, action: str = "failed", status: str = "5.1.1", diagnostic: str = "") -> bytes:
    diagnostic = diagnostic or f"550 {status} user unknown"
    return (
        f"From: MAILER-DAEMON@mx.example.org\r\nTo: {to}\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="R"\r\n\r\n'
        "--R\r\nContent-Type: text/plain\r\n\r\nNot delivered.\r\n"
        "--R\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.org\r\n\r\n"
        "Final-Recipient: rfc822; reader@example.ru\r\n"
        f"Action: {action}\r\nStatus: {status}\r\nDiagnostic-Code: smtp; {diagnostic}\r\n\r\n"
        "--R\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        "Message-ID: <m.1@vpk.example.ru>\r\nSubject: digest\r\n\r\n--R--\r\n"
    ).encode()


def verp(delivery_id: int) -> str:
    return f"bounces+{SIGNER.verp(delivery_id)}@vpk.example.ru"


def test_a_hard_bounce_to_a_verp_address_names_its_delivery() -> None:
    (finding,) = READER.read(dsn(verp(41)))
    assert finding.kind == "bounce" and finding.delivery_id == 41
    assert finding.bounce_kind is Kind.HARD_BOUNCE and finding.code == 550
    assert finding.recipient == "reader@example.ru" and finding.status == "5.1.1"
    assert finding.diagnostic.startswith("5.1.1") and "550 550" not in finding.diagnostic


def test_a_forged_token_attributes_nothing() -> None:
    (finding,) = READER.read(dsn("bounces+zz-aaaaaaaaaa@vpk.example.ru"))
    assert finding.delivery_id is None  # left to the Message-ID, which the store checks


@pytest.mark.parametrize(
    ("status", "diagnostic", "kind"),
    [
        ("4.2.2", "452 4.2.2 mailbox full", Kind.SOFT_BOUNCE),  # the MTA gave up retrying
        ("5.7.1", "550 5.7.1 message refused as spam", Kind.POLICY),
        ("5.2.2", "552 5.2.2 mailbox full", Kind.SOFT_BOUNCE),
    ],
)
def test_the_status_field_decides_the_class(status: str, diagnostic: str, kind: Kind) -> None:
    (finding,) = READER.read(dsn(verp(7), status=status, diagnostic=diagnostic))
    assert finding.bounce_kind is kind


def test_a_delay_notice_and_a_relayed_report_change_nothing() -> None:
    (delayed,) = READER.read(dsn(verp(7), action="delayed", status="4.4.7"))
    (relayed,) = READER.read(dsn(verp(7), action="relayed", status="2.0.0"))
    assert (delayed.kind, relayed.kind) == ("delayed", "ignored")


def test_an_abuse_report_is_a_complaint_from_its_original_recipient() -> None:
    arf = (
        b"From: fbl@mail.example.ru\r\nTo: fbl@vpk.example.ru\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=feedback-report; boundary="F"\r\n\r\n'
        b"--F\r\nContent-Type: message/feedback-report\r\n\r\n"
        b"Feedback-Type: abuse\r\nVersion: 1\r\n"
        b"Original-Rcpt-To: reader@example.ru\r\n\r\n--F--\r\n"
    )
    (finding,) = READER.read(arf)
    assert finding.kind == "complaint" and finding.feedback_type == "abuse"
    assert finding.recipient == "reader@example.ru" and finding.delivery_id is None


def test_a_message_that_is_no_report_is_unparseable() -> None:
    with pytest.raises(Unparseable):
        READER.read(b"From: someone@example.org\r\nSubject: hello\r\n\r\nJust a letter.\r\n")
