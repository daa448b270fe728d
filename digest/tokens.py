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
from functools import partial
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, Signer, TimestampSigner
from itsdangerous.signer import HMACAlgorithm

from digest.errors import DigestError

SIGNATURE_BYTES = 16


class BadToken(DigestError):
    """The link is broken or was tampered with."""


class ExpiredToken(BadToken):
    """The link was good once and is too old now."""


class TruncatedHMAC(HMACAlgorithm):
    """HMAC-SHA256 cut to 128 bits: still far beyond guessing, short enough for a mailto."""

    def __init__(self) -> None:
        super().__init__(hashlib.sha256)

    def get_signature(self, key: bytes, value: bytes) -> bytes:
        return super().get_signature(key, value)[:SIGNATURE_BYTES]


def new_token_key() -> str:
    """16 lowercase base32 characters, 80 random bits."""
    return new_token_keys(1)[0]


def new_token_keys(count: int) -> list[str]:
    """``count`` keys as ``new_token_key`` makes them, drawn at once (an import's
    chunk): ten random bytes are exactly sixteen base32 characters, so one
    encoding of the whole draw cut every sixteen is the same as one at a time."""
    text = base64.b32encode(secrets.token_bytes(10 * count)).decode("ascii").lower()
    return [text[i : i + 16] for i in range(0, 16 * count, 16)]


class KeyToken:
    """One kind of token over a reader's random ``token_key`` (unsubscribe,
    preferences, reader). Signed with itsdangerous's format and checked by
    itsdangerous; signing is on the send path (two or three tokens a message), so
    the derived key is computed once here, not on every ``Signer.sign``."""

    def __init__(self, secret: bytes, salt: str) -> None:
        self._signer = Signer(secret, salt=salt, algorithm=TruncatedHMAC())
        self._key = self._signer.derive_key()
        self._algorithm = TruncatedHMAC()

    def sign(self, token_key: str) -> str:
        # Signer.sign, minus its per-call key derivation: the same token.
        mac = self._algorithm.get_signature(self._key, token_key.encode("ascii"))
        return f"{token_key}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode('ascii')}"

    def verify(self, token: str) -> str:
        return _verified(self._signer, token)


class IdToken:
    """One kind of token over a row id (a tracked link, an edition's open pixel)."""

    def __init__(self, secret: bytes, salt: str) -> None:
        self._signer = Signer(secret, salt=salt, algorithm=TruncatedHMAC())

    def sign(self, ident: int) -> str:
        return self._signer.sign(str(ident)).decode("ascii")

    def verify(self, token: str) -> int:
        return _number(_verified(self._signer, token))


class ExpiringToken:
    """A token that carries its signing time, so it expires (the double opt-in link)."""

    def __init__(self, secret: bytes, salt: str) -> None:
        self._signer = TimestampSigner(secret, salt=salt, algorithm=TruncatedHMAC())

    def sign(self, token_key: str) -> str:
        return self._signer.sign(token_key).decode("ascii")

    def verify(self, token: str, max_age_seconds: int) -> str:
        try:
            return self._signer.unsign(token, max_age=max_age_seconds).decode("ascii")
        except SignatureExpired:
            raise ExpiredToken() from None
        except (BadSignature, UnicodeError, ValueError):
            raise BadToken() from None


