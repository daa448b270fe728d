"""Composed messages, parsed back with email.parser (policy default):
MAIL-RULES.md §Headers 1–9 and §Body 18–21."""

from __future__ import annotations

import base64
import email
import email.policy
import email.utils
import re
from datetime import UTC, date, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.audience.lists import MailingList
from digest.compose import (
    Composer,
    EditionMail,
    MessageTemplate,
    Placeholders,
    Recipient,
    Slot,
    _Base64Part,
    _Segment,
)
from digest.errors import ComposeError
from digest.render import Renderer
from digest.tokens import LinkSigner
from tests.support.factories import edition

NOW = datetime(2026, 11, 25, 4, 0, 7, tzinfo=UTC)
LIST = MailingList(
    key="daily", name="Новости ВПК", list_id="daily.digest.vpk.example.ru", msgtype="dailydigest"
)
TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
MAIL = EditionMail(41, "daily", date(2026, 11, 25), "Новости ВПК за 25 ноября 2026")
SLOTS = Placeholders(b"k" * 32)


@pytest.fixture(scope="module")
def rendered() -> tuple[str, str]:
    out = Renderer(TEMPLATES, SLOTS).render(edition())
    return out.html, out.text


@pytest.fixture
def composer() -> Composer:
    return Composer(
        sender=Address("Новости ВПК", "digest", "vpk.example.ru"),
        mailing_list=LIST,
        signer=LinkSigner(b"k" * 32, "daily"),
        base_url="https://digest.vpk.example.ru",
        feedback_sender_id="vpkdigest",
        clock=lambda: NOW,
        placeholders=SLOTS,
    )


@pytest.fixture
def template(composer: Composer, rendered: tuple[str, str]) -> MessageTemplate:
    return composer.template(MAIL, *rendered)


def reader(
    n: int = 7, name: str | None = "Иван Петров", email_: str = "ivan@example.ru"
) -> Recipient:
    return Recipient(n, email_, name, f"key{n:013d}")


def parsed(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_one_of_each_required_header(composer: Composer, template: MessageTemplate) -> None:
    msg = parsed(composer.message(template, reader()).data)
    for name in (
        "Date",
        "From",
        "To",
        "Subject",
        "Message-ID",
        "MIME-Version",
        "List-Id",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
        "Precedence",
        "Auto-Submitted",
        "X-Mailru-Msgtype",
        "Feedback-ID",
    ):
        assert len(msg.get_all(name) or []) == 1, name
    assert email.utils.parsedate_to_datetime(msg["Date"]) == NOW.replace(microsecond=0)
    assert len(msg["From"].addresses) == 1
    assert msg["From"].addresses[0].addr_spec == "digest@vpk.example.ru"
    assert msg["From"].addresses[0].display_name == "Новости ВПК"
    assert msg["To"].addresses[0].addr_spec == "ivan@example.ru"
    assert msg["To"].addresses[0].display_name == "Иван Петров"
    assert msg["Subject"] == "Новости ВПК за 25 ноября 2026"
    assert msg["MIME-Version"] == "1.0"


def test_message_id_is_stable_per_pair_and_unique_per_copy(
    composer: Composer, template: MessageTemplate
) -> None:
    first = composer.message(template, reader(7)).message_id
    again = composer.message(template, reader(7)).message_id
    other = composer.message(template, reader(8)).message_id
    assert first == again != other
    assert re.fullmatch(r"<[A-Za-z0-9.\-]+@vpk\.example\.ru>", first)
    other_edition = composer.template(
        EditionMail(42, "daily", date(2026, 11, 26), "x"), "<p>x</p>", "x"
    )
    assert composer.message(other_edition, reader(7)).message_id != first
    assert parsed(composer.message(template, reader(7)).data)["Message-ID"] == first


def test_list_headers(composer: Composer, template: MessageTemplate) -> None:
    data = composer.message(template, reader()).data
    msg = parsed(data)
    uris = re.findall(r"<([^>]+)>", msg["List-Unsubscribe"])
    assert len(uris) == 2
    assert uris[0].startswith("https://digest.vpk.example.ru/u/")
    assert re.fullmatch(r"mailto:unsubscribe\+[^@]{1,52}@vpk\.example\.ru", uris[1])
    local = uris[1].removeprefix("mailto:").split("@")[0]
    assert len(local) <= 64
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["List-Id"] == "Новости ВПК <daily.digest.vpk.example.ru>"
    assert b"<daily.digest.vpk.example.ru>" in data  # the id itself is never encoded
    assert msg["Precedence"] == "bulk"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert re.fullmatch(r"[A-Za-z0-9]{1,32}", msg["X-Mailru-Msgtype"])
    parts = msg["Feedback-ID"].split(":")
    assert len(parts) == 4 and 5 <= len(parts[3]) <= 15
    # Nothing per message or per recipient in the FBL id.
    assert composer.message(template, reader(8)).data.count(msg["Feedback-ID"].encode()) == 1
    assert parsed(composer.message(template, reader(8)).data)["Feedback-ID"] == msg["Feedback-ID"]


def test_wire_format(composer: Composer, template: MessageTemplate) -> None:
    data = composer.message(template, reader(name="Ёлкин-Палкин 🚀" * 4)).data
    assert b"\n" not in data.replace(b"\r\n", b"")  # CRLF only
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    assert not re.search(rb"\?=(?!\s)=\?", data)
    head = data.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        if b"=?" in line:
            assert len(line) <= 76
    assert data.isascii()  # 7-bit clean: QP bodies, encoded headers


def test_mime_structure_text_first_html_last(composer: Composer, template: MessageTemplate) -> None:
    msg = parsed(composer.message(template, reader()).data)
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)


