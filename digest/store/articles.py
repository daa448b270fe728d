"""Articles, sections and comments: what ingest writes and selection reads."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    func,
    select,
    update,
)
from sqlalchemy.orm import Session

from digest.models import (
    Article,
    Candidate,
    Comment,
    Discussion,
    Edition,
    EditionItem,
    EditionStatus,
    Section,
)
from digest.store.bulk import write_rows


def section_id(session: Session, slug: str, title: str) -> int:
    found = session.scalar(select(Section.id).where(Section.slug == slug))
    if found is not None:
        return found
    section = Section(slug=slug, title=title)
    session.add(section)
    session.flush()
    return section.id


def article_by_external_id(session: Session, external_id: str) -> Article | None:
    return session.scalar(select(Article).where(Article.external_id == external_id))


def _chunked(items: Iterable[Any], size: int = 500) -> Iterator[list[Any]]:
    """Bounded IN lists: a site's 100 000 ids are 200 statements, not one."""
    items = list(items)
    for start in range(0, len(items), size):
        yield items[start : start + size]


def articles_by_external_ids(session: Session, external_ids: Iterable[str]) -> dict[str, Article]:
    """The articles digest has of ``external_ids``, by that id."""
    return {
        article.external_id: article
        for chunk in _chunked(external_ids)
        for article in session.scalars(select(Article).where(Article.external_id.in_(chunk)))
    }


def article_ids(session: Session, external_ids: Iterable[str]) -> dict[str, int]:
    """The site's id → digest's article id, of those digest has."""
    return {
        external: id_
        for chunk in _chunked(set(external_ids))
        for external, id_ in session.execute(
            select(Article.external_id, Article.id).where(Article.external_id.in_(chunk))
        )
    }


def comments_numbered(
    session: Session, article_ids: list[int], numbers: set[int]
) -> dict[int, dict[int, tuple[int, int]]]:
    """article id → number → (comment id, votes), of ``numbers`` only: what a batch
    of comments read apart from their articles may already have."""
    found: dict[int, dict[int, tuple[int, int]]] = defaultdict(dict)
    for ids in _chunked(article_ids):
        for wanted in _chunked(sorted(numbers)):
            rows = session.execute(
                select(Comment.article_id, Comment.number, Comment.id, Comment.votes).where(
                    Comment.article_id.in_(ids), Comment.number.in_(wanted)
                )
            )
            for article_id, number, cid, votes in rows:
                found[article_id][number] = (cid, votes)
    return found


def comment_numbers(session: Session, article_id: int) -> dict[int, tuple[int, int]]:
    """number → (comment id, votes) of the comments an article already has."""
    rows = session.execute(
        select(Comment.number, Comment.id, Comment.votes).where(Comment.article_id == article_id)
    )
    return {number: (cid, votes) for number, cid, votes in rows}


def _candidate_columns() -> tuple[Any, ...]:
    return (
        Article.id,
        Article.external_id,
        Article.published_at,
        Article.views,
        Article.image_url.is_not(None),
        Section.slug,
    )


def _candidate(row: Sequence[Any]) -> Candidate:
    return Candidate(row[0], row[1], row[2], row[3] or 0, bool(row[4]), row[5])


def day_candidates(session: Session, start: datetime, end: datetime) -> list[Candidate]:
    """Articles published in [start, end), but not the withdrawn."""
    stmt = (
        select(*_candidate_columns())
        .outerjoin(Section, Section.id == Article.section_id)
        .where(
            Article.published_at >= start,
            Article.published_at < end,
            Article.withdrawn_at.is_(None),
        )
    )
    return [_candidate(row) for row in session.execute(stmt)]


def discussions(
    session: Session, start: datetime, end: datetime, published_since: datetime
) -> list[Discussion]:
    """Articles published since ``published_since`` with comments in [start, end),
    counted per commenter (authors compared case-insensitively; anonymous
    comments count as one commenter)."""
    author = func.coalesce(Comment.author, "")
    per_author = session.execute(
        select(Comment.article_id, author, func.count())
        .join(Article, Article.id == Comment.article_id)
        .where(
            Comment.posted_at >= start,
            Comment.posted_at < end,
            Article.published_at >= published_since,
            Article.published_at < end,
            Article.withdrawn_at.is_(None),
        )
        .group_by(Comment.article_id, author)
    ).all()
    counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for article_id, name, n in per_author:
        counts[article_id][str(name).strip().lower()] += n
    if not counts:
        return []
    ids = list(counts)
    totals = dict(
        session.execute(
            select(Comment.article_id, func.count())
            .where(Comment.article_id.in_(ids), Comment.posted_at < end)
            .group_by(Comment.article_id)
        ).all()
    )
    articles = session.execute(
        select(*_candidate_columns())
        .outerjoin(Section, Section.id == Article.section_id)
        .where(Article.id.in_(ids))
    )
    return [
        Discussion(_candidate(row), dict(counts[row[0]]), totals.get(row[0], 0)) for row in articles
    ]


