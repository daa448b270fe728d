"""DKIM (RFC 6376) for composed messages, with dkimpy, in a process pool.

dkimpy's RSA step is pure Python (about 5 ms for a 2048-bit key), so signing on
the event loop would cap a send near 180 messages/s per core; a pool of
processes signs while the loop keeps sending. The key is handed to each
process once, at start. High-volume senders can leave signing to the MTA
(OpenDKIM) by not setting DIGEST_DKIM_KEY_FILE.
"""

from __future__ import annotations

import asyncio
import base64
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from digest.compose import Message
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


@dataclass(frozen=True)
class DkimKey:
    selector: str
    domain: str
    private_pem: bytes

    @classmethod
    def load(cls, path: Path, selector: str, domain: str) -> DkimKey:
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"DIGEST_DKIM_KEY_FILE: cannot read {path}: {exc.strerror}") from None
        try:
            serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"DIGEST_DKIM_KEY_FILE: {path} is not a PEM private key: {exc}"
            ) from None
        return cls(selector, domain, pem)

    def sign(self, data: bytes) -> bytes:
        """The message with its DKIM-Signature header in front."""
        header = dkim.sign(
            data,
            self.selector.encode("ascii"),
            self.domain.encode("ascii"),
            self.private_pem,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=list(SIGNED_HEADERS),
        )
        return bytes(header) + data

    def dns_record(self) -> str:
        """The TXT record that publishes this key's public half."""
        key = serialization.load_pem_private_key(self.private_pem, password=None)
        return _record(key.public_key())


def _record(public_key: Any) -> str:
    public = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode('ascii')}"


def keygen(path: Path, selector: str, domain: str, bits: int = 2048) -> str:
    """Write a new RSA key (mode 0600) and return the DNS TXT record to publish."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return _record(key.public_key())


_KEY: DkimKey | None = None


def _start(key: DkimKey) -> None:
    global _KEY
    _KEY = key


def _sign_here(data: bytes) -> bytes:
    assert _KEY is not None
    return _KEY.sign(data)


class DkimSigner:
    """Signs messages in a pool of processes (one per core by default)."""

    def __init__(self, key: DkimKey, processes: int | None = None) -> None:
        self.key = key
        # spawn, not fork: the sender has threads (the database thread) by now.
        self.pool = ProcessPoolExecutor(
            max_workers=processes or os.cpu_count() or 1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start,
            initargs=(key,),
        )

    async def sign(self, message: Message) -> Message:
        loop = asyncio.get_running_loop()
        data = await loop.run_in_executor(self.pool, _sign_here, message.data)
        return replace(message, data=data)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
