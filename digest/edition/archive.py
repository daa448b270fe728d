"""The public archive's reading: sent editions by page, the newest for the feed,
and one edition as a web page (every section, nobody's links, no tracking).
The door under ``/archive/`` parses the address and calls this."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from digest import store
from digest.db import Factory, Session
from digest.edition.view import edition_view
from digest.errors import RenderError
from digest.models import Edition
from digest.render import EditionView
from digest.schedule.files import Schedule
from digest.toolkit import Toolkit

PAGE = 30  # editions per index page
FEED_ENTRIES = 50


class Archive:
    def __init__(self, factory: Factory, tools: Toolkit) -> None:
        self.factory = factory
        self.tools = tools

    def listing(self, page: int) -> tuple[list[Edition], int] | None:
        """The editions of index page ``page`` and how many pages there are; None
        for a page past the last (the first page exists even when empty)."""
        with self.factory() as session:
            pages = max(1, -(-store.archived_count(session) // PAGE))
            if page > pages:
                return None
            return store.archived_editions(session, PAGE, (page - 1) * PAGE), pages

    def newest(self) -> list[Edition]:
        with self.factory() as session:
            return store.archived_editions(session, FEED_ENTRIES)

    def page_of(self, schedule: str, day: date) -> str | None:
        """The page of the edition of ``schedule`` on ``day``; None unless it was sent."""
        with self.factory() as session:
            edition = store.edition_for(session, schedule, day)
            if edition is None or edition.status not in store.ARCHIVED:
                return None
            chosen = self.tools.schedule(schedule)
            view = self._view(session, chosen, edition)
        return self._render(view, chosen, edition)

    def page(self, schedule: Schedule, edition: Edition) -> str:
        """The edition as a web page, whatever its state (a correction's check)."""
        with self.factory() as session:
            current = store.edition_by_id(session, edition.id)
            assert current is not None
            view = self._view(session, schedule, current)
        return self._render(view, schedule, edition)

    def _view(self, session: Session, schedule: Schedule, edition: Edition) -> EditionView:
        view = replace(edition_view(self.tools, session, schedule, edition), archive=True)
        return replace(view, subject=edition.subject or view.subject)

    def _render(self, view: EditionView, schedule: Schedule, edition: Edition) -> str:
        html = self.tools.renderer.render(view, schedule.mail.template).html
        if self.tools.placeholders.stem in html:
            # A public page: no slot may reach it (the secret stem keeps slots ours).
            raise RenderError(f"{edition.label}: the template puts a reader's slot in the archive")
        return html