def test_bodies_are_the_rendered_variant_with_the_readers_links(
    composer: Composer, template: MessageTemplate, rendered: tuple[str, str]
) -> None:
    message = composer.message(template, reader())
    msg = parsed(message.data)
    unsub = re.findall(r"<(https://[^>]+)>", msg["List-Unsubscribe"])[0]
    # Text on the wire has CRLF line ends (RFC 2045 canonical form); compare lines.
    html = msg.get_body(("html",)).get_content().replace("\r\n", "\n")
    text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
    prefs = re.search(r'href="(https://digest\.vpk\.example\.ru/p/[^"]+)"', html).group(1)

    def personal(body: str) -> str:
        return (
            body.replace(SLOTS.mark("UNSUB_URL"), unsub)
            .replace(SLOTS.mark("PREFS_URL"), prefs)
            .replace(SLOTS.mark("EMAIL"), "ivan@example.ru")
        )

    assert html == personal(rendered[0])
    assert text == personal(rendered[1])
    assert f"Отписаться: {unsub}" in text
    assert unsub.encode() in message.data  # also in the header, unbroken


def test_each_subscriber_gets_their_own_links(
    composer: Composer, template: MessageTemplate
) -> None:
    a = parsed(composer.message(template, reader(1)).data)
    b = parsed(composer.message(template, reader(2)).data)
    assert a["List-Unsubscribe"] != b["List-Unsubscribe"]
    assert "key0000000000001" in a.get_body(("html",)).get_content()


def test_a_hostile_name_adds_no_header(composer: Composer, template: MessageTemplate) -> None:
    name = "Иван\r\nBcc: victim@example.com\r\n\r\n<script>" + "Щ" * 500
    msg = parsed(composer.message(template, reader(name=name)).data)
    assert msg.get_all("Bcc") is None
    assert len(msg.get_all("To")) == 1
    assert msg["To"].addresses[0].addr_spec == "ivan@example.ru"
    assert "Bcc: victim@example.com" in msg["To"].addresses[0].display_name


def test_a_cyrillic_mailbox_gets_the_one_utf8_message(
    composer: Composer, template: MessageTemplate
) -> None:
    """RFC 6531/6532 for that message only: envelope and To: in UTF-8 (domain as
    A-labels on the envelope); a reader beside it still gets a 7-bit message."""
    message = composer.message(template, reader(email_="иван@пример.рф"))
    assert message.smtputf8 and message.envelope_to == "иван@xn--e1afmkfd.xn--p1ai"
    head = message.data.split(b"\r\n\r\n", 1)[0].decode("utf-8")
    assert "<иван@пример.рф>" in head
    fields = re.split(r"\r\n(?![ \t])", head)  # one string per header field, unfolded
    assert [f for f in fields if not f.isascii()] == [f for f in fields if f.startswith("To:")]
    plain = composer.message(template, reader(email_="ivan@пример.рф"))
    assert not plain.smtputf8 and plain.data.isascii()
    with pytest.raises(ComposeError, match="not an address"):
        composer.message(template, reader(email_="no-at-sign"))


def test_idn_domains_are_a_labels_on_the_wire(
    composer: Composer, template: MessageTemplate
) -> None:
    message = composer.message(template, reader(email_="ivan@пример.рф"))
    assert message.envelope_to == "ivan@xn--e1afmkfd.xn--p1ai"
    assert parsed(message.data)["To"].addresses[0].domain == "xn--e1afmkfd.xn--p1ai"


def test_subject_prefix_for_test_copies(composer: Composer, rendered: tuple[str, str]) -> None:
    template = composer.template(MAIL, *rendered, subject_prefix="[ТЕСТ] ")
    assert parsed(composer.message(template, reader()).data)["Subject"].startswith("[ТЕСТ] Новости")


@settings(max_examples=400, deadline=None)
@given(
    segments=st.lists(st.binary(max_size=200), min_size=1, max_size=6),
    values=st.lists(st.binary(max_size=90), min_size=5, max_size=5),
)
def test_base64_splicing_decodes_to_the_exact_concatenation(
    segments: list[bytes], values: list[bytes]
) -> None:
    slots = [
        Slot.HTML_UNSUB_URL,
        Slot.HTML_PREFS_URL,
        Slot.HTML_EMAIL,
        Slot.TEXT_EMAIL,
        Slot.TEXT_PREFS_URL,
    ][: len(segments) - 1]
    part = _Base64Part(
        _Segment.of(segments[0]), tuple(slots), tuple(_Segment.of(s) for s in segments[1:])
    )
    given_values = dict(zip(slots, values, strict=False))
    out: list[bytes] = []
    part.encode(given_values, out)
    wire = b"".join(out)
    assert all(len(line) <= 76 for line in wire.split(b"\r\n"))
    expected = segments[0] + b"".join(
        given_values[s] + seg for s, seg in zip(slots, segments[1:], strict=True)
    )
    assert base64.b64decode(wire.replace(b"\r\n", b""), validate=True) == expected
