"""DKIM (RFC 6376) for composed messages: relaxed/relaxed canonicalisation here,
the signature by OpenSSL through ``cryptography``; RSA-SHA256 and Ed25519-SHA256
(RFC 8463), both at once when both keys are set (dual signatures: receivers that
know Ed25519 check it, the rest check RSA).

OpenSSL's RSA-2048 step is 0.25–0.9 ms on the machines measured against
dkimpy's ~5 ms in pure Python, and the canonical body is hashed once for every
signature. A send signs each message in its loop's thread as it is composed
(``DkimSigner``: threads beside the loop cost more CPU than they saved).
dkimpy stays: the tests and `digest doctor` verify every signature with it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from digest.compose import Message
from digest.config.parts import DkimPart
from digest.errors import ConfigError

# MAIL-RULES 10: what a receiver must be able to trust.
SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"list-id",
)
KeyType = Literal["rsa", "ed25519"]

_WSP_RUN = re.compile(rb"[ \t]+")
_WSP_EOL = re.compile(rb"[ \t]+\r\n")
_FOLD = re.compile(rb"\r\n(?=[ \t])")


def relaxed_body(body: bytes) -> bytes:
    """RFC 6376 §3.4.4: no whitespace at line ends, runs of it made one space,
    no empty lines at the end, and a non-empty body ends with one CRLF."""
    if not _canonical_already(body):
        body = _WSP_RUN.sub(b" ", _WSP_EOL.sub(b"\r\n", body))
    body = body.rstrip(b"\r\n")
    return body + b"\r\n" if body else b""


def body_hash(data: bytes, start: int) -> bytes:
    """SHA-256 of the relaxed body that begins at ``start`` in ``data``. A body
    already canonical (ours: base64 lines) is hashed where it lies: copying its
    60 KB to split it off, to strip its end and to add the last CRLF was 18 µs
    of a 340 µs signature on a CPU that signs RSA-2048 in 250 (issue 31 §6)."""
    if not _canonical_already(data, start):
        return hashlib.sha256(relaxed_body(data[start:])).digest()
    end = len(data)
    while end > start and data[end - 1] in b"\r\n":  # what rstrip(b"\r\n") drops
        end -= 1
    digest = hashlib.sha256(memoryview(data)[start:end])
    if end > start:
        digest.update(b"\r\n")
    return digest.digest()


def _canonical_already(body: bytes, start: int = 0) -> bool:
    """No tab, no two spaces in a row, no space before a line end (from ``start``).
    Our bodies are base64 lines (no spaces at all) and a few MIME part headers, so
    hopping from space to space with memchr costs microseconds where a search for
    "  " or a regex pass over 60 KB costs a tenth of a millisecond."""
    if body.find(b"\t", start) != -1:
        return False
    at = body.find(b" ", start)
    while at != -1:
        if body[at + 1 : at + 2] in (b" ", b"\r", b""):
            return False
        at = body.find(b" ", at + 1)
    return True


def relaxed_header(name: bytes, value: bytes) -> bytes:
    """RFC 6376 §3.4.2: name lowercased, value unfolded, whitespace runs made one
    space and trimmed at both ends."""
    if b"\r\n" in value:  # unfolded in C: a fold is CRLF before white space
        value = value.replace(b"\r\n ", b" ").replace(b"\r\n\t", b"\t")
    if b"\r\n" in value or b"\t" in value or b"  " in value:  # else both subs change nothing
        value = _WSP_RUN.sub(b" ", _FOLD.sub(b"", value))
    return name.strip().lower() + b":" + value.strip(b" \t\r\n") + b"\r\n"


def _signed_fields(data: bytes) -> tuple[list[bytes], bytes, int]:
    """(the names of the SIGNED_HEADERS the message has, their fields relaxed and
    joined as the signature covers them, where the body begins). The header is
    unfolded whole first, as relaxed canonicalisation would unfold each value (two
    passes in C): a field is then one line, split at its first colon; the last
    field of a name is the one signed (RFC 6376 §5.4.2)."""
    end = data.find(b"\r\n\r\n")
    head, start = (data, len(data)) if end == -1 else (data[:end], end + 4)
    present: dict[bytes, bytes] = {}
    for line in head.replace(b"\r\n ", b" ").replace(b"\r\n\t", b"\t").split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if colon:
            present[name.strip().lower()] = value
    names = [n for n in SIGNED_HEADERS if n in present]
    return names, b"".join(relaxed_header(n, present[n]) for n in names), start


@dataclass(frozen=True)
class DkimKey:
    selector: str
    domain: str
    private_pem: bytes

    @classmethod
    def load(
        cls, path: Path, selector: str, domain: str, setting: str = "DIGEST_DKIM_KEY_FILE"
    ) -> DkimKey:
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{setting}: cannot read {path}: {exc.strerror}") from None
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{setting}: {path} is not a PEM private key: {exc}") from None
        if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
            raise ConfigError(f"{setting}: {path}: a DKIM key is RSA or Ed25519")
        return cls(selector, domain, pem)

    @property
    def type(self) -> KeyType:
        key = serialization.load_pem_private_key(self.private_pem, password=None)
        return "ed25519" if isinstance(key, ed25519.Ed25519PrivateKey) else "rsa"

    def sign(self, data: bytes) -> bytes:
        """The message with its DKIM-Signature header in front."""
        return Signer([self]).sign(data)

    def dns_record(self) -> str:
        """The TXT record that publishes this key's public half."""
        key = serialization.load_pem_private_key(self.private_pem, password=None)
        return _record(key.public_key())


