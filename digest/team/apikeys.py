"""The HTTP API's tokens (issue 30): who may call ``/api/v1/`` and what each may do.

What an outsider controls at this door is the ``Authorization`` header, and how
often they knock. So a token is 32 random bytes, printed once by `digest tokens
create` and kept only as a keyed hash (HMAC-SHA256 under a key derived from the
installation's link key): a copy of the table is no token, and a lookup by hash
takes the same time whether the token exists or not. A revoked token is refused
at its next call (every call reads the row). Each token has its own rate, a token
bucket in the database (``store.take_tokens``, as the senders' rate), so every
`digest serve` process counts the same calls. What a token changes is written
to the audit log under ``token:NAME`` (``audit``).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from digest import store
from digest.db import Factory, transaction
from digest.errors import DigestError
from digest.kinds import API_SCOPES as SCOPES
from digest.models import ApiToken, Clock

PREFIX = "dgt_"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often


class TokenError(DigestError):
    """A token cannot be made or changed that way."""


@dataclass(frozen=True)
class Caller:
    """A token that was let in: its row's id, name and scopes."""

    id: int
    name: str
    scopes: frozenset[str]

    @property
    def who(self) -> str:
        return f"token:{self.name}"

    def may(self, scope: str) -> bool:
        return scope in self.scopes


@dataclass(frozen=True)
class TokenInfo:
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    created_by: str
    last_used_at: datetime | None
    revoked_at: datetime | None


def _info(row: ApiToken) -> TokenInfo:
    return TokenInfo(
        row.name, tuple(row.scopes.split()), row.created_at, row.created_by,
        row.last_used_at, row.revoked_at,
    )  # fmt: skip


def checked_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(sorted({s.strip() for s in scopes if s.strip()}))
    unknown = [s for s in chosen if s not in SCOPES]
    if unknown or not chosen:
        raise TokenError(f"scope {', '.join(unknown) or '(none)'}: choose from {', '.join(SCOPES)}")
    return chosen


class ApiTokens:
    """``Services.api_tokens``: ``secret`` is read on first use (the link key)."""

    def __init__(
        self, factory: Factory, clock: Clock, secret: Callable[[], bytes], per_minute: int
    ) -> None:
        self.factory, self.clock, self._secret = factory, clock, secret
        self.per_minute = per_minute

    def _hash(self, token: str) -> str:
        key = hmac.new(self._secret(), b"digest api token", hashlib.sha256).digest()
        return hmac.new(key, token.encode("utf-8", "replace"), hashlib.sha256).hexdigest()

    def create(self, name: str, scopes: Iterable[str], by: str) -> tuple[str, TokenInfo]:
        """A new token: the token itself (shown once, never kept) and its record."""
        if not NAME.fullmatch(name):
            raise TokenError(f"token name {name[:80]!r}: letters, digits, . _ - (up to 64)")
        chosen = checked_scopes(scopes)
        token = PREFIX + secrets.token_urlsafe(32)
        now = self.clock()
        with transaction(self.factory) as session:
            if store.token_by_name(session, name) is not None:
                raise TokenError(f"a token named {name} exists: revoke it or choose another name")
            row = ApiToken(
                name=name, key_hash=self._hash(token), scopes=" ".join(chosen),
                created_at=now, created_by=by,
            )  # fmt: skip
            store.add_token(session, row, float(self.per_minute))
            store.add_audit(session, now, by, "token create", None, {"token": name})
            return token, _info(row)

    def listing(self) -> list[TokenInfo]:
        with self.factory() as session:
            return [_info(row) for row in store.tokens(session)]

    def revoke(self, name: str, by: str) -> TokenInfo:
        with transaction(self.factory) as session:
            row = store.token_by_name(session, name)
            if row is None:
                raise TokenError(f"no token named {name[:80]}")
            if row.revoked_at is None:
                row.revoked_at = self.clock()
                store.add_audit(session, row.revoked_at, by, "token revoke", None, {"token": name})
            return _info(row)

    def caller(self, token: str | None) -> Caller | None:
        """The token's record, if it is one of ours and not revoked (``token``: what
        an ``Authorization: Bearer`` header carries)."""
        token = (token or "").strip()
        if not token.startswith(PREFIX) or len(token) > 100:
            return None
        now = self.clock()
        with transaction(self.factory) as session:
            row = store.token_by_hash(session, self._hash(token))
            if row is None or row.revoked_at is not None:
                return None
            if row.last_used_at is None or now - row.last_used_at >= TOUCH_EVERY:
                row.last_used_at = now
            return Caller(row.id, row.name, frozenset(row.scopes.split()))

    def admit(self, caller: Caller) -> int:
        """One call from this token's bucket: 0 when it may go on, else the whole
        seconds to wait (the ``Retry-After``)."""
        rate = self.per_minute / 60.0
        with transaction(self.factory) as session:
            granted, wait = store.take_tokens(
                session, store.bucket_name(caller.id), rate, float(self.per_minute), 1, self.clock
            )
        return 0 if granted else max(1, math.ceil(wait))
