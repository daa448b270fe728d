"""The HTTP API's rows (issue 30): tokens by their keyed hash, and the answers kept
for an ``Idempotency-Key``."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from digest.models import ApiToken, IdempotentCall, RateBucket


def add_token(session: Session, row: ApiToken, burst: float) -> ApiToken:
    """A new token, and its rate bucket full (a bucket made on first use starts
    empty: the fleet's rule for senders, not a caller's first call)."""
    session.add(row)
    session.flush()
    session.merge(RateBucket(name=bucket_name(row.id), tokens=burst, at=row.created_at))
    return row


def bucket_name(token_id: int) -> str:
    return f"api:{token_id}"


def token_by_hash(session: Session, key_hash: str) -> ApiToken | None:
    return session.scalar(select(ApiToken).where(ApiToken.key_hash == key_hash))


def token_by_name(session: Session, name: str) -> ApiToken | None:
    return session.scalar(select(ApiToken).where(ApiToken.name == name))


def tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.name)))


def reserve_call(
    session: Session, token_id: int, key: str, fingerprint: str, now: datetime
) -> IdempotentCall | None:
    """Claim ``key`` for this token (None: it was ours to run), or the call that
    holds it already (answered, or still running)."""
    try:
        with session.begin_nested():
            session.add(
                IdempotentCall(token_id=token_id, key=key, fingerprint=fingerprint, created_at=now)
            )
        return None
    except IntegrityError:
        return _call(session, token_id, key)


def _call(session: Session, token_id: int, key: str) -> IdempotentCall | None:
    return session.scalar(
        select(IdempotentCall).where(IdempotentCall.token_id == token_id, IdempotentCall.key == key)
    )


def answer_call(session: Session, token_id: int, key: str, status: int, body: str) -> None:
    found = _call(session, token_id, key)
    if found is not None:
        found.status, found.body = status, body


def drop_call(session: Session, token_id: int, key: str) -> None:
    """The first call failed before it changed anything: the key is free again."""
    session.execute(
        delete(IdempotentCall).where(IdempotentCall.token_id == token_id, IdempotentCall.key == key)
    )


def prune_calls(session: Session, before: datetime) -> int:
    done = session.execute(delete(IdempotentCall).where(IdempotentCall.created_at < before))
    return int(done.rowcount or 0)  # type: ignore[attr-defined]
