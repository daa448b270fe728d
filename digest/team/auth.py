"""Who is logged in to the desk: a throttle in front of the password check, and
sessions kept in the database.

- **Throttle** (per name *from one address*, within ``WINDOW``): the first
  ``FREE`` wrong passwords are answered at once; after them each attempt must
  wait 2, 4, 8 … seconds (at most ``MAX_WAIT``) after the last failure; after
  ``LOCK_AFTER`` that name is locked out *from that address* for ``LOCK`` with a
  clear message. An address that fails ``IP_LOCK_AFTER`` times for any names is
  locked out too. Counted by name alone (before issue 24), a stranger could keep
  an editor out of the desk from anywhere; by (name, address), the editor still
  gets in from their own. A throttled attempt is refused before the password is
  looked at, and the check and the count are one step (``store.serialize``: 40
  wrong logins at once had 5–10 passwords checked). Each failure is logged with
  the name and the address, never the password.
- **Sessions**: the cookie carries a random id; the row (its SHA-256) says who,
  since when, last seen, and a keyed hash of the password it began with. Logout
  revokes the row, and a changed password no longer matches the hash: either
  way a copied cookie is worth nothing from then on.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from digest import store
from digest.db import Factory, Session, transaction
from digest.models import Clock, DeskSession, LoginFailure
from digest.team.accounts import MAX_PASSWORD, Account, Accounts

log = logging.getLogger(__name__)

WINDOW = timedelta(minutes=15)
FREE = 3
LOCK_AFTER = 10
IP_LOCK_AFTER = 30  # failures from one address for any names
LOCK = timedelta(minutes=15)
MAX_WAIT = 60.0
SESSION_LIFE = timedelta(hours=12)
SESSION_IDLE = timedelta(hours=2)


@dataclass(frozen=True)
class Refusal:
    """A login refused without looking at the password."""

    wait: float  # seconds until the next attempt may be made
    locked: bool

    @property
    def message(self) -> str:
        if self.locked:
            minutes = max(1, round(self.wait / 60))
            return f"Слишком много неудачных попыток: вход закрыт на {minutes} мин."
        return f"Слишком часто: подождите {max(1, round(self.wait))} с и попробуйте снова."


@dataclass(frozen=True)
class Login:
    session_id: str | None = None  # the cookie's value on success
    refusal: Refusal | None = None


class DeskAuth:
    def __init__(
        self,
        factory: Factory,
        accounts: Accounts,
        secret: bytes,
        clock: Clock,
    ) -> None:
        self.factory = factory
        self.accounts = accounts
        self.secret = secret
        self.clock = clock

    def login(self, editor: str, password: str, ip: str) -> Login:
        editor, ip = editor[:100], ip[:64]
        now = self.clock()
        # Read before the transaction below: SQLite's begin IMMEDIATE, one at a time.
        account = self.accounts.get(editor)
        with transaction(self.factory) as session:
            store.serialize(session, f"login:{ip}:{editor}", f"login-ip:{ip}")
            refusal = self._throttled(session, editor, ip)
            if refusal is not None:
                log.warning("desk login for %r from %s refused: throttled", editor, ip)
                return Login(refusal=refusal)
            # An unknown name is checked against a decoy hash: timing tells no names.
            known = account if self.accounts.verify(account, password[:MAX_PASSWORD]) else None
            if known is None:
                store.keep(session, LoginFailure(at=now, editor=editor, ip=ip))
                log.warning("desk login failed for %r from %s", editor, ip)
                return Login()
            store.clear_login_failures(session, editor, ip)
            token = secrets.token_urlsafe(32)
            store.keep(
                session,
                DeskSession(
                    id=_digest(token),
                    editor=editor,
                    password_tag=self._tag(editor, known.password_hash),
                    created_at=now,
                    last_seen_at=now,
                    ip=ip,
                ),
            )
            log.info("desk login for %r from %s", editor, ip)
            return Login(session_id=token)

    def _throttled(self, session: Session, editor: str, ip: str) -> Refusal | None:
        now = self.clock()
        failures, last, from_ip = store.login_failures(session, editor, ip, now - WINDOW)
        if from_ip >= IP_LOCK_AFTER:
            latest = store.latest_login_failure(session, ip)
            wait = (latest + LOCK - now).total_seconds() if latest else 0.0
            if wait > 0:
                return Refusal(wait, locked=True)
        if last is None or failures < FREE:
            return None
        if failures >= LOCK_AFTER:
            wait = (last + LOCK - now).total_seconds()
            return Refusal(wait, locked=True) if wait > 0 else None
        wait = (last - now).total_seconds() + min(2.0 ** (failures - FREE + 1), MAX_WAIT)
        return Refusal(wait, locked=False) if wait > 0 else None

    def editor(self, token: str | None) -> Account | None:
        """The account a session cookie belongs to, if it is still good."""
        if not token:
            return None
        now = self.clock()
        with self.factory() as session:
            found = store.desk_session(session, _digest(token))
            name = found.editor if found is not None else None
        # Removed, or another password since: the account's hash says so (read before
        # the transaction below, as in ``login``).
        account = self.accounts.get(name) if name is not None else None
        with transaction(self.factory) as session:
            row = store.desk_session(session, _digest(token))
            if row is None or row.revoked_at is not None:
                return None
            expired = now - row.created_at > SESSION_LIFE or now - row.last_seen_at > SESSION_IDLE
            if (
                expired
                or account is None
                or not hmac.compare_digest(
                    row.password_tag, self._tag(row.editor, account.password_hash)
                )
            ):
                row.revoked_at = row.revoked_at or now
                return None
            row.last_seen_at = now
            return account

    def logout(self, token: str | None) -> None:
        if not token:
            return
        with transaction(self.factory) as session:
            row = store.desk_session(session, _digest(token))
            if row is not None and row.revoked_at is None:
                row.revoked_at = self.clock()

    def _tag(self, editor: str, password_hash: str) -> str:
        text = f"{editor}\0{password_hash}".encode()
        return hmac.new(self.secret, b"desk-password:" + text, hashlib.sha256).hexdigest()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
