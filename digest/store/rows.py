"""Rows by their key, and rows kept or removed: the unit of work's own calls.

The services build and change model objects; the session's calls that read a
row by its key, add one, delete one or write the changes now are named here,
so no module outside the store talks to the session (issue 26 §2;
``tests/test_house.py`` keeps it)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session

from digest.models import Article, DeskSession, Edition, EditionLink, Subscriber
from digest.models.tables import Base


def edition_by_id(session: Session, edition_id: int, *, lock: bool = False) -> Edition | None:
    """``lock``: the row held (FOR UPDATE on PostgreSQL) until the transaction ends."""
    return session.get(Edition, edition_id, with_for_update=lock)


def article_by_id(session: Session, article_id: int) -> Article | None:
    return session.get(Article, article_id)


def subscriber_by_id(session: Session, subscriber_id: int) -> Subscriber | None:
    return session.get(Subscriber, subscriber_id)


def link_by_id(session: Session, link_id: int) -> EditionLink | None:
    return session.get(EditionLink, link_id)


def desk_session(session: Session, key: str) -> DeskSession | None:
    return session.get(DeskSession, key)


def keep(session: Session, *rows: Base, now: bool = False) -> None:
    """New rows into the transaction; ``now``: written at once (their ids set,
    the constraints checked) rather than at the commit."""
    session.add_all(rows)
    if now:
        session.flush()


def write_now(session: Session) -> None:
    """The changes so far sent to the database (ids, constraints, the next
    query sees them) without ending the transaction."""
    session.flush()


def remove(session: Session, row: Base) -> None:
    session.delete(row)


def reload(session: Session, row: Base, attributes: Iterable[str]) -> None:
    """Read ``attributes`` of ``row`` again (a relation filled by a bulk insert)."""
    session.refresh(row, list(attributes))


def expire(session: Session, row: Base, attributes: Iterable[str]) -> None:
    """Forget ``attributes`` of ``row`` so the next read loads them again."""
    session.expire(row, list(attributes))
