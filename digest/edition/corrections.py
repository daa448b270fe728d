"""Corrections after approval: the site changes a headline or withdraws an article
while its edition is being sent.

A send asks ``between_batches`` before each claim batch: an article of the edition
changed since its variants were rendered (a revision newer than the edition's
``revision_mark``) pauses it, or with ``DIGEST_ON_CORRECTION=ignore`` is logged and
passed by. ``rebuild`` renders the variants again as a new version: the deliveries
not yet sent take it (their Message-IDs do not change: they are the edition's and
the reader's), the sent ones keep pointing at the version they went out with.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from digest import store
from digest.db import Session, transaction
from digest.edition.lifecycle import MOVES, Step, move
from digest.errors import EditionError
from digest.kinds import state_word
from digest.models import Edition, EditionStatus
from digest.store import Revision

if TYPE_CHECKING:
    from digest.db import Factory
    from digest.edition.build import Editions
    from digest.models import Clock
    from digest.toolkit import Toolkit

log = logging.getLogger(__name__)

CORRECTION = "correction"  # Edition.pause_reason of a pause this module made
SYSTEM = "digest"  # the change log's name for what no person did


@dataclass(frozen=True)
class Rebuilt:
    label: str
    revisions: list[Revision]
    variants: int
    repointed: int  # deliveries not yet sent that take the new text
    resumed: bool  # the pause was a correction's, and it is lifted


def _detail(revisions: list[Revision]) -> dict[str, Any]:
    return {"revisions": [r.id for r in revisions], "changes": [r.describe() for r in revisions]}


class Corrections:
    """``Services.corrections``."""

    def __init__(self, factory: Factory, clock: Clock, tools: Toolkit, editions: Editions) -> None:
        self.factory = factory
        self.clock = clock
        self.tools = tools
        self.editions = editions

    def pending(self, edition: Edition) -> list[Revision]:
        """Corrections of the edition's articles its variants have not taken in."""
        with self.factory() as session:
            current = store.edition_by_id(session, edition.id)
            if current is None:
                return []
            return store.revisions_since(session, current.id, current.revision_mark)

    def between_batches(self, session: Session, edition_id: int) -> bool:
        """Asked in the send's claim transaction before each batch. True: stop
        claiming, the edition was paused for a correction."""
        edition = store.edition_by_id(session, edition_id)
        if edition is None or not store.has_revisions_since(
            session, edition_id, edition.revision_mark
        ):
            return False
        revisions = store.revisions_since(session, edition_id, edition.revision_mark)
        changes = "; ".join(r.describe() for r in revisions)
        if self.tools.settings.on_correction == "ignore":
            edition.revision_mark = revisions[-1].id
            self._record(session, edition, SYSTEM, "correction-ignored", _detail(revisions))
            log.warning(
                "%s: articles changed during the send (%s); DIGEST_ON_CORRECTION=ignore: "
                "the rest goes out as approved",
                edition.label,
                changes,
                extra={"edition": edition.id},
            )
            return False
        if edition.pause_reason != CORRECTION:  # once, not at every try to send it
            if edition.status in MOVES[Step.PAUSE]:
                move(edition, Step.PAUSE)
            edition.paused_at = edition.paused_at or self.clock()
            edition.pause_reason = CORRECTION
            self._record(session, edition, SYSTEM, "correction-paused", _detail(revisions))
        log.warning(
            "%s: paused: %d correction(s) since it was rendered: %s — "
            "`digest editions rebuild %s` sends the corrected text",
            edition.label,
            len(revisions),
            changes,
            edition.label,
            extra={"edition": edition.id},
        )
        return True

    def auto_rebuild(self, edition: Edition) -> bool:
        """After a send stopped: with ``DIGEST_ON_CORRECTION=rebuild``, rebuild an
        edition a correction paused. True if the send should go on."""
        if self.tools.settings.on_correction != "rebuild":
            return False
        with self.factory() as session:
            current = store.edition_by_id(session, edition.id)
            if current is None or current.pause_reason != CORRECTION:
                return False
        return self.rebuild(edition, SYSTEM, only_if_paused=True).resumed

    def pass_by(self, edition: Edition, editor: str) -> list[Revision]:
        """The corrections pending are let be: the send goes on with the approved
        text (``digest resume --as-approved``). Returns them."""
        with transaction(self.factory) as session:
            current = store.edition_by_id(session, edition.id, lock=True)
            if current is None:
                raise EditionError(f"no edition {edition.id}", ru=f"Выпуска {edition.id} нет.")
            revisions = store.revisions_since(session, current.id, current.revision_mark)
            if revisions:
                current.revision_mark = revisions[-1].id
                self._record(session, current, editor, "correction-ignored", _detail(revisions))
            return revisions

    def rebuild(self, edition: Edition, editor: str, *, only_if_paused: bool = False) -> Rebuilt:
        """Render the edition's variants again from the articles as they are now
        (withdrawn ones left out); unsent deliveries take the new version.
        ``only_if_paused``: unless another worker already did (their rebuild lifted
        the pause): then nothing is done, and the send may go on."""
        schedule = self.tools.schedule(edition.schedule)
        with transaction(self.factory) as session:
            current = store.edition_by_id(session, edition.id, lock=True)
            if current is None:
                raise EditionError(f"no edition {edition.id}", ru=f"Выпуска {edition.id} нет.")
            if current.status is EditionStatus.CANCELLED or not current.items:
                raise EditionError(
                    f"{current.label} is {current.status}: nothing to rebuild",
                    ru=f"Выпуск {current.label} — {state_word(current.status)}: "
                    "пересобирать нечего.",
                )
            if only_if_paused and current.pause_reason != CORRECTION:
                return Rebuilt(current.label, [], 0, 0, resumed=True)
            revisions = store.revisions_since(session, current.id, current.revision_mark)
            keys, version = store.retire_variants(session, current.id, self.clock())
            self.editions.render_variants(
                session, schedule, current, refresh=True, extra=keys, version=version
            )
            new = {v.key: v.id for v in store.variants(session, current.id)}
            repointed = store.repoint_deliveries(session, current.id, new, self.clock())
            resumed = current.pause_reason == CORRECTION
            if resumed:
                move(current, Step.RESUME)
                current.paused_at = current.pause_reason = None
            detail = {**_detail(revisions), "version": version, "repointed": repointed}
            self._record(session, current, editor, "rebuild", detail)
            log.info(
                "%s rebuilt by %s: version %d of %d variant(s), %d unsent deliveries take it%s",
                current.label,
                editor,
                version,
                len(new),
                repointed,
                "; the send goes on" if resumed else "",
                extra={"edition": current.id},
            )
            edition.status = current.status
            return Rebuilt(current.label, revisions, len(new), repointed, resumed)

    def _record(
        self, session: Session, edition: Edition, editor: str, action: str, detail: dict[str, Any]
    ) -> None:
        store.add_change(session, edition.id, editor, self.clock(), action, detail)
