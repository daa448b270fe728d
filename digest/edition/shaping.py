"""The editors' desk: what an editor can see and change of an edition.

Shaping a draft (pin, drop, move, add an article, intro, subject) changes its
stored items, marks it ``shaped`` (a later rebuild keeps the editor's
selection instead of choosing again), re-renders its variants and records
who did what and when in ``edition_change``. Only drafts can be shaped; an
approval can be taken back until sending starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from digest import store
from digest.db import Session, transaction
from digest.edition.desk import _BLOCKS, DeskView, letter_order
from digest.errors import EditionError, EmptyEdition
from digest.headers import clean_text
from digest.kinds import state_word
from digest.models import (
    Block,
    Edition,
    EditionItem,
    EditionStatus,
)
from digest.schedule.files import Schedule
from digest.send import Single

if TYPE_CHECKING:
    from digest.db import Factory
    from digest.edition.build import Editions
    from digest.edition.lifecycle import Lifecycle
    from digest.edition.preview import Previews
    from digest.models import Clock
    from digest.toolkit import Toolkit

ACTIONS = ("pin", "drop", "up", "down", "add")


class Shaping:
    """What an editor changes: the draft's articles, intro, subject, approval, a test."""

    def __init__(
        self,
        factory: Factory,
        clock: Clock,
        tools: Toolkit,
        editions: Editions,
        lifecycle: Lifecycle,
        previews: Previews,
        view: DeskView,
    ) -> None:
        self.factory = factory
        self.clock = clock
        self.tools = tools
        self.editions = editions
        self.lifecycle = lifecycle
        self.previews = previews
        self.view = view

    def prepare(self, schedule_name: str) -> Edition:
        """The draft of the schedule's next edition (made now if it does not exist)."""
        schedule = self.tools.schedule(schedule_name)
        now = self.clock()
        for fired in schedule.next_fires(now, 3):
            try:
                return self.editions.build(schedule, schedule.today(fired))
            except EmptyEdition:
                continue
        raise EmptyEdition(f"{schedule_name}: nothing to put in the next editions yet")

    def shape(self, edition_id: int, action: str, article_id: int, editor: str) -> None:
        if action not in ACTIONS:
            raise EditionError("Неизвестное действие.")
        schedule, _ = self.view.edition(edition_id)
        with transaction(self.factory) as session:
            edition = self._draft(session, edition_id)
            items = sorted(edition.items, key=lambda i: (_BLOCKS[i.block], i.position))
            target = next((i for i in items if i.article_id == article_id), None)
            if action == "add":
                if target is None:
                    self._add(session, edition, article_id, items)
            elif target is None:
                raise EditionError(f"Статьи {article_id} нет в выпуске {edition.label}.")
            elif action == "pin":
                self._pin(items, target)
            elif action == "drop":
                self._drop(session, edition, items, target)
            else:
                self._move(items, target, -1 if action == "up" else 1)
            title = store.article_by_id(session, article_id)
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
        schedule, _ = self.view.edition(edition_id)
        intro = clean_text(intro, 500)
        subject = clean_text(subject, 200)
        with transaction(self.factory) as session:
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
        _, edition = self.view.edition(edition_id)
        status = self.lifecycle.approve(edition, approved=approved)
        with transaction(self.factory) as session:
            current = store.edition_by_id(session, edition_id)
            assert current is not None
            self._record(session, current, editor, "approve" if approved else "unapprove", None)
        return status

    def send_test(self, edition_id: int, to: str, editor: str) -> Single:
        schedule, edition = self.view.edition(edition_id)
        result = self.previews.send_test(schedule, edition, to)
        with transaction(self.factory) as session:
            current = store.edition_by_id(session, edition_id)
            assert current is not None
            detail = {"to": to, "code": result.code, "reply": result.reply[:200]}
            self._record(session, current, editor, "test", detail)
        return result

    def _draft(self, session: Session, edition_id: int) -> Edition:
        edition = store.edition_by_id(session, edition_id, lock=True)
        if edition is None:
            raise EditionError(f"no edition {edition_id}", ru=f"Выпуска {edition_id} нет.")
        if edition.status is not EditionStatus.DRAFT:
            raise EditionError(
                f"{edition.label} is {edition.status}: only a draft can be changed "
                "(take the approval back first)",
                ru=f"Выпуск {edition.label} — {state_word(edition.status)}: менять можно "
                "только черновик (сначала снимите утверждение).",
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
            raise EditionError(
                "the last article cannot be dropped: cancel the edition instead",
                ru="Последнюю статью убрать нельзя: отмените выпуск.",
            )
        if target.block is Block.LEAD:
            successor = rest[0]
            successor.block = Block.LEAD
        edition.items.remove(target)
        store.remove(session, target)

    @staticmethod
    def _move(items: list[EditionItem], target: EditionItem, step: int) -> None:
        # Among what the letter shows together: the day's articles of one section
        # (issue 28 §4: a swap across sections changed nothing anyone could see).
        together = sorted(items, key=letter_order)
        same = [
            i
            for i in together
            if i.block is target.block
            and (target.block is not Block.DAY or i.article.section_id == target.article.section_id)
        ]
        index = same.index(target)
        other = index + step
        if 0 <= other < len(same):
            neighbour = same[other]
            target.position, neighbour.position = neighbour.position, target.position

    def _add(
        self, session: Session, edition: Edition, article_id: int, items: list[EditionItem]
    ) -> None:
        if store.article_by_id(session, article_id) is None:
            raise EditionError(f"no article {article_id}", ru=f"Статьи {article_id} нет.")
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
        store.add_change(session, edition.id, editor, self.clock(), action, detail)

    def _rerender(self, session: Session, schedule: Schedule, edition: Edition) -> None:
        edition.shaped_at = edition.shaped_at or self.clock()
        store.write_now(session)
        store.expire(session, edition, ["items"])
        self.editions.rerender(session, schedule, edition)


def _first_position(items: list[EditionItem], block: Block) -> int:
    return min((i.position for i in items if i.block is block), default=0)
