"""DKIM canonicalisation (RFC 6376 §3.4) is ours now: it must agree with dkimpy's,
byte for byte, on whatever a body or a header holds."""

from __future__ import annotations

import hashlib
import re

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from dkim.canonicalization import Relaxed
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.dkim import (
    SIGNED_HEADERS,
    DkimKey,
    _record,
    _signed_fields,
    body_hash,
    relaxed_body,
    relaxed_header,
)

PIECES = st.sampled_from([b"a", b"Z", b" ", b"\t", b"\r\n", b"  ", b"QUJD", b"\xd0\x96"])


@given(st.lists(PIECES, max_size=40).map(b"".join))
def test_relaxed_body_is_dkimpys(body: bytes) -> None:
    assert relaxed_body(body) == Relaxed.canonicalize_body(body)


@given(st.lists(PIECES, max_size=20).map(b"".join))
def test_relaxed_header_is_dkimpys(value: bytes) -> None:
    value = value.replace(b"\r\n", b"\r\n ")  # a folded value: CRLF before white space
    ((name, canonical),) = Relaxed.canonicalize_headers([(b"Subject", value)])
    assert relaxed_header(b"Subject", value) == name + b":" + canonical


@given(st.lists(PIECES, max_size=40).map(b"".join))
def test_a_body_hashed_where_it_lies_is_the_relaxed_bodys_hash(body: bytes) -> None:
    """The signer hashes the body inside the message, without copying it out."""
    head = b"Subject: x\r\nFrom: a@b.example\r\n\r\n"
    expected = hashlib.sha256(Relaxed.canonicalize_body(body)).digest()
    assert body_hash(head + body, len(head)) == expected


# One key for every example: a 2048-bit key takes longer to make than to use.
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_PEM = _KEY.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.TraditionalOpenSSL,
    serialization.NoEncryption(),
)
_VALUE = st.lists(
    st.sampled_from([b"a", b"Z", b" ", b"\t", b"  ", b"=?utf-8?b?0JY=?=", b"\r\n ", b"\r\n\t"]),
    min_size=1,
    max_size=12,
).map(lambda parts: b"x" + b"".join(parts))
# From once, first: a message has one author.
_NAME = st.sampled_from([*SIGNED_HEADERS[1:], b"Content-Type", b"X-Other"]).flatmap(
    lambda name: st.sampled_from([name, name.upper(), name.title()])
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_NAME, _VALUE), min_size=1, max_size=12))
def test_any_header_folded_tabbed_or_repeated_is_signed_as_dkimpy_verifies(
    fields: list[tuple[bytes, bytes]],
) -> None:
    """The header is unfolded whole before its fields are read: whatever folds,
    tabs, runs of spaces, cases and repeated names it holds, the signature verifies."""
    fields = [(n, v) for n, v in fields if not re.search(rb"\r\n[ \t]*(\r\n|$)", v + b"\r\n")]
    message = b"".join(
        n + b":" + v + b"\r\n" for n, v in [(b"From", b" a@vpk.example.ru"), *fields]
    )
    message += b"\r\nQUJD\r\nREVG\r\n"
    signed = DkimKey(selector="s", domain="vpk.example.ru", private_pem=_PEM).sign(message)
    record = _record(_KEY.public_key()).encode()
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: record)


def test_a_name_with_white_space_before_its_colon_is_still_signed() -> None:
    """Obsolete syntax (RFC 5322 §4.5.3: white space before the colon): its fields
    are found and signed all the same."""
    message = b"From: a@vpk.example.ru\r\nSubject :  x\r\nTo\t: b@vpk.example.ru\r\n\r\nQUJD\r\n"
    names, signed, start = _signed_fields(message)
    assert names == [b"from", b"to", b"subject"]
    assert signed == b"from:a@vpk.example.ru\r\nto:b@vpk.example.ru\r\nsubject:x\r\n"
    assert message[start:] == b"QUJD\r\n"
