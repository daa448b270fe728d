"""DKIM canonicalisation (RFC 6376 §3.4) is ours now: it must agree with dkimpy's,
byte for byte, on whatever a body or a header holds."""

from __future__ import annotations

import hashlib

from dkim.canonicalization import Relaxed
from hypothesis import given
from hypothesis import strategies as st

from digest.dkim import body_hash, relaxed_body, relaxed_header

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
