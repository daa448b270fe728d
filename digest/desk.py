"""The editors' desk: what an editor can see and change of an edition.

Shaping a draft (pin, drop, move, add an article, intro, subject) changes its
stored items, marks it ``shaped`` (a later rebuild keeps the editor's
selection instead of choosing again), re-renders its variants and records
who did what and when in ``edition_change``. Only drafts can be shaped; an
approval can be taken back until sending starts.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest import queries
from digest.compose import Message
from digest.db import transaction
from digest.edition import Pipeline
from digest.errors import EditionError, EmptyEdition
from digest.headers import clean_text
from digest.models import (
    Article,
    Block,
    Delivery,
    DeliveryStatus,
    Edition,
    EditionChange,
    EditionItem,
    EditionStatus,
    Event,
    EventKind,
)
from digest.schedule import Schedule, load_schedules
from digest.send import Single
from digest.track import EditionReport, edition_report

ACTIONS = ("pin", "drop", "up", "down", "add")
GMAIL_CLIP = 102 * 1024  # Gmail clips a message whose HTML is larger


@dataclass(frozen=True)
class ItemRow:
    article_id: int
    title: str
    url: str
    block: str
    section: str
    published_at: datetime


@dataclass(frozen=True)
class ChangeRow:
    editor: str
    at: datetime
    action: str
    detail: dict[str, Any] | None


@dataclass(frozen=True)
class PreviewPage:
    edition: EditionReport
    message: Message
    html: str
    text: str
    headers: list[tuple[str, str]]
    variants: list[tuple[str, int]]  # (key, articles)
    variant: str
    items: list[ItemRow]
    candidates: list[ItemRow]
    changes: list[ChangeRow]
    intro: str
    subject: str
    shaped: bool

    @property
    def html_bytes(self) -> int:
        return len(self.html.encode("utf-8"))

    @property
    def clipped(self) -> bool:
        return self.html_bytes > GMAIL_CLIP


@dataclass
class DeliveryPage:
    edition: EditionReport
    bounces: int = 0
    unsubscribes: int = 0
    per_minute: list[tuple[str, int]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            **self.edition.as_json(),
            "bounces": self.bounces,
            "unsubscribes": self.unsubscribes,
            "per_minute": [{"minute": m, "sent": n} for m, n in self.per_minute],
        }


class Desk:
    def __init__(self, pipe: Pipeline) -> None:
        self.pipe = pipe

    def schedules(self) -> dict[str, Schedule]:
        return load_schedules(self.pipe.settings.schedules_dir, self.pipe.settings.timezone)

    # -- looking -------------------------------------------------------------------

    def editions(self, limit: int = 60) -> tuple[list[EditionReport], list[EditionReport]]:
        """(upcoming drafts and today's, newest first; then the archive of the rest)."""
        today = self.pipe.clock().astimezone(self.pipe.settings.zone).date()
        open_ = (EditionStatus.DRAFT, EditionStatus.APPROVED, EditionStatus.SENDING)
        current: list[EditionReport] = []
        archive: list[EditionReport] = []
        with self.pipe.factory() as session:
            for e in queries.recent_editions(session, limit):
                upcoming = e.edition_date >= today or e.status in open_
                (current if upcoming else archive).append(edition_report(session, e))
        return current, archive

    def edition(self, edition_id: int) -> tuple[Schedule, Edition]:
        with self.pipe.factory() as session:
            found = session.get(Edition, edition_id)
        if found is None:
            raise EditionError(f"no edition {edition_id}")
        return self.pipe.schedule(found.schedule), found

    def preview(self, edition_id: int, variant: str = "") -> PreviewPage:
        schedule, edition = self.edition(edition_id)
        with self.pipe.factory() as session:
            current = session.get(Edition, edition_id)
            assert current is not None
            report = edition_report(session, current)
            variants = [(v.key, v.articles) for v in queries.variants(session, edition_id)]
            items = self._items(session, current)
            candidates = self._candidates(session, current) if self._shapeable(current) else []
            changes = self._changes(session, edition_id)
        if variant not in {k for k, _ in variants}:
            variant = ""
        message = self.pipe.preview(schedule, edition, variant_key_=variant)
        html, text, headers = split_message(message.data)
        return PreviewPage(
            edition=report,
            message=message,
            html=html,
            text=text,
            headers=headers,
            variants=sorted(variants),
            variant=variant,
            items=items,
            candidates=candidates,
            changes=changes,
            intro=edition.intro or "",
            subject=edition.subject,
            shaped=edition.shaped_at is not None,
        )

    def delivery(self, edition_id: int) -> DeliveryPage:
        with self.pipe.factory() as session:
            current = session.get(Edition, edition_id)
            if current is None:
                raise EditionError(f"no edition {edition_id}")
            page = DeliveryPage(edition_report(session, current))
            page.bounces = _count(
                session,
                select(func.count())
                .select_from(Delivery)
                .where(
                    Delivery.edition_id == edition_id, Delivery.status == DeliveryStatus.BOUNCED
                ),
            )
            since = current.created_at
            page.unsubscribes = _count(
                session,
                select(func.count())
                .select_from(Event)
                .where(Event.kind == EventKind.UNSUBSCRIBE, Event.at >= since),
            )
            page.per_minute = list(_per_minute(session, edition_id))
        return page

    def _items(self, session: Session, edition: Edition) -> list[ItemRow]:
        items = sorted(edition.items, key=lambda i: (_BLOCKS[i.block], i.position))
        return [_row(i.article, i.block.value) for i in items]

    def _candidates(self, session: Session, edition: Edition) -> list[ItemRow]:
        """Articles of the window (and since: late arrivals) not in the edition."""
        chosen = {i.article_id for i in edition.items}
        until = max(edition.window_end, self.pipe.clock())
        articles = session.scalars(
            select(Article)
            .where(Article.published_at >= edition.window_start, Article.published_at < until)
            .order_by(Article.published_at.desc())
            .limit(60)
        )
        return [_row(a, "") for a in articles if a.id not in chosen]

    @staticmethod
    def _changes(session: Session, edition_id: int) -> list[ChangeRow]:
        rows = session.scalars(
            select(EditionChange)
            .where(EditionChange.edition_id == edition_id)
            .order_by(EditionChange.id.desc())
        )
        return [ChangeRow(c.editor, c.at, c.action, c.detail) for c in rows]

    @staticmethod
    def _shapeable(edition: Edition) -> bool:
        return edition.status is EditionStatus.DRAFT

    # -- changing ------------------------------------------------------------------

    def prepare(self, schedule_name: str) -> Edition:
        """The draft of the schedule's next edition (made now if it does not exist)."""
        schedule = self.pipe.schedule(schedule_name)
        now = self.pipe.clock()
        for fired in schedule.next_fires(now, 3):
            try:
                return self.pipe.build(schedule, schedule.today(fired))
            except EmptyEdition:
                continue
        raise EmptyEdition(f"{schedule_name}: nothing to put in the next editions yet")

    def shape(self, edition_id: int, action: str, article_id: int, editor: str) -> None:
        if action not in ACTIONS:
            raise EditionError(f"unknown action {action!r}")
        schedule, _ = self.edition(edition_id)
        with transaction(self.pipe.factory) as session:
            edition = self._draft(session, edition_id)
            items = sorted(edition.items, key=lambda i: (_BLOCKS[i.block], i.position))
            target = next((i for i in items if i.article_id == article_id), None)
            if action == "add":
                if target is None:
                    self._add(session, edition, article_id, items)
            elif target is None:
                raise EditionError(f"article {article_id} is not in {edition.label}")
            elif action == "pin":
                self._pin(items, target)
            elif action == "drop":
                self._drop(session, edition, items, target)
            else:
                self._move(items, target, -1 if action == "up" else 1)
            title = session.get(Article, article_id)
            self._record(
                session,
                edition,
                editor,
                action,
                {
                    "article": article_id,
                    "title": title.title[:200] if title else None,
                },
            )
            self._rerender(session, schedule, edition)

    def set_text(self, edition_id: int, intro: str, subject: str, editor: str) -> None:
        schedule, _ = self.edition(edition_id)
        intro = clean_text(intro, 500)
        subject = clean_text(subject, 200)
        with transaction(self.pipe.factory) as session:
            edition = self._draft(session, edition_id)
            detail: dict[str, Any] = {}
            if intro != (edition.intro or ""):
                edition.intro = intro or None
                detail["intro"] = intro
            if subject and subject != edition.subject:
                edition.custom_subject = subject
                detail["subject"] = subject
            if detail:
                self._record(session, edition, editor, "text", detail)
                self._rerender(session, schedule, edition)

    def approve(self, edition_id: int, approved: bool, editor: str) -> EditionStatus:
        _, edition = self.edition(edition_id)
        status = self.pipe.approve(edition, approved=approved)
        with transaction(self.pipe.factory) as session:
            current = session.get(Edition, edition_id)
            assert current is not None
            self._record(session, current, editor, "approve" if approved else "unapprove", None)
        return status

    def send_test(self, edition_id: int, to: str, editor: str) -> Single:
        schedule, edition = self.edition(edition_id)
        result = self.pipe.send_test(schedule, edition, to)
        with transaction(self.pipe.factory) as session:
            current = session.get(Edition, edition_id)
            assert current is not None
            detail = {"to": to, "code": result.code, "reply": result.reply[:200]}
            self._record(session, current, editor, "test", detail)
        return result

    def _draft(self, session: Session, edition_id: int) -> Edition:
        edition = session.get(Edition, edition_id, with_for_update=True)
        if edition is None:
            raise EditionError(f"no edition {edition_id}")
        if edition.status is not EditionStatus.DRAFT:
            raise EditionError(
                f"{edition.label} is {edition.status}: only a draft can be changed "
                "(take the approval back first)"
            )
        return edition

    @staticmethod
    def _pin(items: list[EditionItem], target: EditionItem) -> None:
        """To the top: it leads; the old lead opens the day's list."""
        lead = next((i for i in items if i.block is Block.LEAD), None)
        target.pinned = True
        if target is lead:
            return
        if lead is not None:
            lead.block = Block.DAY
            lead.position = _first_position(items, Block.DAY) - 1
        target.block = Block.LEAD
        target.position = -1

    @staticmethod
    def _drop(
        session: Session, edition: Edition, items: list[EditionItem], target: EditionItem
    ) -> None:
        rest = [i for i in items if i is not target and i.block is not Block.DISCUSSED]
        if not rest:
            raise EditionError("the last article cannot be dropped: cancel the edition instead")
        if target.block is Block.LEAD:
            successor = rest[0]
            successor.block = Block.LEAD
        edition.items.remove(target)
        session.delete(target)

    @staticmethod
    def _move(items: list[EditionItem], target: EditionItem, step: int) -> None:
        same = [i for i in items if i.block is target.block]
        index = same.index(target)
        other = index + step
        if 0 <= other < len(same):
            neighbour = same[other]
            target.position, neighbour.position = neighbour.position, target.position

    def _add(
        self, session: Session, edition: Edition, article_id: int, items: list[EditionItem]
    ) -> None:
        if session.get(Article, article_id) is None:
            raise EditionError(f"no article {article_id}")
        edition.items.append(
            EditionItem(
                edition_id=edition.id,
                article_id=article_id,
                block=Block.DAY,
                position=max((i.position for i in items), default=0) + 1,
            )
        )

    def _record(
        self,
        session: Session,
        edition: Edition,
        editor: str,
        action: str,
        detail: dict[str, Any] | None,
    ) -> None:
        session.add(
            EditionChange(
                edition_id=edition.id,
                editor=editor,
                at=self.pipe.clock(),
                action=action,
                detail=detail,
            )
        )

    def _rerender(self, session: Session, schedule: Schedule, edition: Edition) -> None:
        edition.shaped_at = edition.shaped_at or self.pipe.clock()
        session.flush()
        session.expire(edition, ["items"])
        self.pipe.rerender(session, schedule, edition)


_BLOCKS = {Block.LEAD: 0, Block.DAY: 1, Block.DISCUSSED: 2}


def _first_position(items: list[EditionItem], block: Block) -> int:
    return min((i.position for i in items if i.block is block), default=0)


def _row(article: Article, block: str) -> ItemRow:
    return ItemRow(
        article_id=article.id,
        title=article.title,
        url=article.url,
        block=block,
        section=article.section.title if article.section else "",
        published_at=article.published_at,
    )


def _count(session: Session, query: Any) -> int:
    return int(session.scalar(query) or 0)


def _per_minute(session: Session, edition_id: int) -> Iterator[tuple[str, int]]:
    """Messages accepted per minute, for the delivery chart (gaps as zeros)."""
    times = sorted(
        t
        for t in session.scalars(
            select(Delivery.sent_at).where(
                Delivery.edition_id == edition_id, Delivery.sent_at.is_not(None)
            )
        )
        if t is not None
    )
    if not times:
        return
    counts: dict[datetime, int] = {}
    for t in times:
        minute = t.replace(second=0, microsecond=0)
        counts[minute] = counts.get(minute, 0) + 1
    minute, last = min(counts), max(counts)
    steps = 0
    while minute <= last and steps < 240:
        yield minute.strftime("%H:%M"), counts.get(minute, 0)
        minute += timedelta(minutes=1)
        steps += 1


def split_message(data: bytes) -> tuple[str, str, list[tuple[str, str]]]:
    """(HTML part, text part, headers) of a composed message, for the preview."""
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    headers = [(k, str(v)) for k, v in parsed.items()]
    html_part = parsed.get_body(("html",))
    text_part = parsed.get_body(("plain",))
    html = str(html_part.get_content()) if html_part is not None else ""
    text = str(text_part.get_content()) if text_part is not None else ""
    return html, text, headers
