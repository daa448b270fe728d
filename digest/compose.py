"""Compose: one RFC 5322 message per subscriber, without building one per subscriber.

Building an ``EmailMessage`` per subscriber costs ~2.5 ms and halves the
send rate (docs/ARCHITECTURE.md, decision 1), so each edition variant is serialised once
into wire bytes with *slots*, and a subscriber's message is those bytes with
the slot values (Date, To, Message-ID, their signed links, their address)
spliced in: a handful of short encodings and one ``bytes.join``.

Bodies are base64: the message is 7-bit clean, so no relay has to downgrade
it (RFC 6376 §5.3: a downgrade breaks a DKIM signature), and every line stays
within 76 octets (MAIL-RULES 8). For Russian text base64 is the smaller 7-bit
encoding (×1.35, where quoted-printable triples every Cyrillic byte), and wire
size is what the SMTP client spends its time on: aiosmtplib scans every byte
of every message twice. base64 never emits ``=_``, so the MIME boundary
``=_…`` cannot occur inside a part. Splicing into base64 is done by
``_Segment``/``_Base64Part``: only the few bytes around each slot are encoded
per subscriber.
"""

from __future__ import annotations

import binascii
import enum
import hashlib
import hmac
import html
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from email.headerregistry import Address
from email.utils import format_datetime

from digest import headers
from digest.audience.lists import MailingList
from digest.tokens import LinkSigner

SLOT_NAMES = ("UNSUB_URL", "PREFS_URL", "EMAIL", "READER", "CONFIRM_URL", "KEEP_URL")


class Placeholders:
    """Where a template asks for a subscriber's own value: ``__<stem>NAME__``, the
    stem a keyed hash of this installation's secret. Templates write them with
    ``{{ slot("UNSUB_URL") }}``; titles, URLs, comments, names and the desk's
    intro come from outside and cannot contain one, because nobody outside knows
    the stem: a slot exists only where a template we rendered put it. (A fixed
    ``__UNSUB_URL__`` in an image URL once made every message hand the reader's
    links to a stranger.) The stem never leaves the machine: every slot is
    filled before a message goes out, and the archive renders without slots."""

    def __init__(self, secret: bytes | Callable[[], bytes]) -> None:
        self._secret = secret
        self._stem: str | None = None

    @property
    def stem(self) -> str:
        if self._stem is None:
            secret = self._secret() if callable(self._secret) else self._secret
            digest = hmac.new(secret, b"digest template slots", hashlib.sha256).hexdigest()
            self._stem = f"dg{digest[:24]}"
        return self._stem

    def mark(self, name: str) -> str:
        if name not in SLOT_NAMES:
            raise ValueError(f"no slot called {name!r}")
        return f"__{self.stem}{name}__"

    @property
    def pattern(self) -> re.Pattern[str]:
        # re caches compiled patterns: one stem, one compilation.
        return re.compile(rf"__{self.stem}({'|'.join(SLOT_NAMES)})__")


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
    READER = "reader"


_BODY_SLOTS = {
    ("html", "UNSUB_URL"): Slot.HTML_UNSUB_URL,
    ("html", "PREFS_URL"): Slot.HTML_PREFS_URL,
    ("html", "EMAIL"): Slot.HTML_EMAIL,
    ("text", "UNSUB_URL"): Slot.TEXT_UNSUB_URL,
    ("text", "PREFS_URL"): Slot.TEXT_PREFS_URL,
    ("text", "EMAIL"): Slot.TEXT_EMAIL,
    # Tracked links with individual tracking: a signed token naming the reader.
    ("html", "READER"): Slot.READER,
    ("text", "READER"): Slot.READER,
}


@dataclass(frozen=True)
class Recipient:
    subscriber_id: int
    email: str
    name: str | None
    token_key: str
    delivery_id: int | None = None
    # A copy outside the edition's deliveries (a test copy): its own Message-ID,
    # never a reader's, so a mailbox that saw the real one does not drop it.
    copy: bool = False


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
    # RFC 6531: the recipient's local part is UTF-8 (иван@пример.рф), so are its
    # envelope and To:; sent only with SMTPUTF8. Every other message is 7-bit.
    smtputf8: bool = False


def b64_lines(data: bytes) -> bytes:
    """base64 in lines of 76 characters, each ended by CRLF (RFC 2045 §6.8)."""
    if len(data) <= 57:  # the per-subscriber pieces: one line
        return binascii.b2a_base64(data, newline=False) + b"\r\n" if data else b""
    lines = [binascii.b2a_base64(data[i : i + 57], newline=False) for i in range(0, len(data), 57)]
    return b"\r\n".join(lines) + b"\r\n"