class Signer:
    """Signs with one or more keys; the keys are parsed once."""

    def __init__(self, keys: Sequence[DkimKey]) -> None:
        self.keys = [
            (k, serialization.load_pem_private_key(k.private_pem, password=None)) for k in keys
        ]

    def sign(self, data: bytes) -> bytes:
        names, signed, start = _signed_fields(data)
        bh = base64.b64encode(body_hash(data, start))
        headers = b""
        for key, private in self.keys:
            headers += self._one(key, private, names, signed, bh)
        return headers + data

    @staticmethod
    def _one(key: DkimKey, private: Any, names: list[bytes], signed: bytes, bh: bytes) -> bytes:
        algorithm = (
            b"ed25519-sha256" if isinstance(private, ed25519.Ed25519PrivateKey) else (b"rsa-sha256")
        )
        value = (
            b" v=1; a=" + algorithm + b"; c=relaxed/relaxed; d=" + key.domain.encode("ascii")
            + b"; s=" + key.selector.encode("ascii") + b";\r\n h=" + b":".join(names)
            + b";\r\n bh=" + bh + b";\r\n b="
        )  # fmt: skip
        # §3.7: the signature covers the signed fields, then this header with an
        # empty b=, canonicalised and without its final CRLF.
        data = signed + relaxed_header(b"DKIM-Signature", value)[:-2]
        if isinstance(private, ed25519.Ed25519PrivateKey):
            # RFC 8463 §3: Ed25519 (pure) signs the SHA-256 hash of that data.
            signature = private.sign(hashlib.sha256(data).digest())
        else:
            signature = private.sign(data, padding.PKCS1v15(), hashes.SHA256())
        b = base64.b64encode(signature)
        folded = b"\r\n ".join(b[i : i + 72] for i in range(0, len(b), 72))
        return b"DKIM-Signature:" + value + folded + b"\r\n"


def _record(public_key: Any) -> str:
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode('ascii')}"
    public = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode('ascii')}"


def keygen(path: Path, selector: str, domain: str, bits: int = 2048, kind: KeyType = "rsa") -> str:
    """Write a new RSA or Ed25519 key (mode 0600) and return the DNS TXT record."""
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if kind == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
        form = serialization.PrivateFormat.PKCS8
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        form = serialization.PrivateFormat.TraditionalOpenSSL
    pem = key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return _record(key.public_key())


def dkim_keys(dkim: DkimPart) -> list[DkimKey]:
    """The keys the settings name: none, RSA, or RSA and Ed25519 (dual signatures;
    Ed25519 alone would go unverified at Gmail and Mail.ru, which do not know it)."""
    if dkim.ed25519_key_file is not None and dkim.key_file is None:
        raise ConfigError("DIGEST_DKIM_ED25519_KEY_FILE needs DIGEST_DKIM_KEY_FILE (RSA) too")
    keys = []
    if dkim.key_file is not None:
        keys.append(DkimKey.load(dkim.key_file, dkim.selector, dkim.domain))
        if keys[0].type != "rsa":
            raise ConfigError(f"DIGEST_DKIM_KEY_FILE: {dkim.key_file} is not an RSA key")
    if dkim.ed25519_key_file is not None:
        path = dkim.ed25519_key_file
        setting = "DIGEST_DKIM_ED25519_KEY_FILE"
        keys.append(DkimKey.load(path, dkim.ed25519_selector, dkim.domain, setting))
        if keys[-1].type != "ed25519":
            raise ConfigError(f"DIGEST_DKIM_ED25519_KEY_FILE: {path} is not an Ed25519 key")
    return keys


class DkimSigner:
    """Signs a send's messages in the send loop's own thread, each as it is composed.

    A pool of signing threads beside the loop cost more than it gave (issue 31
    §6, `bench/send.py --dkim` on a CPU that signs RSA-2048 in 260 µs): the
    hand-off and the GIL between the loop and two threads added 80–190 µs of CPU
    to each message, and no rate came of it, since the signer's Python steps wait
    on the GIL the loop holds: one sender process sent 1 050–1 160 msg/s with the
    threads and 1 130–1 140 without, two sender processes 1 030–1 160 and
    1 150–1 330. A sender process is one core's worth of work; DIGEST_SENDERS
    (or one `digest worker` per core) is how a send uses the others."""

    def __init__(self, keys: Sequence[DkimKey]) -> None:
        self.signer = Signer(keys)

    def sign(self, message: Message) -> Message:
        return replace(message, data=self.signer.sign(message.data))