class LinkSigner:
    """A list's tokens, one object per kind (each ``sign`` and ``verify``, its own
    salt with the list in it), and the keyed parts of VERP addresses and
    Message-IDs."""

    def __init__(self, secret: bytes, list_key: str) -> None:
        self._secret = secret
        self.unsubscribe = KeyToken(secret, f"unsubscribe:{list_key}")
        self.preferences = KeyToken(secret, f"preferences:{list_key}")
        self.reader = KeyToken(secret, f"reader:{list_key}")  # tracked links, per reader
        self.click = IdToken(secret, f"click:{list_key}")
        self.opened = IdToken(secret, f"open:{list_key}")
        self.confirm = ExpiringToken(secret, f"confirm:{list_key}")
        # A reader's way back (issue 28 §2), each bound to one unsubscribe (its mark):
        # the goodbye page's undo, and the confirmation of a request to come back.
        self.undo = ExpiringToken(secret, f"undo:{list_key}")
        self.again = ExpiringToken(secret, f"again:{list_key}")
        # The sunset rule's «keep sending» (issue 28 §5).
        self.keep = ExpiringToken(secret, f"keep:{list_key}")

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

    def message_id(self, local: str) -> str:
        """``local`` with a keyed MAC appended (issue 24): a returned report is tied
        to a delivery by its Message-ID only when the MAC verifies, so a reader who
        knows their own id cannot write another reader's."""
        return f"{local}.{self._id_mac(local)}"

    def verify_message_id(self, message_id: str) -> bool:
        local = message_id.strip().strip("<>").rpartition("@")[0]
        head, _, mac = local.rpartition(".")
        return bool(head) and hmac.compare_digest(mac.encode(), self._id_mac(head).encode())

    def _id_mac(self, local: str) -> str:
        text = local.encode("utf-8", "replace")
        digest = hmac.new(self._secret, b"message-id-mac:" + text, hashlib.sha256).digest()
        return base64.b32encode(digest[:10]).decode("ascii").lower()  # 80 bits

    def message_id_tag(self, *parts: Any) -> str:
        """A short keyed hash: Message-IDs stay unique across installations sharing ids."""
        text = ":".join(str(p) for p in parts).encode("utf-8")
        digest = hmac.new(self._secret, b"message-id:" + text, hashlib.sha256).digest()
        return base64.b32encode(digest[:5]).decode("ascii").lower()


class Keyring:
    """The installation's link key and the signers derived from it: one per list
    (its links do not work for another list) and one for VERP return addresses.
    Built once per entry point; the signers are cached (deriving them costs)."""

    VERP = "verp"

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self._signers: dict[str, LinkSigner] = {}

    def for_list(self, list_key: str) -> LinkSigner:
        if list_key not in self._signers:
            self._signers[list_key] = LinkSigner(self.secret, list_key)
        return self._signers[list_key]

    def verp(self) -> LinkSigner:
        return self.for_list(self.VERP)

    def for_lists(self, list_keys: Iterable[str]) -> list[LinkSigner]:
        return [self.for_list(key) for key in list_keys]


class CsrfGuard:
    """A form field bound to the page's link token and to a day: a form fetched
    by another site cannot be replayed with another token, nor for ever."""

    MAX_AGE = 86400

    def __init__(self, secret: bytes) -> None:
        self._signer = TimestampSigner(secret, salt="csrf", algorithm=TruncatedHMAC())

    def token(self, bound_to: str) -> str:
        digest = hashlib.sha256(bound_to.encode("utf-8")).hexdigest()[:16]
        return self._signer.sign(digest).decode("ascii")

    def check(self, bound_to: str, value: str) -> bool:
        try:
            got = self._signer.unsign(value, max_age=self.MAX_AGE)
        except (BadSignature, UnicodeError, ValueError):
            return False
        want = hashlib.sha256(bound_to.encode("utf-8")).hexdigest()[:16].encode("ascii")
        return hmac.compare_digest(got, want)


def unsubscribe_key(signers: Iterable[LinkSigner], token: str) -> str | None:
    """The subscriber key of an unsubscribe token signed for any of the lists."""
    return _key_of(token, [s.unsubscribe.verify for s in signers])


def preferences_key(signers: Iterable[LinkSigner], token: str) -> str | None:
    """The subscriber key of a preferences token signed for any of the lists."""
    return _key_of(token, [s.preferences.verify for s in signers])


def keep_key(signers: Iterable[LinkSigner], token: str, max_age_seconds: int) -> str | None:
    """The subscriber key of a sunset letter's «keep sending» token, within its age."""
    return _key_of(
        token, [partial(s.keep.verify, max_age_seconds=max_age_seconds) for s in signers]
    )


def _key_of(token: str, checks: list[Callable[[str], str]]) -> str | None:
    for check in checks:
        try:
            return check(token)
        except BadToken:
            continue
    return None


def _verified(signer: Signer, token: str) -> str:
    try:
        value = signer.unsign(token).decode("ascii")
    except (BadSignature, UnicodeError, ValueError):
        raise BadToken() from None
    if not value.isalnum():  # ids and keys only: never a separator smuggled in
        raise BadToken()
    return value


def _number(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or len(value) > 12:
        raise BadToken()
    return int(value)


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        n, r = divmod(n, 36)
        text = digits[r] + text
        if n == 0:
            return text
