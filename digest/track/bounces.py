"""Returned mail: DSNs (RFC 3464), complaints (ARF, RFC 5965) and the bounces in
other formats that flufl.bounce knows. Pure: no database, no mailbox
(``track.intake`` reads the mailboxes and applies what this finds).

Returned mail is written by strangers (issue 24): a report reaches a delivery
only by what an outsider cannot compute, the VERP return path (``bounces+TOKEN@``,
checked by its keyed hash) or the Message-ID of the returned original, which
carries a keyed MAC of its own (``tokens.LinkSigner.message_id``). Everything
else a report says (``Final-Recipient``, ``Original-Rcpt-To``, ``To:``, the
shape of our ids) is known to anyone who received one edition and never changes
anyone (MAIL-RULES 26). ``Action: failed`` is a failed delivery (5.x.x by the
reply rules, 4.x.x a soft failure: the MTA gave up after retrying); ``delayed``,
``relayed`` and ``expanded`` change nothing. What matched is kept as the
finding's evidence.
"""

from __future__ import annotations

import email
import logging
import re
from dataclasses import dataclass, replace
from email.message import Message

from flufl.bounce import all_failures

from digest.errors import DigestError, Kind
from digest.headers import clean_text
from digest.tokens import BadToken, LinkSigner
from digest.track.replies import enhanced_code, kind_of

log = logging.getLogger(__name__)
RECIPIENT_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
SMTP_CODE = re.compile(r"([245]\d\d)\b")
SMTP_REPLY_CODE = re.compile(r"^[245]\d\d[ -]")
MAX_DEPTH = 30  # MIME levels: real reports have 3 or 4; Python's parsers recurse


@dataclass(frozen=True)
class Finding:
    """What one returned message says about one recipient."""

    kind: str  # bounce, complaint, delayed
    delivery_id: int | None = None
    message_id: str | None = None
    recipient: str | None = None
    status: str | None = None  # enhanced status code, e.g. 5.1.1
    code: int | None = None
    diagnostic: str = ""
    bounce_kind: Kind | None = None  # hard, soft, policy, permanent (for bounces)
    feedback_type: str | None = None
    matched: str = ""  # what tied it to its delivery: "VERP …" or "Message-ID …"
    report: str = ""  # which report said it: its file, sender and date (track.intake)


class Unparseable(DigestError):
    """A returned message that names no delivery or recipient we can act on."""


class BounceReader:
    """Turns returned messages into findings. Pure: no database."""

    def __init__(self, signer: LinkSigner, return_path: str) -> None:
        self.signer = signer
        local, _, domain = return_path.partition("@")
        self.verp = re.compile(
            rf"{re.escape(local)}\+([0-9a-z]+-[a-z2-7]{{10}})@{re.escape(domain)}", re.I
        )

    def read(self, data: bytes) -> list[Finding]:
        """What one returned message says; ``Unparseable`` when nothing of it can be
        acted on (a message nested past ``MAX_DEPTH`` included)."""
        if data.lower().count(b"multipart/") > 4 * MAX_DEPTH:
            # Python's MIME parser recurses once a level: refuse before parsing.
            raise Unparseable(f"MIME nested deeper than {MAX_DEPTH} levels (or as many parts)")
        msg = email.message_from_bytes(data)
        if _depth(msg) > MAX_DEPTH:
            raise Unparseable(f"MIME nested deeper than {MAX_DEPTH} levels")
        delivery_id, token = self._verp_delivery(msg)
        original_id = self._original_id(msg)
        report_type = (msg.get_param("report-type") or "") if msg.is_multipart() else ""
        report_type = str(report_type).lower()
        if report_type == "feedback-report":
            findings = self._complaint(msg)
        elif report_type == "delivery-status":
            findings = self._dsn(msg)
        else:
            findings = self._heuristic(msg)
        if not findings:
            raise Unparseable("no delivery status, complaint or bounce format recognised")
        matched = f"VERP {token}" if token else f"Message-ID {original_id}" if original_id else ""
        findings = [
            replace(f, delivery_id=delivery_id, message_id=original_id, matched=matched)
            for f in findings
        ]
        if delivery_id is None and original_id is None and not any(f.recipient for f in findings):
            raise Unparseable("it names no delivery (VERP), Message-ID or recipient")
        return findings

    def _original_id(self, msg: Message) -> str | None:
        """The quoted original's Message-ID, when its MAC says we wrote it."""
        value = _original_message_id(msg)
        if value is None or self.signer.verify_message_id(value):
            return value
        log.warning("a quoted Message-ID without a valid MAC of ours, ignored: %s", value[:200])
        return None

    def _verp_delivery(self, msg: Message) -> tuple[int | None, str | None]:
        # The report's own recipient, else the Return-Path of the original it quotes
        # (feedback loops write to their own address). The token's keyed hash is
        # what makes either trustworthy.
        values = [v for name in RECIPIENT_HEADERS for v in msg.get_all(name) or []]
        original = _original_headers(msg)
        if original is not None:
            values.extend(original.get_all("Return-Path") or [])
        for value in values:
            match = self.verp.search(str(value))
            if match:
                try:
                    return self.signer.verify_verp(match.group(1)), match.group(1).lower()
                except BadToken:
                    log.warning("a return path with a forged or foreign token: %s", value)
        return None, None

    @staticmethod
    def _dsn(msg: Message) -> list[Finding]:
        findings = []
        for part in msg.walk():
            if part.get_content_type() != "message/delivery-status":
                continue
            blocks = part.get_payload()
            if not isinstance(blocks, list):
                continue
            for block in blocks[1:]:  # the first block is about the message, not a recipient
                if isinstance(block, Message):
                    findings.extend(_recipient_finding(block))
        return findings

    @staticmethod
    def _complaint(msg: Message) -> list[Finding]:
        for part in msg.walk():
            if part.get_content_type() != "message/feedback-report":
                continue
            blocks = part.get_payload()
            fields: dict[str, str] = {}
            for block in blocks if isinstance(blocks, list) else []:
                if isinstance(block, Message):
                    fields.update({k.lower(): str(v) for k, v in block.items()})
            feedback = clean_text(fields.get("feedback-type", ""), 40).lower()
            if not feedback:
                return []
            recipient = _address(fields.get("original-rcpt-to", ""))
            return [Finding("complaint", recipient=recipient, feedback_type=feedback)]
        return []

    @staticmethod
    def _heuristic(msg: Message) -> list[Finding]:
        """Non-standard bounces (qmail, Exim, Exchange …): flufl.bounce's detectors."""
        _temporary, permanent = all_failures(msg)
        return [
            Finding(
                "bounce",
                recipient=address.decode("utf-8", "replace").lower(),
                diagnostic="permanent failure (detected by flufl.bounce)",
                bounce_kind=Kind.HARD_BOUNCE,
            )
            for address in sorted(permanent)
        ]


