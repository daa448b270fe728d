"""Comments into the store, by their number: a new one inserted, a known one only
its votes refreshed, so re-reading never doubles a count. A batch read apart from
its articles (a site database's comments table, issue 29) is three statements:
the articles' ids, the numbers they already have, the writes."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from digest import store
from digest.db import Factory
from digest.ingest.records import CommentIn, IngestReport, Problem, describe

Rows = list[dict[str, Any]]


def comment_rows(
    article_id: int, comments: list[CommentIn], existing: dict[int, tuple[int, int]]
) -> tuple[Rows, Rows]:
    """(new rows, vote changes) of ``comments`` against ``existing`` (number →
    (comment id, votes)); a number twice in ``comments`` counts once."""
    new_rows, changed = [], []
    for c in {c.number: c for c in comments}.values():
        if c.number in existing:
            cid, votes = existing[c.number]
            if votes != c.votes:
                changed.append({"id": cid, "votes": c.votes})
            continue
        new_rows.append(
            {
                "article_id": article_id,
                "number": c.number,
                "author": c.author,
                "posted_at": c.posted_at,
                "body": c.body,
                "votes": c.votes,
            }
        )
    return new_rows, changed


def load_comments(factory: Factory, batch: list[tuple[str, str, dict[str, Any]]]) -> IngestReport:
    """(where, the article's site id, the raw comment), counted in the report."""
    report = IngestReport()
    by_article: dict[str, list[CommentIn]] = {}
    for where, article, raw in batch:
        try:
            by_article.setdefault(article, []).append(CommentIn.model_validate(raw))
        except ValidationError as exc:
            report.comments_rejected += 1
            report.warnings.append(Problem(where, describe(exc)))
    with factory() as session:
        known = store.article_ids(session, by_article)
        numbers = {c.number for a, cs in by_article.items() if a in known for c in cs}
        existing = store.comments_numbered(
            session, [known[a] for a in by_article if a in known], numbers
        )
        new_rows: Rows = []
        changed: Rows = []
        for article, comments in by_article.items():
            if article not in known:
                report.comments_orphaned += len(comments)
                continue
            rows, votes = comment_rows(known[article], comments, existing.get(known[article], {}))
            new_rows += rows
            changed += votes
        store.add_comments(session, new_rows, changed)
        session.commit()
    report.comments_added += len(new_rows)
    return report