@dataclass(frozen=True)
class _Segment:
    """Static body bytes, base64-encoded in advance at each of the three phases.

    base64 turns 3 bytes into 4 characters, so two encoded runs concatenate into
    a valid stream only when the first one's length is a multiple of 3. Phase h
    means the chunk before this segment borrowed its first h bytes to reach that
    multiple; ``cores[h]`` is then the aligned middle, already encoded, and
    ``tails[h]`` the 0–2 bytes left for the next chunk to carry."""

    raw: bytes
    cores: tuple[bytes, bytes, bytes]
    tails: tuple[bytes, bytes, bytes]

    @classmethod
    def of(cls, raw: bytes) -> _Segment:
        cores, tails = [], []
        for h in range(3):
            end = len(raw) - (len(raw) - h) % 3 if h <= len(raw) else len(raw)
            cores.append(b64_lines(raw[h:end]) if h <= len(raw) else b"")
            tails.append(raw[end:] if h <= len(raw) else b"")
        return cls(raw, (cores[0], cores[1], cores[2]), (tails[0], tails[1], tails[2]))


@dataclass(frozen=True)
class _Base64Part:
    """A body part's content with slots, encoded per subscriber by encoding only
    the few bytes around each slot value."""

    first: _Segment
    slots: tuple[Slot, ...]
    rest: tuple[_Segment, ...]

    def encode(self, values: dict[Slot, bytes], out: list[bytes]) -> None:
        out.append(self.first.cores[0])
        pending = self.first.tails[0]
        for slot, segment in zip(self.slots, self.rest, strict=True):
            pending += values[slot]
            borrow = -len(pending) % 3
            if borrow > len(segment.raw):  # too short to realign: carry it whole
                pending += segment.raw
                continue
            pending += segment.raw[:borrow]
            out.append(b64_lines(pending))
            out.append(segment.cores[borrow])
            pending = segment.tails[borrow]
        out.append(b64_lines(pending))


@dataclass(frozen=True)
class MessageTemplate:
    """A variant serialised once: wire bytes, header slots and base64 body parts."""

    pieces: tuple[bytes | Slot | _Base64Part, ...]
    message_id_prefix: str
    # Whether the body carries __READER__ (per-reader tracking): only then is it signed.
    reader: bool = False

    def fill(self, values: dict[Slot, bytes]) -> bytes:
        out: list[bytes] = []
        for piece in self.pieces:
            if isinstance(piece, bytes):
                out.append(piece)
            elif isinstance(piece, Slot):
                out.append(values[piece])
            else:
                piece.encode(values, out)
        return b"".join(out)