def _recipient_finding(block: Message) -> list[Finding]:
    action = str(block.get("Action", "")).strip().lower()
    status = clean_text(str(block.get("Status", "")), 20)
    recipient = _address(str(block.get("Final-Recipient") or block.get("Original-Recipient") or ""))
    diagnostic = clean_text(str(block.get("Diagnostic-Code", "")), 2000)
    diagnostic = diagnostic.split(";", 1)[1].strip() if ";" in diagnostic else diagnostic
    if action == "delayed":
        return [Finding("delayed", recipient=recipient, status=status, diagnostic=diagnostic)]
    if action in ("relayed", "expanded", "delivered"):
        return [Finding("ignored", recipient=recipient, status=status)]
    if action != "failed" or status[:2] not in ("4.", "5."):
        return []
    # "550 5.1.1 <x>: …" → code 550 and the reply "5.1.1 <x>: …": the code is kept
    # once, in its own column (reports print "550 5.1.1 …", never "550 550 5.1.1").
    match = SMTP_CODE.match(diagnostic)
    reply = SMTP_REPLY_CODE.sub("", diagnostic, count=1).strip() if match else diagnostic
    code = int(match.group(1)) if match and match.group(1)[0] == status[0] else None
    if code is None:
        code = 550 if status.startswith("5.") else 450
    if not enhanced_code(reply):
        reply = f"{status} {reply}".strip()
    if status.startswith("4."):
        # MAIL-RULES 26: the MTA gave up after retrying (Postfix's queue expiry): a
        # failed delivery, never a hard bounce. Counted against the reader like a
        # full mailbox only when its status is about the mailbox or address (4.1.x,
        # 4.2.x); about the destination (4.4.x routing and connections, 4.3.x its
        # mail system, 4.7.0 greetings refused) it is the provider's trouble: three
        # days of an outage must not suppress its readership (issue 25).
        kind = Kind.SOFT_BOUNCE if status[:4] in ("4.1.", "4.2.") else Kind.UNREACHABLE
    else:
        # The Status field decides the class: a 5.7.x is policy whatever the text.
        judged = kind_of(code, f"{status} {reply}")
        kind = judged if judged is not None else Kind.PERMANENT
    return [
        Finding(
            "bounce",
            recipient=recipient,
            status=status,
            code=code,
            diagnostic=reply,
            bounce_kind=kind,
        )
    ]


def _address(value: str) -> str | None:
    """``rfc822; reader@example.ru`` → ``reader@example.ru``."""
    value = value.split(";", 1)[-1].strip().strip("<>").strip()
    return value.lower() if "@" in value else None


def _original_headers(msg: Message) -> Message | None:
    """The headers of the original message a report quotes, if it quotes one."""
    for part in msg.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return inner[0]
        elif kind == "text/rfc822-headers":
            return email.message_from_string(str(part.get_payload(decode=False)))
    return None


def _original_message_id(msg: Message) -> str | None:
    original = _original_headers(msg)
    value = original.get("Message-ID") if original is not None else None
    return str(value).strip() if value else None


def _depth(msg: Message) -> int:
    """How deep its MIME parts nest, counted without recursion."""
    deepest, stack = 0, [(msg, 1)]
    while stack:
        part, level = stack.pop()
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            break
        payload = part.get_payload() if part.is_multipart() else None
        if isinstance(payload, list):
            stack.extend((p, level + 1) for p in payload if isinstance(p, Message))
    return deepest
