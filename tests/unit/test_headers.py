from __future__ import annotations

import re
from email.header import decode_header

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.errors import ComposeError
from digest.headers import (
    ascii_address,
    clean_text,
    encoded_words,
    envelope_address,
    mailbox,
    phrase,
    unstructured,
)

ADJACENT = re.compile(rb"\?=(?!\s)=\?")  # MAIL-RULES 7: must never match


def decoded(value: str) -> str:
    """RFC 2047 decoding (the legacy decoder follows §6.2 on white space)."""
    out = []
    for chunk, charset in decode_header(value):
        out.append(chunk.decode(charset or "ascii") if isinstance(chunk, bytes) else chunk)
    return "".join(out)


def check_lines(raw: bytes) -> None:
    assert raw.endswith(b"\r\n")
    for line in raw[:-2].split(b"\r\n"):
        assert len(line) <= 76, line
        assert b"\n" not in line and b"\r" not in line
    assert not ADJACENT.search(raw)
    for word in re.findall(rb"=\?[^?]+\?[bBqQ]\?[^?]*\?=", raw):
        assert len(word) <= 75


@settings(max_examples=300)
@given(st.text(min_size=1, max_size=300))
def test_encoded_words_decode_back_exactly(text: str) -> None:
    text = clean_text(text, 300)
    raw = unstructured("Subject", text)
    check_lines(raw)
    value = raw.decode("ascii").removeprefix("Subject: ").rstrip("\r\n")
    assert decoded(value.replace("\r\n", "")) == text


@settings(max_examples=200)
@given(st.text(max_size=120))
def test_untrusted_names_never_break_a_header(name: str) -> None:
    raw = mailbox(name, "reader@example.ru", "To")
    check_lines(raw)
    assert raw.startswith(b"To: ") and raw.count(b"\r\n") == raw.count(b"\r\n ") + 1
    assert (
        raw.rstrip(b"\r\n").endswith(b"reader@example.ru>") or raw == b"To: reader@example.ru\r\n"
    )


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Иван\r\nBcc: evil@example.com", "Иван Bcc: evil@example.com"),
        ("  двойные   пробелы \t", "двойные пробелы"),
        ("нуль\x00байт", "нуль байт"),
        ("разделитель\u2028строк", "разделитель строк"),
        ("\u202eперевёрнутый", "перевёрнутый"),
        ("семья 👨\u200d👩\u200d👧", "семья 👨\u200d👩\u200d👧"),
    ],
)
def test_clean_text(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean


def test_long_names_are_cut() -> None:
    assert len(clean_text("Щ" * 500, 78)) == 78


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Ivan Petrov", "Ivan Petrov"),
        ('Petrov, "Ivan"', '"Petrov, \\"Ivan\\""'),
        ("=?utf-8?b?SGFjaw==?=", None),  # looks encoded: must be encoded itself
    ],
)
def test_phrases(name: str, expected: str | None) -> None:
    shown = phrase(name, 70)
    if expected is None:
        assert shown.startswith("=?utf-8?b?") and decoded(shown) == name
    else:
        assert shown == expected


def test_first_word_fits_after_the_header_name() -> None:
    words = encoded_words("Ж" * 100, 76 - len("Subject: "))
    assert len("Subject: " + words[0]) <= 76


def test_words_break_after_spaces_when_they_can() -> None:
    words = encoded_words("Константин Константинопольский Щедрин-Салтыков", 60)
    pieces = [decoded(w) for w in words]
    assert all(p.endswith(" ") for p in pieces[:-1])


@pytest.mark.parametrize(
    ("address", "wire"),
    [
        ("reader@example.ru", "reader@example.ru"),
        ("reader@пример.рф", "reader@xn--e1afmkfd.xn--p1ai"),
        ("reader@bücher.example", "reader@xn--bcher-kva.example"),
    ],
)
def test_addresses_go_out_as_a_labels(address: str, wire: str) -> None:
    assert ascii_address(address) == wire


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("читатель@example.ru", "not ASCII"),
        ("no-at-sign", "not an address"),
        ("a@b.ru\r\nRCPT TO:<x@y.ru>", "cannot be in an address"),
    ],
)
def test_our_own_addresses_must_be_ascii(address: str, reason: str) -> None:
    with pytest.raises(ComposeError, match=reason):
        ascii_address(address)


@pytest.mark.parametrize(
    ("address", "wire"),
    [
        ("reader@example.ru", "reader@example.ru"),
        ("иван@пример.рф", "иван@xn--e1afmkfd.xn--p1ai"),  # RFC 6531: UTF-8 local part
        ("читатель@example.ru", "читатель@example.ru"),
    ],
)
def test_a_readers_envelope_address_may_be_utf8(address: str, wire: str) -> None:
    assert envelope_address(address) == wire


def test_a_utf8_mailbox_is_written_as_given_in_the_header() -> None:
    line = mailbox("Иван", "иван@пример.рф", "To")
    assert line.decode("utf-8").endswith(" <иван@пример.рф>\r\n")
    assert line.startswith(b"To: =?utf-8?")  # the name stays an encoded word
    assert mailbox("Иван", "ivan@пример.рф", "To").isascii()