class _Builder:
    """Collects the pieces of a message, merging adjacent bytes."""

    def __init__(self, placeholders: Placeholders) -> None:
        self.pieces: list[bytes | Slot | _Base64Part] = []
        self.pattern = placeholders.pattern

    def add(self, piece: bytes | Slot) -> None:
        if isinstance(piece, bytes) and self.pieces and isinstance(self.pieces[-1], bytes):
            self.pieces[-1] += piece
        else:
            self.pieces.append(piece)

    def body(self, kind: str, text: str) -> None:
        """A text part's content in canonical form (CRLF line ends, RFC 2045 §6.8),
        base64-encoded, its placeholders turned into slots."""
        data = _normalise_newlines(text).replace("\n", "\r\n")
        parts = self.pattern.split(data)  # text, name, text, name, …, text
        segments = [_Segment.of(p.encode("utf-8")) for p in parts[0::2]]
        slots = tuple(_BODY_SLOTS[(kind, name)] for name in parts[1::2])
        self.pieces.append(_Base64Part(segments[0], slots, tuple(segments[1:])))


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


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
        placeholders: Placeholders,
        envelope_from: str | None = None,
        verp: bool = False,
    ) -> None:
        self.placeholders = placeholders
        self.sender = sender
        self.list = mailing_list
        self.signer = signer
        self.base_url = base_url.rstrip("/")
        self.feedback_sender_id = feedback_sender_id
        self.clock = clock
        self.envelope_from = envelope_from or headers.ascii_address(sender.addr_spec)
        self.verp = verp
        self.domain = headers.ascii_address(sender.addr_spec).rpartition("@")[2]
        self._date_cache: tuple[int, bytes] = (-1, b"")

    # -- once per variant -----------------------------------------------------

    def template(
        self, edition: EditionMail, html_body: str, text_body: str, *, subject_prefix: str = ""
    ) -> MessageTemplate:
        """Wire bytes with slots. An empty ``html_body`` makes a text/plain message
        (the readers who chose text only)."""
        b = _Builder(self.placeholders)
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
        if html_body:
            self._alternative(b, html_body, text_body)
        else:
            b.add(b"Content-Type: text/plain; charset=utf-8\r\n")
            b.add(b"Content-Transfer-Encoding: base64\r\n\r\n")
            b.body("text", text_body)
        prefix = self.message_id_prefix(edition.edition_id, edition.schedule, edition.edition_date)
        slot = self.placeholders.mark("READER")
        reader = slot in html_body or slot in text_body
        return MessageTemplate(tuple(b.pieces), prefix, reader)

    def message_id_prefix(self, edition_id: int, schedule: str, edition_date: date) -> str:
        tag = self.signer.message_id_tag(edition_id, schedule)
        return f"{schedule}.{edition_date:%Y%m%d}.{tag}"

    def message_id(self, prefix: str, ident: object) -> str:
        """MAIL-RULES 2: unique per copy, stable for one (edition, reader); its MAC
        ties a returned report to it (issue 24)."""
        return f"<{self.signer.message_id(f'{prefix}.{ident}')}@{self.domain}>"

    @staticmethod
    def _alternative(b: _Builder, html_body: str, text_body: str) -> None:
        boundary = (
            "=_dg_" + hashlib.sha256((html_body + text_body).encode("utf-8")).hexdigest()[:24]
        )
        b.add(f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n\r\n'.encode())
        # RFC 2046 §5.1.4: the plain part first, the preferred (HTML) part last.
        for kind, body in (("plain", text_body), ("html", html_body)):
            b.add(
                f"--{boundary}\r\nContent-Type: text/{kind}; charset=utf-8\r\n"
                "Content-Transfer-Encoding: base64\r\n\r\n".encode("ascii")
            )
            b.body("text" if kind == "plain" else "html", body)
        b.add(f"--{boundary}--\r\n".encode("ascii"))

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
        rcpt = headers.envelope_address(recipient.email)
        unsub_token = self.signer.unsubscribe.sign(recipient.token_key)
        unsub_url = f"{self.base_url}/u/{unsub_token}"
        prefs_url = f"{self.base_url}/p/{self.signer.preferences.sign(recipient.token_key)}"
        ident = f"copy.{secrets.token_hex(8)}" if recipient.copy else recipient.subscriber_id
        message_id = self.message_id(template.message_id_prefix, ident)
        values = {
            Slot.DATE: self._date(),
            Slot.TO: headers.mailbox(recipient.name, recipient.email, "To"),
            Slot.MESSAGE_ID: message_id.encode("ascii"),
            Slot.UNSUB_HTTPS: unsub_url.encode("ascii"),
            Slot.UNSUB_MAILTO: f"unsubscribe+{unsub_token}@{self.domain}".encode("ascii"),
            Slot.HTML_UNSUB_URL: html.escape(unsub_url).encode("ascii"),
            Slot.HTML_PREFS_URL: html.escape(prefs_url).encode("ascii"),
            Slot.HTML_EMAIL: html.escape(recipient.email).encode("utf-8"),
            Slot.TEXT_UNSUB_URL: unsub_url.encode("ascii"),
            Slot.TEXT_PREFS_URL: prefs_url.encode("ascii"),
            Slot.TEXT_EMAIL: recipient.email.encode("utf-8"),
        }
        if template.reader:
            values[Slot.READER] = self.signer.reader.sign(recipient.token_key).encode("ascii")
        return Message(
            recipient,
            self.return_path(recipient),
            rcpt,
            message_id,
            template.fill(values),
            smtputf8=not rcpt.isascii(),
        )

    def return_path(self, recipient: Recipient) -> str:
        """VERP: ``bounces+TOKEN@domain`` names the delivery a bounce is about."""
        if not self.verp or recipient.delivery_id is None:
            return self.envelope_from
        local, _, domain = self.envelope_from.rpartition("@")
        return f"{local}+{self.signer.verp(recipient.delivery_id)}@{domain}"

    def _date(self) -> bytes:
        # One Date per second is exact enough and saves formatting per message.
        now = self.clock()
        second = int(now.timestamp())
        if self._date_cache[0] != second:
            self._date_cache = (second, format_datetime(now.replace(microsecond=0)).encode())
        return self._date_cache[1]
