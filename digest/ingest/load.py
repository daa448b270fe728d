"""Loading records into the store, one savepoint each: a bad record is reported
and skipped, every other one is kept. Re-ingesting an article updates it and adds
only the comments it did not have (by number), so counts never double; a changed
title, lead or URL, and a withdrawal, are kept as revisions (the corrections a send
in progress must not pass by)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from digest import store
from digest.db import DatabaseError, Factory, Session
from digest.ingest.records import (
    MAX_COMMENTS,
    ArticleIn,
    CommentIn,
    Problem,
    WithdrawalIn,
    describe,
)
from digest.models import Article, Clock, utcnow

# What a correction is: the fields a reader sees of an article in the mail.
TRACKED = ("title", "lead", "url")


@dataclass
class IngestReport:
    loaded: int = 0
    updated: int = 0
    rejected: int = 0
    comments_added: int = 0
    comments_rejected: int = 0
    # Of the updated: how many had their title, lead or URL changed; how many were
    # withdrawn (or put back).
    corrected: int = 0
    withdrawn: int = 0
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def merge(self, other: IngestReport) -> None:
        for name in (f.name for f in fields(self)):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def reject(self, where: str, reason: str) -> None:
        self.rejected += 1
        self.problems.append(Problem(where, reason))


@dataclass
class Stored:
    created: bool
    comments: int
    corrected: bool
    withdrawn: bool


class Ingester:
    """Loads validated records into the store, one savepoint per record."""

    def __init__(self, factory: Factory, commit_every: int = 200, clock: Clock = utcnow) -> None:
        self.factory = factory
        self.clock = clock
        self.commit_every = commit_every

    def load(self, records: Iterable[tuple[str, dict[str, Any] | Problem]]) -> IngestReport:
        """``records``: (where, raw dict or a Problem found while reading)."""
        report = IngestReport()
        with self.factory() as session:
            pending = 0
            for where, raw in records:
                if isinstance(raw, Problem):
                    report.reject(raw.where, raw.reason)
                    continue
                self._load_one(session, where, raw, report)
                pending += 1
                if pending >= self.commit_every:
                    session.commit()
                    pending = 0
            session.commit()
        return report

    def _load_one(
        self, session: Session, where: str, raw: dict[str, Any], report: IngestReport
    ) -> None:
        if isinstance(raw.get("withdrawn"), bool) and not {"url", "title"} & raw.keys():
            self._withdraw(session, where, raw, report)
            return
        try:
            article = ArticleIn.model_validate(raw)
        except ValidationError as exc:
            report.reject(where, describe(exc))
            return
        except RecursionError:
            report.reject(where, "nested too deeply")
            return
        comments = _comments(where, article, report)
        try:
            with session.begin_nested():
                stored = _store(session, article, comments, self.clock())
        except DatabaseError as exc:
            report.reject(where, f"id {article.id}: database refused it: {exc}")
            return
        report.loaded += stored.created
        report.updated += not stored.created
        report.comments_added += stored.comments
        report.corrected += stored.corrected
        report.withdrawn += stored.withdrawn

    def _withdraw(
        self, session: Session, where: str, raw: dict[str, Any], report: IngestReport
    ) -> None:
        """The short form ``{"id": …, "withdrawn": true}``: only a known article."""
        try:
            short = WithdrawalIn.model_validate(raw)
        except ValidationError as exc:
            report.reject(where, describe(exc))
            return
        article = store.article_by_external_id(session, short.id)
        if article is None:
            report.warnings.append(Problem(where, f"id {short.id}: no such article to withdraw"))
            return
        report.updated += 1
        report.withdrawn += _withdrawal(session, article, short.withdrawn, self.clock())


def _comments(where: str, article: ArticleIn, report: IngestReport) -> list[CommentIn]:
    comments = []
    if len(article.comments) > MAX_COMMENTS:
        dropped = len(article.comments) - MAX_COMMENTS
        report.comments_rejected += dropped
        report.warnings.append(
            Problem(
                f"{where} (id {article.id})",
                f"{len(article.comments)} comments: the first {MAX_COMMENTS} kept, "
                f"{dropped} dropped",
            )
        )
        del article.comments[MAX_COMMENTS:]
    for index, item in enumerate(article.comments):
        try:
            comments.append(CommentIn.model_validate(item))
        except ValidationError as exc:
            report.comments_rejected += 1
            number = item.get("number", index + 1) if isinstance(item, dict) else index + 1
            report.warnings.append(
                Problem(f"{where} (id {article.id}, comment {number})", describe(exc))
            )
    return comments


def _store(session: Session, data: ArticleIn, comments: list[CommentIn], now: datetime) -> Stored:
    section_id = None
    if data.section:
        section_id = store.section_id(session, _slug(data.section), data.section)
    fields = {
        "url": data.url,
        "title": data.title,
        "lead": data.lead,
        "image_url": data.image_url,
        "image_caption": data.image_caption,
        "section_id": section_id,
        "source": data.source,
        "published_at": data.published_at,
        "views": data.views,
        "rating": data.rating,
    }
    article = store.article_by_external_id(session, data.id)
    created = article is None
    corrected = False
    if article is None:
        article = Article(external_id=data.id, **fields)
        article.withdrawn_at = now if data.withdrawn else None
        store.keep(session, article, now=True)
    else:
        # A line for a known article sets what it names; a field it leaves out keeps
        # its value (issue 28 §7: a correction without `lead` blanked the lead).
        given = data.model_fields_set | {"section_id"} if data.section else data.model_fields_set
        fields = {key: value for key, value in fields.items() if key in given}
        before = {key: getattr(article, key) for key in TRACKED}
        for key, value in fields.items():
            setattr(article, key, value)
        article.updated_at = now
        changed = [key for key in TRACKED if key in fields and before[key] != fields[key]]
        if changed:
            corrected = True
            store.add_revision(
                session,
                article.id,
                now,
                "changed",
                {key: before[key] for key in changed},
                {key: fields[key] for key in changed},
            )
    withdrawn = (
        not created
        and data.withdrawn is not None
        and _withdrawal(session, article, data.withdrawn, now)
    )
    added = _add_comments(session, article.id, comments, created)
    return Stored(created, added, corrected, withdrawn)


def _withdrawal(session: Session, article: Article, withdrawn: bool, now: datetime) -> bool:
    """Withdraw (or put back) ``article``; True when that changed something."""
    if withdrawn == (article.withdrawn_at is not None):
        return False
    article.withdrawn_at = now if withdrawn else None
    kind = "withdrawn" if withdrawn else "restored"
    store.add_revision(session, article.id, now, kind, None, None)
    return True


def _add_comments(
    session: Session, article_id: int, comments: list[CommentIn], created: bool
) -> int:
    existing = store.comment_numbers(session, article_id) if not created else {}
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
    store.add_comments(session, new_rows, changed)
    return len(new_rows)


def _slug(section: str) -> str:
    return re.sub(r"[^\w]+", "-", section.lower()).strip("-") or "other"
