"""Compose: one RFC 5322 message per subscriber, without building one per subscriber.

Building an ``EmailMessage`` per subscriber costs ~2.5 ms and halves the
send rate (DESIGN.md decision 1), so each edition variant is serialised once
into wire bytes with *slots*, and a subscriber's message is those bytes with
the slot values (Date, To, Message-ID, their signed links, their address)
spliced in: a handful of short encodings and one ``bytes.join``.

Bodies are quoted-printable: the message is 7-bit clean, so no relay has to
downgrade it (which would break a DKIM signature), and every line stays
within 76 octets (MAIL-RULES 8). QP never emits ``=_``, so the MIME boundary
``=_…`` cannot occur inside a part. A slot's value is encoded on lines of its
own, between soft line breaks, so splicing never lengthens a line.
"""

from __future__ import annotations

import binascii
import enum
import hashlib
import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from email.headerregistry import Address
from email.utils import format_datetime

from digest import headers
from digest.lists import MailingList
from digest.tokens import LinkSigner

PLACEHOLDER = re.compile(r"__(UNSUB_URL|PREFS_URL|EMAIL)__")


class Slot(enum.Enum):
    DATE = "date"
    TO = "to"
    MESSAGE_ID = "message_id"
    UNSUB_HTTPS = "unsub_https"
    UNSUB_MAILTO = "unsub_mailto"
    HTML_UNSUB_URL = "html_unsub"
    HTML_PREFS_URL = "html_prefs"
    HTML_EMAIL = "html_email"
    TEXT_UNSUB_URL = "text_unsub"
    TEXT_PREFS_URL = "text_prefs"
    TEXT_EMAIL = "text_email"


_BODY_SLOTS = {
    ("html", "UNSUB_URL"): Slot.HTML_UNSUB_URL,
    ("html", "PREFS_URL"): Slot.HTML_PREFS_URL,
    ("html", "EMAIL"): Slot.HTML_EMAIL,
    ("text", "UNSUB_URL"): Slot.TEXT_UNSUB_URL,
    ("text", "PREFS_URL"): Slot.TEXT_PREFS_URL,
    ("text", "EMAIL"): Slot.TEXT_EMAIL,
}


@dataclass(frozen=True)
class Recipient:
    subscriber_id: int
    email: str
    name: str | None
    token_key: str
    delivery_id: int | None = None


@dataclass(frozen=True)
class EditionMail:
    """What compose needs to know of an edition."""

    edition_id: int
    schedule: str
    edition_date: date
    subject: str


@dataclass(frozen=True)
class Message:
    recipient: Recipient
    envelope_from: str
    envelope_to: str
    message_id: str
    data: bytes


def qp(data: bytes) -> bytes:
    """Quoted-printable (RFC 2045 §6.7) with CRLF line ends and lines of ≤ 76 octets."""
    return binascii.b2a_qp(data, quotetabs=False, istext=True).replace(b"\n", b"\r\n")


def _qp_segment(text: str) -> bytes:
    encoded = qp(text.encode("utf-8"))
    # End on a line boundary, so the next slot or segment starts at column 0.
    return encoded if not encoded or encoded.endswith(b"\r\n") else encoded + b"=\r\n"


def _qp_value(value: str) -> bytes:
    return _qp_segment(value)


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


@dataclass(frozen=True)
class MessageTemplate:
    """A variant serialised once: static byte chunks with slots between them."""

    chunks: tuple[bytes, ...]
    slots: tuple[Slot, ...]
    message_id_prefix: str
    size_hint: int

    def fill(self, values: dict[Slot, bytes]) -> bytes:
        parts = [self.chunks[0]]
        for slot, chunk in zip(self.slots, self.chunks[1:], strict=True):
            parts.append(values[slot])
            parts.append(chunk)
        return b"".join(parts)


class _Builder:
    """Collects bytes and slots, merging adjacent bytes into one chunk."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = [b""]
        self.slots: list[Slot] = []

    def add(self, piece: bytes | Slot) -> None:
        if isinstance(piece, Slot):
            self.slots.append(piece)
            self.chunks.append(b"")
        else:
            self.chunks[-1] += piece

    def body(self, kind: str, text: str) -> None:
        """A body part's content, QP-encoded, its placeholders turned into slots."""
        text = _normalise_newlines(text)
        position = 0
        for match in PLACEHOLDER.finditer(text):
            self.add(_qp_segment(text[position : match.start()]))
            self.add(_BODY_SLOTS[(kind, match.group(1))])
            position = match.end()
        # The CRLF before a boundary belongs to the boundary (RFC 2046 §5.1.1),
        # so one more is added: a body that ends with a newline keeps it.
        self.add(qp(text[position:].encode("utf-8")) + b"\r\n")


