"""What processes that died left behind, put right before anything is claimed:
the messages their journals say the relay accepted (issues 18, 32), the
unsubscribes `digest serve` queued while the database was away, and their claims."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from digest import store
from digest.audience.queued import UnsubscribeQueue
from digest.audience.subscribers import reader_book
from digest.compose import Composer
from digest.db import transaction
from digest.errors import DigestError
from digest.models import utcnow
from digest.send.options import journal_folder
from digest.send.workers import reclaim_dead, settle_journals

if TYPE_CHECKING:
    from digest.db import Factory
    from digest.models import Clock
    from digest.toolkit import Toolkit

log = logging.getLogger(__name__)


class Recovery:
    """``Sender.recovery``: one per process."""

    def __init__(self, factory: Factory, clock: Clock, tools: Toolkit) -> None:
        self.factory = factory
        self.clock = clock
        self.tools = tools
        self._database: str | None = None

    @property
    def database(self) -> str:
        """The database's identity, which its outcomes journals name (issue 32)."""
        if self._database is None:
            with transaction(self.factory) as session:
                self._database = store.database_identity(session)
        return self._database

    def run(self) -> int:
        """Journals first (their messages are sent: never again), then the queued
        unsubscribes (none of them is sent to), then the dead processes' claims;
        how many claims came back."""
        cfg, factory = self.tools.settings, self.factory
        settle_journals(factory, journal_folder(cfg), self.database, self.message_id_of())
        book = reader_book(factory, self.clock)
        UnsubscribeQueue.of(cfg.var_dir).apply(book.unsubscribe_key)
        reclaimed = reclaim_dead(factory, utcnow())
        if reclaimed:
            log.info("took back %d deliveries claimed by processes that died", reclaimed)
        return reclaimed

    def message_id_of(self) -> Callable[[store.Settled], str | None]:
        """The Message-ID a delivery's message carries, by the composer's rule; None
        if its schedule is gone (a journal line for it is then not applied)."""
        composers: dict[str, Composer | None] = {}

        def message_id(found: store.Settled) -> str | None:
            if found.schedule not in composers:
                try:
                    schedule = self.tools.schedule(found.schedule)
                    composers[found.schedule] = self.tools.composer(schedule)
                except DigestError as exc:
                    log.warning("schedule %s: %s", found.schedule, exc)
                    composers[found.schedule] = None
            composer = composers[found.schedule]
            if composer is None:
                return None
            prefix = composer.message_id_prefix(
                found.edition_id, found.schedule, found.edition_date
            )
            return composer.message_id(prefix, found.subscriber_id)

        return message_id
