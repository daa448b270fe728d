"""Building an edition: select its articles, store them as items, render one
variant per reader's choice. A draft is refreshed every time it is built (new
articles arrive during the day); once sending starts its content is frozen, so a
resumed send sends the same bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import date, timedelta
from typing import TYPE_CHECKING

from digest import store
from digest.db import Conflict, Session, transaction
from digest.edition.view import edition_view
from digest.errors import EmptyEdition
from digest.models import Block, Edition, EditionItem, EditionStatus, EditionVariant
from digest.observe import metrics
from digest.render import EditionView, Rendered, parse_section_key, parse_variant_key
from digest.schedule.files import Schedule
from digest.select import Pick, Selection, select_edition
from digest.track.engagement import Tracker

if TYPE_CHECKING:
    from digest.db import Factory
    from digest.models import Clock
    from digest.toolkit import Toolkit

log = logging.getLogger(__name__)


class Editions:
    """Builds editions and their variants (``Services.editions``)."""

    def __init__(
        self,
        factory: Factory,
        clock: Clock,
        tools: Toolkit,
        refresh: Callable[[], None] | None = None,
    ) -> None:
        self.factory = factory
        self.clock = clock
        self.tools = tools
        # What the site's databases have now, read right before a build (issue 29);
        # it never raises: a site away leaves the edition to what digest has.
        self.refresh = refresh

    def build(self, schedule: Schedule, edition_date: date) -> Edition:
        """The edition for (schedule, date): created or refreshed while a draft,
        returned as stored once it is approved or sending. Raises EmptyEdition."""
        if self.refresh is not None:
            self.refresh()
        try:
            return self._build(schedule, edition_date)
        except Conflict:
            # Another process made the same edition first; the unique key on
            # (schedule, date) is the arbiter, so take theirs.
            return self._build(schedule, edition_date)

    def _build(self, schedule: Schedule, edition_date: date) -> Edition:
        with transaction(self.factory) as session:
            edition = store.edition_for(session, schedule.name, edition_date, lock=True)
            # A missed edition was marked before anything was chosen: it is chosen now,
            # like a draft (its view needs a lead; sending it by hand is allowed).
            if (
                edition is None
                or (edition.status is EditionStatus.DRAFT and edition.shaped_at is None)
                or (edition.status is EditionStatus.MISSED and not edition.items)
            ):
                edition = self._select(session, schedule, edition_date, edition)
                self.render_variants(session, schedule, edition, refresh=True)
            elif edition.status is EditionStatus.DRAFT:
                # An editor shaped it: their selection stays, new readers' variants come.
                self.render_variants(session, schedule, edition, refresh=True)
            else:
                self.render_variants(session, schedule, edition, refresh=False)
            return edition

    def _select(
        self, session: Session, schedule: Schedule, edition_date: date, edition: Edition | None
    ) -> Edition:
        start, end = schedule.bounds(edition_date)
        spec = schedule.select
        day = store.day_candidates(session, start, end)
        talk = store.discussions(session, start, end, end - timedelta(days=spec.lookback_days))
        ids = {c.id for c in day} | {d.article.id for d in talk}
        sent = store.already_sent(session, schedule.name, edition_date, ids, end)
        try:
            selection = select_edition(day, talk, spec, window_end=end, already_sent=sent)
        except EmptyEdition as exc:
            window = schedule.describe_window(edition_date)
            raise EmptyEdition(f"{schedule.name}/{edition_date}: {exc} ({window})") from None
        if selection.skipped_repeats:
            log.info(
                "%s/%s: %d article(s) of the window went out in an earlier edition; not repeated",
                schedule.name,
                edition_date,
                len(selection.skipped_repeats),
            )
        if edition is None:
            edition = self.new_edition(session, schedule, edition_date)
        else:
            store.clear_selection(session, edition)
            edition.window_start, edition.window_end = start, end
        store.write_now(session)
        self._store_items(session, edition, selection)
        return edition

    def new_edition(
        self,
        session: Session,
        schedule: Schedule,
        edition_date: date,
        status: EditionStatus = EditionStatus.DRAFT,
    ) -> Edition:
        start, end = schedule.bounds(edition_date)
        edition = Edition(
            schedule=schedule.name,
            edition_date=edition_date,
            window_start=start,
            window_end=end,
            created_at=self.clock(),
            status=status,
        )
        store.keep(session, edition)
        return edition

    def _store_items(self, session: Session, edition: Edition, selection: Selection) -> None:
        blocks: list[tuple[Block, Pick]] = [
            (Block.LEAD, selection.lead),
            *((Block.DAY, p) for p in selection.day),
            *((Block.DISCUSSED, p) for p in selection.discussed),
        ]
        for position, (block, pick) in enumerate(blocks):
            store.keep(
                session,
                EditionItem(
                    edition_id=edition.id,
                    article_id=pick.article.id,
                    block=block,
                    position=position,
                    discussed=pick.discussed,
                    comments_in_window=pick.comments_in_window,
                    comments_total=pick.comments_total,
                ),
            )
        store.write_now(session)
        store.reload(session, edition, ["items"])

    def _render(self, view: EditionView, schedule: Schedule) -> tuple[Rendered, int]:
        rendered = self.tools.renderer.render(view, schedule.mail.template)
        metrics.RENDER_SECONDS.observe(rendered.render_ms / 1000)
        return rendered, view.articles

    def rerender(self, session: Session, schedule: Schedule, edition: Edition) -> None:
        """Render every variant again from the stored items (an editor changed them)."""
        self.render_variants(session, schedule, edition, refresh=True)

    def render_variants(
        self,
        session: Session,
        schedule: Schedule,
        edition: Edition,
        *,
        refresh: bool,
        extra: Iterable[str] = (),
        version: int | None = None,
    ) -> None:
        """Render one variant per distinct (sections, format) choice of the active
        subscribers (and the full edition, for previews; and the ``extra`` keys, which
        a rebuild's retired variants had). premailer runs once per section choice:
        the text-only variant reuses the text of its HTML twin. New rows get
        ``version`` (default: the edition's current one)."""
        have = {v.key: v for v in store.variants(session, edition.id)}
        wanted = {"", *store.active_variant_keys(session, schedule.audience(edition)), *extra}
        missing = sorted(wanted if refresh else wanted - set(have))
        if not missing:
            return
        if version is None:
            version = max((v.version for v in have.values()), default=1)
        # Read before rendering: a correction arriving meanwhile is newer, so it is seen.
        mark = store.last_revision_id(session)
        full = edition_view(self.tools, session, schedule, edition)
        if refresh:
            edition.subject, edition.preheader = full.subject, full.preheader
            edition.revision_mark = mark
        else:
            # Frozen: a later variant keeps the subject the first messages went out with,
            # even if the schedule file's template changed since.
            full = replace(full, subject=edition.subject, preheader=edition.preheader)
        tracker = self.tools.tracker(schedule)
        rendered: dict[str, tuple[Rendered, int] | None] = {}
        preheaders: dict[str, str] = {}
        for key in missing:
            sections, text_only = parse_variant_key(key)
            # A special edition (issue 28 §6) is the articles the editor chose, whole,
            # for everyone it goes to: readers' section choices do not cut it.
            sections = "" if edition.number else sections
            if sections not in rendered:
                view = full.for_sections(parse_section_key(sections))
                rendered[sections] = None if view is None else self._render(view, schedule)
                preheaders[sections] = full.preheader if view is None else view.preheader
            variant = have.get(key) or EditionVariant(
                edition_id=edition.id, key=key, version=version
            )
            _fill(session, variant, rendered[sections], tracker, text_only)
            variant.preheader = preheaders[sections]  # its own content's (issue 27 §1)
            store.keep(session, variant)
            log.info(
                "rendered variant %r of %s: %d articles, %d bytes of HTML, %.0f ms",
                key,
                edition.label,
                variant.articles,
                len(variant.html.encode()),
                variant.render_ms,
                extra={"edition": edition.id},
            )
        store.write_now(session)


def _fill(
    session: Session,
    variant: EditionVariant,
    done: tuple[Rendered, int] | None,
    tracker: Tracker,
    text_only: bool,
) -> None:
    """A variant's bodies from its sections' render (None: nothing in them)."""
    if done is None:
        variant.html, variant.text, variant.articles, variant.render_ms = "", "", 0, 0.0
        return
    result, variant.articles = done
    links = store.link_ids(session, variant.edition_id, tracker.links(result.html))
    variant.html = "" if text_only else tracker.apply(result.html, variant.edition_id, links)
    variant.text = result.text
    variant.render_ms = result.render_ms