class Composer:
    """Builds message templates per variant and personalises them per subscriber."""

    def __init__(
        self,
        *,
        sender: Address,
        mailing_list: MailingList,
        signer: LinkSigner,
        base_url: str,
        feedback_sender_id: str,
        clock: Callable[[], datetime],
        envelope_from: str | None = None,
    ) -> None:
        self.sender = sender
        self.list = mailing_list
        self.signer = signer
        self.base_url = base_url.rstrip("/")
        self.feedback_sender_id = feedback_sender_id
        self.clock = clock
        self.envelope_from = envelope_from or headers.ascii_address(sender.addr_spec)
        self.domain = headers.ascii_address(sender.addr_spec).rpartition("@")[2]
        self._date_cache: tuple[int, bytes] = (-1, b"")

    # -- once per variant -----------------------------------------------------

    def template(
        self, edition: EditionMail, html_body: str, text_body: str, *, subject_prefix: str = ""
    ) -> MessageTemplate:
        b = _Builder()
        b.add(b"Date: ")
        b.add(Slot.DATE)
        b.add(b"\r\n")
        b.add(headers.mailbox(self.sender.display_name, self.sender.addr_spec, "From"))
        b.add(Slot.TO)
        b.add(headers.unstructured("Subject", subject_prefix + edition.subject))
        b.add(b"Message-ID: ")
        b.add(Slot.MESSAGE_ID)
        b.add(b"\r\nMIME-Version: 1.0\r\n")
        b.add(self._list_id())
        # RFC 8058 §3.1: the https URI first; RFC 2369 angle brackets around each.
        b.add(b"List-Unsubscribe: <")
        b.add(Slot.UNSUB_HTTPS)
        b.add(b">,\r\n <mailto:")
        b.add(Slot.UNSUB_MAILTO)
        b.add(b">\r\n")
        b.add(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
        b.add(b"Precedence: bulk\r\n")
        b.add(b"Auto-Submitted: auto-generated\r\n")
        b.add(f"X-Mailru-Msgtype: {self.list.msgtype}\r\n".encode("ascii"))
        b.add(f"Feedback-ID: {self._feedback_id(edition)}\r\n".encode("ascii"))
        boundary = (
            "=_dg_" + hashlib.sha256((html_body + text_body).encode("utf-8")).hexdigest()[:24]
        )
        b.add(f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n\r\n'.encode())
        # RFC 2046 §5.1.4: the plain part first, the preferred (HTML) part last.
        for kind, body in (("plain", text_body), ("html", html_body)):
            b.add(
                f"--{boundary}\r\nContent-Type: text/{kind}; charset=utf-8\r\n"
                "Content-Transfer-Encoding: quoted-printable\r\n\r\n".encode("ascii")
            )
            b.body("text" if kind == "plain" else "html", body)
        b.add(f"--{boundary}--\r\n".encode("ascii"))
        tag = self.signer.message_id_tag(edition.edition_id, edition.schedule)
        prefix = f"{edition.schedule}.{edition.edition_date:%Y%m%d}.{tag}"
        return MessageTemplate(
            tuple(b.chunks), tuple(b.slots), prefix, sum(len(c) for c in b.chunks)
        )

    def _list_id(self) -> bytes:
        # RFC 2919: the phrase may be encoded, the id in angle brackets never.
        line = headers.unstructured("List-Id", self.list.name).rstrip(b"\r\n")
        candidate = line + f" <{self.list.list_id}>".encode("ascii")
        if len(candidate.rsplit(b"\r\n", 1)[-1]) <= headers.ENCODED_LINE_MAX:
            return candidate + b"\r\n"
        return line + f"\r\n <{self.list.list_id}>\r\n".encode("ascii")

    def _feedback_id(self, edition: EditionMail) -> str:
        # Gmail FBL "a:b:c:SenderId": campaign (the edition), list, stream, sender;
        # nothing per message or per recipient (MAIL-RULES 6).
        return (
            f"{edition.schedule}{edition.edition_date:%Y%m%d}:{self.list.key}:digest:"
            f"{self.feedback_sender_id}"
        )

    # -- once per subscriber --------------------------------------------------

    def message(self, template: MessageTemplate, recipient: Recipient) -> Message:
        """The subscriber's message: the template with their values spliced in.
        Raises ``ComposeError`` for an address that cannot be sent to."""
        rcpt = headers.ascii_address(recipient.email)
        unsub_token = self.signer.unsubscribe(recipient.token_key)
        unsub_url = f"{self.base_url}/u/{unsub_token}"
        prefs_url = f"{self.base_url}/p/{self.signer.preferences(recipient.token_key)}"
        message_id = f"<{template.message_id_prefix}.{recipient.subscriber_id}@{self.domain}>"
        values = {
            Slot.DATE: self._date(),
            Slot.TO: headers.mailbox(recipient.name, recipient.email, "To"),
            Slot.MESSAGE_ID: message_id.encode("ascii"),
            Slot.UNSUB_HTTPS: unsub_url.encode("ascii"),
            Slot.UNSUB_MAILTO: f"unsubscribe+{unsub_token}@{self.domain}".encode("ascii"),
            Slot.HTML_UNSUB_URL: _qp_value(html.escape(unsub_url)),
            Slot.HTML_PREFS_URL: _qp_value(html.escape(prefs_url)),
            Slot.HTML_EMAIL: _qp_value(html.escape(recipient.email)),
            Slot.TEXT_UNSUB_URL: _qp_value(unsub_url),
            Slot.TEXT_PREFS_URL: _qp_value(prefs_url),
            Slot.TEXT_EMAIL: _qp_value(recipient.email),
        }
        return Message(recipient, self.envelope_from, rcpt, message_id, template.fill(values))

    def _date(self) -> bytes:
        # One Date per second is exact enough and saves formatting per message.
        now = self.clock()
        second = int(now.timestamp())
        if self._date_cache[0] != second:
            self._date_cache = (second, format_datetime(now.replace(microsecond=0)).encode())
        return self._date_cache[1]
