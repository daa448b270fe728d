"""The corrections an edition has not taken in, as reports and the desk show
them: article revisions newer than its mark, read in SQLAlchemy Core over
``store.light``'s tables (`digest status` loads no ORM, issue 31). Writing
revisions and what a rebuild changes stay in ``store.revisions``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from digest.store.light import article, article_revision, edition_item

if TYPE_CHECKING:
    from digest.store.reading import Reader


@dataclass(frozen=True)
class Revision:
    """One correction of an article an edition carries."""

    id: int
    article_id: int
    at: datetime
    kind: str  # changed, withdrawn, restored
    before: dict[str, Any]
    after: dict[str, Any]
    title: str  # the article's title now

    def describe(self) -> str:
        """One line: «title» title: 'old' → 'new', or «title» withdrawn."""
        if self.kind != "changed":
            return f"«{self.title}» {self.kind}"
        changes = "; ".join(
            f"{key}: {_short(self.before.get(key))} → {_short(self.after.get(key))}"
            for key in self.after
        )
        return f"«{self.title}» {changes}"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "article_id": self.article_id,
            "at": self.at.isoformat(),
            "kind": self.kind,
            "title": self.title,
            "before": self.before,
            "after": self.after,
            "text": self.describe(),
        }


def _short(value: Any, limit: int = 80) -> str:
    text = "" if value is None else str(value)
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def revisions_since(db: Reader, edition_id: int, mark: int) -> list[Revision]:
    """Revisions newer than ``mark`` of the articles the edition carries, oldest first."""
    r = article_revision.c
    rows = db.execute(
        select(r.id, r.article_id, r.at, r.kind, r.before, r.after, article.c.title)
        .select_from(
            article_revision.join(article, article.c.id == r.article_id).join(
                edition_item, edition_item.c.article_id == r.article_id
            )
        )
        .where(edition_item.c.edition_id == edition_id, r.id > mark)
        .order_by(r.id)
    )
    return [
        Revision(id_, article_id, at, kind, before or {}, after or {}, title)
        for id_, article_id, at, kind, before, after, title in rows
    ]
