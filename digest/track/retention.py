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
AHEAD = 7  # days of delivery partitions made ahead of the editions that fill them


class RetentionError(DigestError):
    """Delivery rows cannot be pruned as asked."""


@dataclass
class PruneReport:
    before: date  # editions dated before this day were pruned
    editions: list[tuple[str, int]] = field(default_factory=list)  # (label, rows)
    days: list[date] = field(default_factory=list)  # partitions dropped whole (PostgreSQL)

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
        written (once), then its delivery rows removed: on PostgreSQL its day's
        partition dropped whole when no edition of that day is still sending,
        else (and on SQLite) in batches."""
        if keep_days < self.soft_bounce_days:
            raise RetentionError(
                f"--keep {keep_days}d is shorter than DIGEST_SOFT_BOUNCE_DAYS "
                f"({self.soft_bounce_days}): the soft-bounce rule reads that many days of "
                "deliveries"
            )
        report = PruneReport((self.clock() - timedelta(days=keep_days)).date())
        with self.factory() as session:
            editions = store.prunable_editions(session, report.before)
        if dry_run:
            for edition_id, label, _ in editions:
                with self.factory() as session:
                    count = sum(store.delivery_counts(session, edition_id).values())
                report.editions.append((label, count))
            return report
        rows: dict[int, int] = {}
        for edition_id, _, _ in editions:
            with transaction(self.factory) as session:
                failures = group_failures(store.failure_reasons(session, edition_id))
                summary = store.keep_summary(session, edition_id, failures, self.clock())
                rows[edition_id] = sum(summary.counts.values())
        dropped = self._drop_days(report.before)
        for edition_id, label, day in editions:
            if day not in dropped:
                rows[edition_id] = self._delete(edition_id)
            report.editions.append((label, rows[edition_id]))
        report.days = sorted(dropped)
        return report

    def _drop_days(self, before: date) -> set[date]:
        """PostgreSQL: every day's partition older than ``before`` whose editions
        are all over (their summaries kept) dropped; the days dropped."""
        dropped = set()
        with self.factory() as session:
            days = [d for d in store.partition_days(session) if d < before]
        for day in days:
            with transaction(self.factory) as session:
                if store.day_still_open(session, day):
                    continue
                store.drop_partition(session, day)
            dropped.add(day)
        return dropped

    def make_room(self, ahead: int = AHEAD) -> list[date]:
        """PostgreSQL: a delivery partition for yesterday, today and ``ahead``
        days on (the scheduler's daily job); the days made."""
        with transaction(self.factory) as session:
            return store.make_partitions(session, store.days_around(self.clock().date(), ahead))

    def _delete(self, edition_id: int) -> int:
        with transaction(self.factory) as session:
            store.unlink_events_of_edition(session, edition_id)
        removed = 0
        while True:
            with transaction(self.factory) as session:
                gone = store.delete_deliveries(session, edition_id, self.batch)
            removed += gone
            if gone < self.batch:
                return removed
