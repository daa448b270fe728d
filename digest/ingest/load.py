"""Loading records into the store, one savepoint each: a bad record is reported
and skipped, every other one is kept. Re-ingesting an article updates it and adds
only the comments it did not have (by number), so counts never double; a changed
title, lead or URL, and a withdrawal, are kept as revisions (the corrections a send
in progress must not pass by)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from digest import store
from digest.db import DatabaseError, Factory, Session
from digest.ingest.comments import comment_rows
from digest.ingest.lookups import Lookups, chunks, section_slug
from digest.ingest.records import (
    MAX_COMMENTS,
    ArticleIn,
    CommentIn,
    IngestReport,
    Problem,
    WithdrawalIn,
    describe,
)
from digest.models import Article, Clock, utcnow

__all__ = ["IngestReport", "Ingester", "section_slug"]

# What a correction is: the fields a reader sees of an article in the mail.
TRACKED = ("title", "lead", "url")


@dataclass
class Stored:
    created: bool
    comments: int
    corrected: bool
    withdrawn: bool


class Ingester:
    """Loads validated records into the store, one savepoint per record."""

    def __init__(
        self,
        factory: Factory,
        commit_every: int = 200,
        clock: Clock = utcnow,
        unknown_withdrawals: bool = True,
    ) -> None:
        self.factory = factory
        self.clock = clock
        self.commit_every = commit_every
        # Say so when a withdrawal names an article digest never had. A site
        # database is read whole: its drafts and trash are unknown by design.
        self.unknown_withdrawals = unknown_withdrawals

    def load(self, records: Iterable[tuple[str, dict[str, Any] | Problem]]) -> IngestReport:
        """``records``: (where, raw dict or a Problem found while reading). Read
        ``commit_every`` at a time: the articles a chunk names are looked up in one
        query, and each chunk is one commit."""
        report = IngestReport()
        with self.factory() as session:
            for chunk in chunks(records, self.commit_every):
                lookups = Lookups()
                lookups.prefetch(session, [raw for _, raw in chunk if isinstance(raw, dict)])
                for where, raw in chunk:
                    if isinstance(raw, Problem):
                        report.reject(raw.where, raw.reason)
                        continue
                    self._load_one(session, where, raw, report, lookups)
                session.commit()
        return report

    def _load_one(
        self,
        session: Session,
        where: str,
        raw: dict[str, Any],
        report: IngestReport,
        lookups: Lookups,
    ) -> None:
        if isinstance(raw.get("withdrawn"), bool) and not {"url", "title"} & raw.keys():
            self._withdraw(session, where, raw, report, lookups)
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
                stored = _store(session, article, comments, self.clock(), lookups)
        except DatabaseError as exc:
            lookups.forget()  # what the savepoint made is gone
            report.reject(where, f"id {article.id}: database refused it: {exc}")
            return
        report.loaded += stored.created
        report.updated += not stored.created
        report.comments_added += stored.comments
        report.corrected += stored.corrected
        report.withdrawn += stored.withdrawn

    def _withdraw(
        self,
        session: Session,
        where: str,
        raw: dict[str, Any],
        report: IngestReport,
        lookups: Lookups,
    ) -> None:
        """The short form ``{"id": …, "withdrawn": true}``: only a known article."""
        try:
            short = WithdrawalIn.model_validate(raw)
        except ValidationError as exc:
            report.reject(where, describe(exc))
            return
        article = lookups.article(session, short.id)
        if article is None:
            if self.unknown_withdrawals:
                report.warnings.append(
                    Problem(where, f"id {short.id}: no such article to withdraw")
                )
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


def _store(
    session: Session, data: ArticleIn, comments: list[CommentIn], now: datetime, lookups: Lookups
) -> Stored:
    section_id = lookups.section(session, data.section) if data.section else None
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
    article = lookups.article(session, data.id)
    created = article is None
    corrected = False
    if article is None:
        article = Article(external_id=data.id, **fields)
        article.withdrawn_at = now if data.withdrawn else None
        store.keep(session, article, now=True)
        lookups.articles[data.id] = article
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
    if not comments:
        return 0
    existing = store.comment_numbers(session, article_id) if not created else {}
    new_rows, changed = comment_rows(article_id, comments, existing)
    store.add_comments(session, new_rows, changed)
    return len(new_rows)
