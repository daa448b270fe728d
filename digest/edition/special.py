"""Special editions (issue 28 §6): breaking news that cannot wait for the morning.

An editor picks articles (any, not only the window's), writes the subject, and
chooses who gets it: every reader of the schedule's list, whatever their
frequency, or only the readers of one section. It is an edition like any: a
draft numbered beside the day's (``daily/2026-12-03/special-1``), shaped,
previewed and tested in the desk, and it leaves only approved — whatever its
schedule says — through the same lifecycle, ledger, retries and reports. It is
never built by the scheduler: an editor starts its send (the desk's «Отправить
сейчас», or `digest send daily/2026-12-03/special-1`) and the workers send it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from digest import store
from digest.db import Conflict, Session, transaction
from digest.errors import EditionError
from digest.headers import clean_text
from digest.models import Article, Block, Edition, EditionItem, EditionStatus

if TYPE_CHECKING:
    from digest.db import Factory
    from digest.edition.build import Editions
    from digest.edition.lifecycle import Lifecycle
    from digest.models import Clock
    from digest.schedule.files import Schedule

MAX_ARTICLES = 20
# What the desk offers to pick from: the newest articles of these last days.
PICK_DAYS = 3
# Its nominal window: retries of a special edition end a day after it was made,
# and it counts as old once the schedule's next edition is due (issue 28 §1).
WINDOW = timedelta(days=1)


@dataclass(frozen=True)
class SpecialOrder:
    """What an editor asked for; every field came from a form or a command line."""

    schedule: str
    article_ids: tuple[int, ...]
    subject: str
    intro: str = ""
    section: str | None = None  # None: every reader of the list


class Specials:
    """``Services.specials``: make a special edition, and start its send."""

    def __init__(
        self, factory: Factory, clock: Clock, editions: Editions, lifecycle: Lifecycle
    ) -> None:
        self.factory = factory
        self.clock = clock
        self.editions = editions
        self.lifecycle = lifecycle

    def choices(self) -> tuple[list[Article], list[tuple[str, str]]]:
        """(the newest articles of the last days, the sections): the desk's form."""
        now = self.clock()
        with self.factory() as session:
            articles = store.articles_between(session, now - timedelta(days=PICK_DAYS), now, 80)
            sections = store.sections(session)
            session.expunge_all()
        return [a for a in articles if a.withdrawn_at is None], sections

    def make(self, order: SpecialOrder, editor: str) -> Edition:
        """A new special edition's draft, rendered; EditionError says what is wrong."""
        schedule = self.editions.tools.schedule(order.schedule)
        subject = clean_text(order.subject, 200).strip()
        if not subject:
            raise EditionError("Напишите тему письма.")
        ids = tuple(dict.fromkeys(order.article_ids))
        if not 0 < len(ids) <= MAX_ARTICLES:
            raise EditionError(f"Выберите от одной до {MAX_ARTICLES} статей.")
        for _ in range(2):
            # Two editors at once took the same number: the unique key said no.
            with contextlib.suppress(Conflict):
                return self._make(schedule, order, ids, subject, editor)
        return self._make(schedule, order, ids, subject, editor)

    def _make(
        self,
        schedule: Schedule,
        order: SpecialOrder,
        ids: tuple[int, ...],
        subject: str,
        editor: str,
    ) -> Edition:
        now = self.clock()
        with transaction(self.factory) as session:
            articles = self._articles(session, ids)
            section = self._section(session, order.section)
            day = schedule.today(now)
            edition = Edition(
                schedule=schedule.name,
                edition_date=day,
                number=store.next_special_number(session, schedule.name, day),
                section=section,
                window_start=now - WINDOW,
                window_end=now,
                created_at=now,
                status=EditionStatus.DRAFT,
                custom_subject=subject,
                intro=clean_text(order.intro, 500).strip() or None,
                shaped_at=now,  # chosen by hand: nothing may choose again
            )
            store.keep(session, edition)
            store.write_now(session)  # its id, for the items
            for position, article in enumerate(articles):
                block = Block.LEAD if position == 0 else Block.DAY
                store.keep(
                    session,
                    EditionItem(
                        edition_id=edition.id,
                        article_id=article.id,
                        block=block,
                        position=position,
                    ),
                )
            store.write_now(session)
            store.reload(session, edition, ["items"])
            self.editions.render_variants(session, schedule, edition, refresh=True)
            detail = {"articles": len(ids), "section": section, "subject": subject}
            store.add_change(session, edition.id, editor, now, "special", detail)
            return edition

    @staticmethod
    def _articles(session: Session, ids: tuple[int, ...]) -> list[Article]:
        found = []
        for article_id in ids:
            article = store.article_by_id(session, article_id)
            if article is None:
                raise EditionError(f"Статьи {article_id} нет.")
            if article.withdrawn_at is not None:
                raise EditionError(f"Статья «{article.title[:80]}» снята с сайта.")
            found.append(article)
        return found

    @staticmethod
    def _section(session: Session, slug: str | None) -> str | None:
        if not slug:
            return None
        if slug not in store.section_slugs(session):
            raise EditionError(f"Раздела {clean_text(slug, 60)!r} нет.")
        return slug

    def start(self, edition_id: int, editor: str) -> int:
        """Queue an approved special edition for the workers (the desk's «Отправить
        сейчас»): how many readers it goes to. A draft is refused by the lifecycle."""
        with self.factory() as session:
            edition = store.edition_by_id(session, edition_id)
            if edition is None or not edition.number:
                raise EditionError("Так отправляется только срочный выпуск.")
            session.expunge(edition)
        schedule = self.editions.tools.schedule(edition.schedule)
        added = self.lifecycle.start_sending(schedule, edition)
        with transaction(self.factory) as session:
            store.add_change(session, edition_id, editor, self.clock(), "send", {"readers": added})
        return added
