"""`digest db prune --keep 30d` (issue 31 §4): old editions' delivery rows made
summaries, then removed, so the table holds the last weeks, not every reader of
every day since the start (3 GB a day at ten million readers).

A delivery row is needed while its edition is sent and retried, while bounces
and complaints can still arrive (days), and for the soft-bounce rule
(``DIGEST_SOFT_BOUNCE_DAYS``): keeping fewer days than that is refused. After
that the edition's counts are what anyone reads: `digest status`, the desk and
the API read the summary of a pruned edition."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from digest import store
from digest.db import Factory, transaction
from digest.errors import DigestError
from digest.models import Clock
from digest.track.reports import group_failures

BATCH = 10_000  # rows a delete removes, each in its own short transaction


class RetentionError(DigestError):
    """Delivery rows cannot be pruned as asked."""


@dataclass
class PruneReport:
    before: date  # editions dated before this day were pruned
    editions: list[tuple[str, int]] = field(default_factory=list)  # (label, rows)

    @property
    def rows(self) -> int:
        return sum(n for _, n in self.editions)


class Retention:
    def __init__(
        self, factory: Factory, clock: Clock, soft_bounce_days: int, batch: int = BATCH
    ) -> None:
        self.factory = factory
        self.clock = clock
        self.soft_bounce_days = soft_bounce_days
        self.batch = batch

    def prune(self, keep_days: int, *, dry_run: bool = False) -> PruneReport:
        """Each edition older than ``keep_days`` whose send is over: its summary
        written (once), then its delivery rows removed in batches."""
        if keep_days < self.soft_bounce_days:
            raise RetentionError(
                f"--keep {keep_days}d is shorter than DIGEST_SOFT_BOUNCE_DAYS "
                f"({self.soft_bounce_days}): the soft-bounce rule reads that many days of "
                "deliveries"
            )
        report = PruneReport((self.clock() - timedelta(days=keep_days)).date())
        with self.factory() as session:
            editions = store.prunable_editions(session, report.before)
        for edition_id, label in editions:
            if dry_run:
                with self.factory() as session:
                    rows = sum(store.delivery_counts(session, edition_id).values())
                report.editions.append((label, rows))
                continue
            with transaction(self.factory) as session:
                failures = group_failures(store.failure_reasons(session, edition_id))
                store.keep_summary(session, edition_id, failures, self.clock())
            report.editions.append((label, self._delete(edition_id)))
        return report

    def _delete(self, edition_id: int) -> int:
        removed = 0
        while True:
            with transaction(self.factory) as session:
                gone = store.delete_deliveries(session, edition_id, self.batch)
            removed += gone
            if gone < self.batch:
                return removed
