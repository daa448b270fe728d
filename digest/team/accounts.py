"""The desk's accounts, kept in the database (issue 28 §3).

Adding an editor, removing one or rotating a password used to mean editing the
unit's environment file and restarting. Accounts now live in the ``editor``
table, managed by an admin in the desk (`/desk/editors`) and by `digest
editors add|remove|passwd|role|list`; every change is in the audit log, with who
made it. Passwords are kept only as Argon2id hashes (argon2-cffi, RFC 9106's
profile: memory-hard, so a stolen table is slow to guess from), checked in the
same time for a name that does not exist. DIGEST_EDITORS (and
DIGEST_EDITOR_PASSWORD) seed the first accounts into an empty table, admins as
DIGEST_DESK_ADMINS says (or the first one), and are not read after that.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from argon2 import Parameters, PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError

from digest import store
from digest.db import Factory, Session, transaction
from digest.errors import DigestError
from digest.models import Clock, Editor

log = logging.getLogger(__name__)

ROLES = ("editor", "admin")
NAME = re.compile(r"[^\W_][\w.-]{0,99}")  # letters (Cyrillic too), digits, . _ -
AUDIT_PAGE = 100
MIN_PASSWORD, MAX_PASSWORD = 8, 1024  # a cap: hashing a megabyte is a way to tie us up

# Argon2id as RFC 9106 recommends where memory is short (64 MiB, 3 passes, 4 lanes):
# read when an Accounts is made (the suite's own processes make it cheaper:
# tests/support/passwords.py; the `digest` processes it starts never do).
HASHING: Parameters = profiles.RFC_9106_LOW_MEMORY

# What seeds an empty table: ({name: password}, admin names).
Seed = Callable[[], tuple[dict[str, str], frozenset[str]]]


class AccountError(DigestError):
    """The desk account cannot be changed that way."""


@dataclass(frozen=True)
class Account:
    name: str
    role: str
    created_at: datetime
    password_changed_at: datetime
    # What a session is bound to: another password, another hash, no session.
    password_hash: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: datetime
    editor: str
    action: str
    subject: str | None  # a reader's address hash (the log outlives a `forget`)
    detail: dict[str, Any]


def _account(row: Editor) -> Account:
    return Account(row.name, row.role, row.created_at, row.password_changed_at, row.password_hash)


def checked_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise AccountError(
            f"«{name[:40]}» не годится как имя: буквы, цифры, «.», «_» или «-», "
            "до 100 знаков, первая — буква или цифра"
        )
    return name


def checked_password(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AccountError(f"Пароль — от {MIN_PASSWORD} до {MAX_PASSWORD} знаков.")
    return password


class Accounts:
    """``Services.accounts``: who may use the desk, and as what."""

    def __init__(self, factory: Factory, clock: Clock, seed: Seed) -> None:
        self.factory = factory
        self.clock = clock
        self._seed = seed
        self._seeded = False
        self._lock = threading.Lock()
        self.hasher = PasswordHasher.from_parameters(HASHING)

    @cached_property
    def _decoy(self) -> str:
        # A hash to check an unknown name against: the answer takes as long.
        return self.hasher.hash(secrets.token_hex(16))

    def seed(self) -> int:
        """The environment's accounts into an empty table (once); how many."""
        if self._seeded:
            return 0
        passwords, admins = self._seed()
        added = 0
        with self._lock, transaction(self.factory) as session:
            # Many first logins at once, in threads or processes: one seeds.
            store.serialize(session, "desk-accounts-seed")
            if not store.editors(session) and passwords:
                first = next(iter(passwords))
                for name, password in passwords.items():
                    role = "admin" if name in admins or (not admins and name == first) else "editor"
                    store.keep(session, self._row(checked_name(name), password, role))
                    added += 1
        if added:
            log.info("desk: %d account(s) seeded from DIGEST_EDITORS", added)
        self._seeded = True
        return added

    def _row(self, name: str, password: str, role: str) -> Editor:
        now = self.clock()
        return Editor(
            name=name,
            password_hash=self.hasher.hash(checked_password(password)),
            role=role,
            created_at=now,
            password_changed_at=now,
        )

    def check(self, name: str, password: str) -> Account | None:
        """The account, if the password is its own."""
        found = self.get(name)
        return found if self.verify(found, password) else None

    def verify(self, found: Account | None, password: str) -> bool:
        """No database here (the login's throttle holds its transaction meanwhile);
        an unknown name is checked against a decoy, so timing tells no names."""
        try:
            return bool(self.hasher.verify(found.password_hash if found else self._decoy, password))
        except (VerificationError, InvalidHashError):
            return False

    def get(self, name: str) -> Account | None:
        self.seed()
        with self.factory() as session:
            row = store.editor_named(session, name)
            return _account(row) if row is not None else None

    def listing(self) -> list[Account]:
        self.seed()
        with self.factory() as session:
            return [_account(row) for row in store.editors(session)]

    def audit(self, before: int | None = None, limit: int = AUDIT_PAGE) -> list[AuditRow]:
        """The whole audit log for admins, newest first, a page at a time."""
        with self.factory() as session:
            return [
                AuditRow(e.id, e.at, e.editor, e.action, e.subject, e.detail or {})
                for e in store.audit_log(session, limit, before)
            ]

    def add(self, name: str, password: str, role: str, by: str) -> Account:
        self.seed()
        with transaction(self.factory) as session:
            if store.editor_named(session, checked_name(name)) is not None:
                raise AccountError(f"Учётная запись «{name}» уже есть.")
            row = self._row(name, password, _role(role))
            store.keep(session, row, now=True)
            _audit(session, self.clock(), by, "editor add", name, role=role)
            return _account(row)

    def remove(self, name: str, by: str) -> None:
        """The account goes, and its sessions with it (they check it each request)."""
        self.seed()  # its own transaction, before this one: SQLite has one writer
        with transaction(self.factory) as session:
            row = self._existing(session, name)
            _keep_an_admin(session, row, leaving=True)
            store.remove(session, row)
            _audit(session, self.clock(), by, "editor remove", name)

    def passwd(self, name: str, password: str, by: str) -> None:
        """A new password; every session begun with the old one ends."""
        self.seed()  # its own transaction, before this one: SQLite has one writer
        with transaction(self.factory) as session:
            row = self._existing(session, name)
            row.password_hash = self.hasher.hash(checked_password(password))
            row.password_changed_at = self.clock()
            _audit(session, self.clock(), by, "editor passwd", name)

    def set_role(self, name: str, role: str, by: str) -> None:
        self.seed()  # its own transaction, before this one: SQLite has one writer
        with transaction(self.factory) as session:
            row = self._existing(session, name)
            if row.role == _role(role):
                return
            _keep_an_admin(session, row, leaving=role != "admin")
            row.role = role
            _audit(session, self.clock(), by, "editor role", name, role=role)

    def _existing(self, session: Session, name: str) -> Editor:
        row = store.editor_named(session, name)
        if row is None:
            raise AccountError(f"Учётной записи «{name[:100]}» нет.")
        return row


def _keep_an_admin(session: Session, row: Editor, *, leaving: bool) -> None:
    admins = [e for e in store.editors(session) if e.role == "admin"]
    if leaving and row.role == "admin" and len(admins) == 1:
        raise AccountError(f"{row.name} — последний администратор: сначала назначьте другого.")


def _audit(session: Session, at: datetime, by: str, action: str, name: str, **detail: str) -> None:
    store.add_audit(session, at, by, action, None, {"name": name, **detail})
    log.info("desk: %s %s by %s", action, name, by)


def _role(role: str) -> str:
    if role not in ROLES:
        raise AccountError(f"Роль — editor или admin, не «{role[:20]}».")
    return role
