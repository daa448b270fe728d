"""Returned mail: DSNs (RFC 3464), complaints (ARF, RFC 5965) and the bounces in
other formats that flufl.bounce knows, read from a Maildir or an mbox.

A report is tied to its delivery by the VERP return path (``bounces+TOKEN@``,
checked by its keyed hash) or, failing that, by the Message-ID of the returned
original when it is ours and names one delivery. ``Final-Recipient``,
``Original-Recipient`` and ``To:`` alone never change anyone: anyone can forge
them (MAIL-RULES 26). ``Action: failed`` is a failed delivery (5.x.x by the reply
rules, 4.x.x a soft failure: the MTA gave up after retrying); ``delayed``,
``relayed`` and ``expanded`` change nothing. What cannot be understood or
attributed is counted and left in place, marked as seen.
"""

from __future__ import annotations

import email
import logging
import mailbox
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from pathlib import Path
from typing import Any

from flufl.bounce import all_failures

from digest.audience.subscribers import SubscriberBook
from digest.db import Factory, transaction
from digest.errors import DigestError, Kind
from digest.tokens import BadToken, LinkSigner, unsubscribe_key
from digest.track.ledger import apply_return
from digest.track.outcomes import SoftBouncePolicy
from digest.track.replies import enhanced_code, kind_of

log = logging.getLogger(__name__)
RECIPIENT_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
SMTP_CODE = re.compile(r"([245]\d\d)\b")
SMTP_REPLY_CODE = re.compile(r"^[245]\d\d[ -]")
PROCESSED_FOLDER = "processed"


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
        msg = email.message_from_bytes(data)
        delivery_id = self._verp_delivery(msg)
        original_id = _original_message_id(msg)
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
        findings = [
            Finding(
                f.kind,
                delivery_id,
                original_id,
                f.recipient,
                f.status,
                f.code,
                f.diagnostic,
                f.bounce_kind,
                f.feedback_type,
            )
            for f in findings
        ]
        if delivery_id is None and original_id is None and not any(f.recipient for f in findings):
            raise Unparseable("it names no delivery (VERP), Message-ID or recipient")
        return findings

    def _verp_delivery(self, msg: Message) -> int | None:
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
                    return self.signer.verify_verp(match.group(1))
                except BadToken:
                    log.warning("a return path with a forged or foreign token: %s", value)
        return None

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
            feedback = fields.get("feedback-type", "").strip().lower()
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
    status = str(block.get("Status", "")).strip()
    recipient = _address(str(block.get("Final-Recipient") or block.get("Original-Recipient") or ""))
    diagnostic = " ".join(str(block.get("Diagnostic-Code", "")).split())
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
        # MAIL-RULES 26: the MTA gave up after retrying (Postfix's queue expiry):
        # a failed delivery, counted like a full mailbox, never a hard bounce.
        kind = Kind.SOFT_BOUNCE
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


# -- mailboxes -----------------------------------------------------------------------


@dataclass
class Source:
    """A Maildir or an mbox.

    Maildir: only unseen messages are read. An applied one moves to the
    ``.processed`` folder; one that could not be understood or attributed stays
    for a person to read, moved from ``new/`` to ``cur/`` with the ``S`` (seen)
    flag, as a mail client would, so a cron run does not report it again.
    mbox: read whole and left as it is (it may be appended to while we read);
    applying a report twice changes nothing more."""

    path: Path
    box: mailbox.Mailbox[Any] = field(init=False)

    def __post_init__(self) -> None:
        if self.path.is_dir():
            if not (self.path / "cur").is_dir() and not (self.path / "new").is_dir():
                raise DigestError(f"{self.path}: a folder but not a Maildir (no cur/ or new/)")
            self.box = mailbox.Maildir(self.path, factory=None, create=False)
        elif self.path.is_file():
            self.box = mailbox.mbox(self.path, create=False)
        else:
            raise DigestError(f"{self.path}: no such Maildir or mbox")

    @property
    def keeps_track(self) -> bool:
        return isinstance(self.box, mailbox.Maildir)

    def messages(self) -> Iterator[tuple[str, bytes]]:
        for key in list(self.box.keys()):
            try:
                if self.keeps_track and "S" in self.box.get_message(key).get_flags():
                    continue
                yield key, self.box.get_bytes(key)
            except KeyError:  # removed meanwhile by another reader
                continue

    def where(self, key: str) -> str:
        """The message's file, as a person would look for it."""
        if not isinstance(self.box, mailbox.Maildir):
            return f"{self.path} (message {key})"
        found = self.box.get_message(key)
        info = found.get_info()
        name = key + (self.box.colon + info if info else "")
        return f"{self.path}/{found.get_subdir()}/{name}"

    def keep(self, key: str) -> None:
        """Leave it in place, marked as seen."""
        if not isinstance(self.box, mailbox.Maildir):
            return
        found = self.box.get_message(key)
        found.set_subdir("cur")
        found.add_flag("S")
        self.box[key] = found

    def done(self, key: str) -> None:
        if not isinstance(self.box, mailbox.Maildir):
            return
        folder = (
            self.box.get_folder(PROCESSED_FOLDER)
            if PROCESSED_FOLDER in self.box.list_folders()
            else self.box.add_folder(PROCESSED_FOLDER)
        )
        folder.add(self.box.get_message(key))
        self.box.remove(key)


@dataclass
class ReturnsReport:
    messages: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1


def process_returns(
    factory: Factory,
    source: Source,
    reader: BounceReader,
    policy: SoftBouncePolicy,
    clock: Callable[[], datetime],
) -> ReturnsReport:
    """Read every message of ``source`` and apply what it says, one transaction per
    message: a bad one is counted and left in place; the rest go on."""
    report = ReturnsReport()
    for key, data in source.messages():
        report.messages += 1
        try:
            findings = reader.read(data)
        except Unparseable as exc:
            report.count("unparseable")
            report.problems.append(f"{source.where(key)}: {exc}")
            source.keep(key)
            continue
        with transaction(factory) as session:
            done = [apply_return(session, finding, clock(), policy) for finding in findings]
        for what in done:
            report.count(what)
        if "unattributed" in done:
            # Counted, logged, never applied: no token of ours and no Message-ID of ours.
            where = source.where(key)
            log.warning("returned mail names no delivery of ours, not applied: %s", where)
            report.problems.append(f"{where}: no VERP token or Message-ID of ours; not applied")
            source.keep(key)
            continue
        source.done(key)
    return report


def process_unsubscribes(
    source: Source, signers: list[LinkSigner], book: SubscriberBook, domain: str
) -> ReturnsReport:
    """Mail sent to ``unsubscribe+TOKEN@domain`` (the List-Unsubscribe mailto):
    a valid token unsubscribes its subscriber; anything else stays in place."""
    pattern = re.compile(rf"unsubscribe\+([A-Za-z0-9._-]+)@{re.escape(domain)}", re.I)
    report = ReturnsReport()
    for key, data in source.messages():
        report.messages += 1
        msg = email.message_from_bytes(data)
        token_key = None
        for name in RECIPIENT_HEADERS:
            for value in msg.get_all(name) or []:
                match = pattern.search(str(value))
                if match and token_key is None:
                    token_key = unsubscribe_key(signers, match.group(1))
        if token_key is None:
            report.count("unreadable")
            report.problems.append(f"{source.path}/{key}: no valid unsubscribe+TOKEN address")
            continue
        book.unsubscribe_key(token_key, "mailto")
        report.count("unsubscribed")
        source.done(key)
    return report