def already_sent(
    session: Session,
    schedule: str,
    before: date,
    article_ids: Iterable[int],
    until: datetime,
) -> dict[int, int]:
    """Of ``article_ids``, those an earlier edition of ``schedule`` carried, each with
    the number of comments posted since (from the end of the last such window
    to ``until``)."""
    ids = list(set(article_ids))
    if not ids:
        return {}
    last = (
        select(EditionItem.article_id, func.max(Edition.window_end).label("last_end"))
        .join(Edition, Edition.id == EditionItem.edition_id)
        .where(
            Edition.schedule == schedule,
            Edition.edition_date < before,
            Edition.status.in_([EditionStatus.SENDING, EditionStatus.SENT]),
            EditionItem.article_id.in_(ids),
        )
        .group_by(EditionItem.article_id)
        .subquery()
    )
    since = dict.fromkeys(session.scalars(select(last.c.article_id)), 0)
    new = session.execute(
        select(Comment.article_id, func.count())
        .join(last, last.c.article_id == Comment.article_id)
        .where(Comment.posted_at >= last.c.last_end, Comment.posted_at < until)
        .group_by(Comment.article_id)
    ).all()
    since.update(dict(new))
    return since


def commenters(
    session: Session, article_ids: Iterable[int], start: datetime, end: datetime
) -> dict[int, int]:
    """People who commented in [start, end), per article, counted as selection counts
    them: authors compared case-insensitively, the anonymous as one."""
    ids = list(set(article_ids))
    if not ids:
        return {}
    author = func.lower(func.trim(func.coalesce(Comment.author, "")))
    rows = session.execute(
        select(Comment.article_id, func.count(func.distinct(author)))
        .where(Comment.article_id.in_(ids), Comment.posted_at >= start, Comment.posted_at < end)
        .group_by(Comment.article_id)
    )
    return {article_id: int(n) for article_id, n in rows}


def top_comments(
    session: Session, article_ids: Iterable[int], start: datetime, end: datetime
) -> dict[int, Comment]:
    """The most voted comment inside the window, per article (ties: the earlier)."""
    ids = list(set(article_ids))
    if not ids:
        return {}
    # Ranked by the database, one row back per article: a discussed article has
    # thousands of comments, and each variant's letter asks (every comment of the
    # window was made an object here to keep one).
    order = (Comment.votes.desc(), Comment.posted_at, Comment.number)
    ranked = (
        select(
            Comment.id,
            func.row_number().over(partition_by=Comment.article_id, order_by=order).label("n"),
        )
        .where(Comment.article_id.in_(ids), Comment.posted_at >= start, Comment.posted_at < end)
        .subquery()
    )
    rows = session.scalars(
        select(Comment).join(ranked, Comment.id == ranked.c.id).where(ranked.c.n == 1)
    )
    return {comment.article_id: comment for comment in rows}


COMMENT_COLUMNS = ("article_id", "number", "author", "posted_at", "body", "votes")


def add_comments(session: Session, new: list[dict[str, Any]], votes: list[dict[str, Any]]) -> None:
    """Insert new comments (one COPY on PostgreSQL: a site's thousands of comments
    are one stream, not a statement each) and update the votes of known ones."""
    if new:
        write_rows(
            session, Comment, COMMENT_COLUMNS, ([r[c] for c in COMMENT_COLUMNS] for r in new)
        )
    if votes:
        session.execute(update(Comment), votes)


def set_section_order(session: Session, titles: list[str]) -> None:
    for position, title in enumerate(titles):
        session.execute(update(Section).where(Section.title == title).values(position=position))


def articles_between(session: Session, start: datetime, end: datetime, limit: int) -> list[Article]:
    """The newest first: the desk offers them to add to an edition."""
    return list(
        session.scalars(
            select(Article)
            .where(
                Article.published_at >= start,
                Article.published_at < end,
                Article.withdrawn_at.is_(None),
            )
            .order_by(Article.published_at.desc())
            .limit(limit)
        )
    )
