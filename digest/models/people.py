"""The tables of the people around the letter rather than of the letter: the desk's
accounts and sessions, the subscription box's requests and limits, the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from digest.models.tables import Base


class DeskSession(Base):
    """A desk login, kept here so that logout and a password change end it: the
    cookie carries only a random id whose SHA-256 is ``id``."""

    __tablename__ = "desk_session"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    editor: Mapped[str] = mapped_column(String(100))
    # A keyed hash of the password the editor logged in with: another password, no session.
    password_tag: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    ip: Mapped[str | None] = mapped_column(String(64))


class Editor(Base):
    """A desk account (issue 28 §3, ``team.accounts``): an Argon2id hash, a role."""

    __tablename__ = "editor"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16), default="editor")  # or "admin"
    created_at: Mapped[datetime]
    password_changed_at: Mapped[datetime]


class SignupAttempt(Base):
    """A request to the subscription box, by (hashed) address of the asker: what
    the per-IP limit counts."""

    __tablename__ = "signup_attempt"
    __table_args__ = (Index("ix_signup_attempt_ip_at", "ip", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime]
    ip: Mapped[str] = mapped_column(String(64))


class SignupRequest(Base):
    """A request to the subscription box waiting to be acted on (issue 24): the box
    answers at once, the same for every address, and a background drain decides
    and sends the confirmation, so neither the answer nor its time says who reads."""

    __tablename__ = "signup_request"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    sections: Mapped[str | None] = mapped_column(Text)
    page: Mapped[str | None] = mapped_column(String(500))
    list_key: Mapped[str] = mapped_column(String(64))
    asked_at: Mapped[datetime]


class LoginFailure(Base):
    """A wrong desk password, by name and address: what the throttle counts."""

    __tablename__ = "login_failure"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    editor: Mapped[str] = mapped_column(String(100), index=True)
    ip: Mapped[str] = mapped_column(String(64), index=True)


class AuditEntry(Base):
    """What a person did to a reader from the desk, by whom and when. The reader is
    named by the hash of the address (as ``Forgotten`` keeps it), so the log
    outlives a `forget` without keeping the address."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime]
    editor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str | None] = mapped_column(String(64), index=True)  # address hash
    detail: Mapped[dict[str, Any] | None]


class ApiToken(Base):
    """A token of the HTTP API (issue 30): only a keyed hash of it is kept (the token
    itself is printed once), with what it may do and who made it."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(200))  # space-separated
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(100))
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class IdempotentCall(Base):
    """A POST made with an ``Idempotency-Key`` (issue 30): the same key from the same
    token gets this answer again, not a second effect. ``status`` is empty while the
    first call runs; ``fingerprint`` is the request's hash (another body, same key:
    refused)."""

    __tablename__ = "idempotent_call"
    __table_args__ = (UniqueConstraint("token_id", "key", name="uq_idempotent_call"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    token_id: Mapped[int] = mapped_column(index=True)
    key: Mapped[str] = mapped_column(String(200))
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[int | None]
    body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(index=True)
