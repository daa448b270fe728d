"""Corrections: article revisions as ingest saw them, which of them an edition has
not taken in, and what a rebuild changes (retired variants, repointed deliveries)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from digest.models import (
    ArticleRevision,
    Delivery,
    DeliveryStatus,
    EditionItem,
    EditionVariant,
)
from digest.store.partitions import of_edition


def add_revision(
    session: Session,
    article_id: int,
    at: datetime,
    kind: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    session.add(
        ArticleRevision(article_id=article_id, at=at, kind=kind, before=before, after=after)
    )


def last_revision_id(session: Session) -> int:
    """The newest revision's id (0 if none): what a fresh render has taken in."""
    return int(session.scalar(select(func.max(ArticleRevision.id))) or 0)


def has_revisions_since(session: Session, edition_id: int, mark: int) -> bool:
    """The cheap form of ``revisions_since``: asked before every claim batch."""
    found = session.scalar(
        select(ArticleRevision.id)
        .join(EditionItem, EditionItem.article_id == ArticleRevision.article_id)
        .where(EditionItem.edition_id == edition_id, ArticleRevision.id > mark)
        .limit(1)
    )
    return found is not None


def retire_variants(session: Session, edition_id: int, at: datetime) -> tuple[list[str], int]:
    """Retire the edition's current variants: (their keys, the next version number)."""
    current = list(
        session.scalars(
            select(EditionVariant).where(
                EditionVariant.edition_id == edition_id, EditionVariant.retired_at.is_(None)
            )
        )
    )
    version = session.scalar(
        select(func.max(EditionVariant.version)).where(EditionVariant.edition_id == edition_id)
    )
    for variant in current:
        variant.retired_at = at
    session.flush()
    return sorted(v.key for v in current), int(version or 0) + 1


def repoint_deliveries(
    session: Session, edition_id: int, new: dict[str, int], now: datetime
) -> int:
    """Unsent deliveries follow their variant's key to its new version; sent ones keep
    the version they went out with, and so do the ones a live sender holds (it is
    sending them from what it claimed; a dead sender's, whose lease ran out, move).
    Returns how many were repointed."""
    old = dict(
        session.execute(
            select(EditionVariant.id, EditionVariant.key).where(
                EditionVariant.edition_id == edition_id, EditionVariant.retired_at.is_not(None)
            )
        ).all()
    )
    unsent = or_(
        Delivery.status.in_((DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED)),
        and_(
            Delivery.status == DeliveryStatus.SENDING,
            or_(Delivery.claimed_until.is_(None), Delivery.claimed_until < now),
        ),
    )
    moved = 0
    for old_id, key in old.items():
        if key not in new:
            continue
        result = session.execute(
            update(Delivery)
            .where(*of_edition(edition_id), Delivery.variant_id == old_id, unsent)
            .values(variant_id=new[key])
        )
        moved += int(result.rowcount or 0)  # type: ignore[attr-defined]
    # A reader whose sections are left empty (their one article was withdrawn).
    empty = select(EditionVariant.id).where(
        EditionVariant.edition_id == edition_id,
        EditionVariant.retired_at.is_(None),
        EditionVariant.articles == 0,
    )
    session.execute(
        update(Delivery)
        .where(
            *of_edition(edition_id),
            Delivery.variant_id.in_(empty),
            Delivery.status.in_((DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED)),
        )
        .values(status=DeliveryStatus.SUPPRESSED, smtp_reply="nothing left in the chosen sections")
    )
    return moved
