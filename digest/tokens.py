"""Signed tokens for the links in every message (unsubscribe, preferences).

A token carries the subscriber's random ``token_key`` (never an id or an
address, MAIL-RULES 14) and an HMAC-SHA256 signature truncated to 128 bits,
so ``unsubscribe+TOKEN@domain`` stays within the 64-octet local part of
RFC 5321 §4.5.3.1.1. The list is part of the salt: a token for one list
does not unsubscribe from another.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable
from typing import Any

from itsdangerous import BadSignature, Signer
from itsdangerous.signer import HMACAlgorithm

from digest.errors import DigestError

SIGNATURE_BYTES = 16


class BadToken(DigestError):
    """The link is broken or was tampered with."""


class TruncatedHMAC(HMACAlgorithm):
    """HMAC-SHA256 cut to 128 bits: still far beyond guessing, short enough for a mailto."""

    def __init__(self) -> None:
        super().__init__(hashlib.sha256)

    def get_signature(self, key: bytes, value: bytes) -> bytes:
        return super().get_signature(key, value)[:SIGNATURE_BYTES]


def new_token_key() -> str:
    """16 lowercase base32 characters, 80 random bits."""
    return base64.b32encode(secrets.token_bytes(10)).decode("ascii").lower()


class LinkSigner:
    """Signs with itsdangerous's format and checks with itsdangerous. Signing is on
    the send path (two tokens per message), so the derived keys are computed
    once here instead of on every ``Signer.sign`` call; the tokens are identical."""

    def __init__(self, secret: bytes, list_key: str) -> None:
        self._secret = secret
        self._unsubscribe = self._signer(f"unsubscribe:{list_key}")
        self._preferences = self._signer(f"preferences:{list_key}")
        self._unsubscribe_key = self._unsubscribe.derive_key()
        self._preferences_key = self._preferences.derive_key()
        self._algorithm = TruncatedHMAC()

    def _signer(self, salt: str) -> Signer:
        return Signer(self._secret, salt=salt, algorithm=TruncatedHMAC())

    def _sign(self, key: bytes, value: str) -> str:
        # Signer.sign, minus its per-call key derivation.
        mac = self._algorithm.get_signature(key, value.encode("ascii"))
        return f"{value}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode('ascii')}"

    def unsubscribe(self, token_key: str) -> str:
        return self._sign(self._unsubscribe_key, token_key)

    def preferences(self, token_key: str) -> str:
        return self._sign(self._preferences_key, token_key)

    def verify_unsubscribe(self, token: str) -> str:
        return self._verify(self._unsubscribe, token)

    def verify_preferences(self, token: str) -> str:
        return self._verify(self._preferences, token)

    @staticmethod
    def _verify(signer: Signer, token: str) -> str:
        try:
            return signer.unsign(token).decode("ascii")
        except (BadSignature, UnicodeError, ValueError):
            raise BadToken() from None

    def verp(self, delivery_id: int) -> str:
        """The token in ``bounces+TOKEN@domain``: the delivery id in base 36 and a
        50-bit keyed hash, lowercase only, because some MTAs fold the local part's case."""
        ident = _base36(delivery_id)
        return f"{ident}-{self._verp_mac(ident)}"

    def verify_verp(self, token: str) -> int:
        ident, _, mac = token.lower().partition("-")
        if not ident or not hmac.compare_digest(mac, self._verp_mac(ident)):
            raise BadToken("not a return-path token of ours")
        return int(ident, 36)

    def _verp_mac(self, ident: str) -> str:
        digest = hmac.new(self._secret, b"verp:" + ident.encode("ascii"), hashlib.sha256).digest()
        return base64.b32encode(digest[:10]).decode("ascii").lower()[:10]

    def message_id_tag(self, *parts: Any) -> str:
        """A short keyed hash: Message-IDs stay unique across installations sharing ids."""
        text = ":".join(str(p) for p in parts).encode("utf-8")
        digest = hmac.new(self._secret, b"message-id:" + text, hashlib.sha256).digest()
        return base64.b32encode(digest[:5]).decode("ascii").lower()


def unsubscribe_key(signers: Iterable[LinkSigner], token: str) -> str | None:
    """The subscriber key of an unsubscribe token signed for any of the lists."""
    return _key_of(token, [s.verify_unsubscribe for s in signers])


def preferences_key(signers: Iterable[LinkSigner], token: str) -> str | None:
    """The subscriber key of a preferences token signed for any of the lists."""
    return _key_of(token, [s.verify_preferences for s in signers])


def _key_of(token: str, checks: list[Callable[[str], str]]) -> str | None:
    for check in checks:
        try:
            return check(token)
        except BadToken:
            continue
    return None


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        n, r = divmod(n, 36)
        text = digits[r] + text
        if n == 0:
            return text
