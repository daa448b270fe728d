"""Editions as another program sees them (issue 30): the site's admin scripts and
ops tools list editions, read one's counts, reasons and ETA (what `digest status
--json` says), preview it for a reader, and approve, start, pause, resume or
cancel its send, through the HTTP API.

Nothing here is new about editions: every move goes through ``Lifecycle`` and its
one table, refused with its reasons; a send started here is queued for the
workers (`digest worker`), as the desk's and the scheduler's are. What is new is
that each move is written to the audit log under the token's name.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date

from digest import store
from digest.db import Factory, Session, transaction
from digest.edition.desk import split_message
from digest.edition.lifecycle import Lifecycle
from digest.edition.preview import Previews
from digest.errors import EditionError
from digest.models import Clock, Edition, EditionStatus
from digest.toolkit import Toolkit
from digest.track.reports import EditionReport, edition_report

PAGE_MOST = 100


class Move(enum.StrEnum):
    APPROVE = "approve"
    SEND = "send"
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"


@dataclass(frozen=True)
class Letter:
    """An edition's message for one reader (or the sample reader), decoded."""

    subject: str
    recipient: str
    headers: list[tuple[str, str]]
    html: str
    text: str


class NoEdition(EditionError):
    """No edition has that id."""


class RemoteEditions:
    """``Services.remote_editions``."""

    def __init__(
        self, factory: Factory, clock: Clock, tools: Toolkit, lifecycle: Lifecycle,
        previews: Previews,
    ) -> None:  # fmt: skip
        self.factory, self.clock, self.tools = factory, clock, tools
        self.lifecycle, self.previews = lifecycle, previews

    def listing(
        self,
        schedule: str | None = None,
        status: EditionStatus | None = None,
        since: date | None = None,
        until: date | None = None,
        limit: int = 20,
        before: int | None = None,
    ) -> list[EditionReport]:
        limit = max(1, min(limit, PAGE_MOST))
        with self.factory() as session:
            found = store.editions_where(session, schedule, status, since, until, limit, before)
            return [edition_report(session, e) for e in found]

    def report(self, edition_id: int) -> EditionReport:
        with self.factory() as session:
            found = self._find(session, edition_id)
            return edition_report(session, found, self.clock())

    def letter(self, edition_id: int, email: str | None) -> Letter:
        """Exactly what the reader (or, without ``email``, a sample reader) would get."""
        with self.factory() as session:
            edition = self._find(session, edition_id)
        schedule = self.tools.schedule(edition.schedule)
        message = self.previews.preview(schedule, edition, email)
        html, text, headers = split_message(message.data)
        return Letter(edition.subject, message.envelope_to, headers, html, text)

    def move(self, edition_id: int, step: Move, who: str) -> EditionReport:
        """One move of the lifecycle, audited; refused (EditionError) as the desk's."""
        with self.factory() as session:
            edition = self._find(session, edition_id)
        detail: dict[str, object] = {"edition": edition.label}
        if step is Move.APPROVE:
            self.lifecycle.approve(edition)
        elif step is Move.SEND:
            schedule = self.tools.schedule(edition.schedule)
            detail["deliveries"] = self.lifecycle.start_sending(schedule, edition)
        elif step is Move.PAUSE:
            self.lifecycle.pause(edition)
        elif step is Move.RESUME:
            self.lifecycle.resume(edition)
        else:
            detail["suppressed"], detail["held"] = self.lifecycle.cancel(edition)
        with transaction(self.factory) as session:
            store.add_audit(session, self.clock(), who, f"edition {step}", None, detail)
        return self.report(edition_id)

    def _find(self, session: Session, edition_id: int) -> Edition:
        found = store.edition_by_id(session, edition_id)
        if found is None:
            raise NoEdition(f"no edition {edition_id}", ru=f"Выпуска {edition_id} нет.")
        return found
