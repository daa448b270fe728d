"""An old edition's deliveries made a summary, then removed (issue 31 §4): the
rows an edition needs while it is sent, retried and bounced, and its counts for
ever after.

Deletes go a batch at a time, each in its own short transaction (SQLite has one
writer; PostgreSQL's vacuum takes a batch's dead rows while the next goes)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session

from digest.models import Delivery, Edition, EditionStatus, EditionSummary
from digest.store.deliveries import sent_by_minute
from digest.store.partitions import of_edition
from digest.store.reading import ambiguous_count, delivery_counts

DONE = (EditionStatus.SENT, EditionStatus.CANCELLED, EditionStatus.MISSED)


def prunable_editions(session: Session, before: date) -> list[tuple[int, str, date]]:
    """(id, label, date) of the editions dated before ``before`` whose send is
    over and that still have delivery rows, oldest first."""
    rows = session.scalars(
        select(Edition)
        .where(
            Edition.edition_date < before,
            Edition.status.in_(DONE),
            exists().where(Delivery.edition_id == Edition.id),
        )
        .order_by(Edition.edition_date, Edition.id)
    )
    return [(e.id, e.label, e.edition_date) for e in rows]


def day_still_open(session: Session, day: date) -> bool:
    """Whether an edition of ``day`` whose send is not over still has deliveries
    (its day's partition must stay)."""
    return bool(
        session.scalar(
            select(
                exists().where(
                    Edition.edition_date == day,
                    Edition.status.not_in(DONE),
                    exists().where(Delivery.edition_id == Edition.id),
                )
            )
        )
    )


def keep_summary(
    session: Session, edition_id: int, failures: dict[str, Any], now: datetime
) -> EditionSummary:
    """The edition's summary from its rows as they are now (written once: an
    interrupted prune that comes back finds it and only deletes)."""
    found = session.get(EditionSummary, edition_id)
    if found is not None:
        return found
    summary = EditionSummary(
        edition_id=edition_id,
        counts={s.value: n for s, n in delivery_counts(session, edition_id).items()},
        failures=failures,
        minutes={
            m.strftime("%Y-%m-%dT%H:%M"): n for m, n in sent_by_minute(session, edition_id).items()
        },
        ambiguous=ambiguous_count(session, edition_id),
        pruned_at=now,
    )
    session.add(summary)
    return summary


def delete_deliveries(session: Session, edition_id: int, batch: int) -> int:
    """Up to ``batch`` of the edition's delivery rows removed; how many."""
    ids = select(Delivery.id).where(*of_edition(edition_id)).limit(batch)
    result = session.execute(
        delete(Delivery).where(Delivery.id.in_(ids.scalar_subquery())),
        execution_options={"synchronize_session": False},
    )
    return int(result.rowcount)  # type: ignore[attr-defined]  # a CursorResult
