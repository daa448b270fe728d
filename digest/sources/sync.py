"""Syncing a site database into digest's (issue 29): sections, then the articles
changed since the watermark, then the comments posted since it, then the view
counters of recent articles. Each query reads again ``overlap_minutes`` before its
watermark, so a row committed late is not missed; ingest makes re-reading
idempotent (an article is updated, a comment known by its number only has its
votes refreshed) and turns a changed title or a withdrawal into the corrections
an approved edition must not pass by.

A watermark moves only when the whole source synced: a failure leaves it where it
was, recorded with the error, and the next sync reads the same rows again."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from digest import store
from digest.db import Factory
from digest.errors import SourceError
from digest.ingest import Ingester, IngestReport, Problem
from digest.ingest.comments import load_comments
from digest.ingest.lookups import section_slug
from digest.models import Clock
from digest.observe.metrics import SOURCE_ERRORS, SOURCE_ROWS, SOURCE_SECONDS
from digest.sources.files import WATERMARK, Query, Source, load_sources, pick
from digest.sources.overview import SourceLine, overview
from digest.sources.rows import Mapping, as_article, bind, mark
from digest.store.site import SiteDatabase

log = logging.getLogger(__name__)
FRESH = timedelta(minutes=1)  # a sync this recent is what the site has


@dataclass
class SyncReport:
    source: str
    ingest: IngestReport = field(default_factory=IngestReport)
    rows: dict[str, int] = field(default_factory=dict)
    views_changed: int = 0
    seconds: float = 0.0
    error: str | None = None


@dataclass
class _Run:
    """One sync of one source: the site's connection and what it has read."""

    source: Source
    site: SiteDatabase
    now: datetime
    report: SyncReport
    marks: dict[str, tuple[datetime | None, str | None]] = field(default_factory=dict)
    queries: dict[str, Query] = field(default_factory=dict)  # the preset's and the file's


class Sources:
    """The site database sources of ``directory`` (read afresh each time: ops
    edit the files without a restart)."""

    def __init__(self, factory: Factory, clock: Clock, directory: Path) -> None:
        self.factory = factory
        self.clock = clock
        self.directory = directory

    def sources(self) -> dict[str, Source]:
        return load_sources(self.directory)

    def overview(self) -> list[SourceLine]:
        """Each source with its last sync, rows read, lag and last error."""
        return overview(self.factory, self.clock(), self.sources())

    def sync(self, name: str | None = None) -> list[SyncReport]:
        """Every source (or the one named), each on its own: one that fails is
        reported and the others still sync."""
        return [self.sync_one(source) for source in pick(self.sources(), name)]

    def before_build(self) -> None:
        """Right before an edition is built: what the site has now. A site that
        cannot be read is logged, and the edition is built from what digest has.
        A source synced within the last minute is not read again (a catch-up
        builds several editions in a row)."""
        try:
            stale = [s for s in self.sources().values() if not self._fresh(s.name)]
        except SourceError as exc:
            log.warning("sources: %s", exc)
            return
        for report in map(self.sync_one, stale):
            if report.error:
                log.warning("%s (the edition is built from the last sync)", report.error)

    def _fresh(self, name: str) -> bool:
        with self.factory() as session:
            states = store.source_states(session, name)
        now = self.clock()
        return bool(states) and all(
            s.synced_at is not None and s.error is None and now - s.synced_at < FRESH
            for s in states
        )

    def sync_one(self, source: Source) -> SyncReport:
        report = SyncReport(source.name)
        started = time.monotonic()
        try:
            url = source.url()
            with SiteDatabase(source.name, url, source.timeout) as site:
                run = _Run(source, site, self.clock(), report, queries=source.all_queries())
                self._sections(run)
                for query in ("articles", "comments"):
                    self._changed(run, query)
                self._views(run)
            report.seconds = time.monotonic() - started
            self._keep(run)
        except SourceError as exc:
            report.seconds = time.monotonic() - started
            report.error = str(exc)
            SOURCE_ERRORS.labels(source.name).inc()
            self._failed(source.name, str(exc))
        SOURCE_SECONDS.labels(source.name).observe(report.seconds)
        return report

    def _read(
        self, run: _Run, name: str, params: dict[str, Any]
    ) -> Iterator[tuple[Mapping, list[dict[str, Any]]]]:
        """A query's rows, checked and mapped, a batch at a time."""
        query = run.queries[name]
        mapping = Mapping.of(run.source.name, name, query, run.source.zone)
        # The columns first, from an empty range: a missing one stops the source
        # before a row is read.
        empty = {**params, "since": params["until"]}
        mapping.check(run.site.columns(name, query.sql, empty))
        for rows in run.site.stream(name, query.sql, params, run.source.batch):
            run.report.rows[name] = run.report.rows.get(name, 0) + len(rows)
            SOURCE_ROWS.labels(run.source.name, name).inc(len(rows))
            yield mapping, rows

    def _params(self, run: _Run, since: datetime) -> dict[str, Any]:
        views_key = run.source.wordpress.views_meta_key
        return bind(run.site.postgres, run.source.zone, since, run.now, views_key)

    def _sections(self, run: _Run) -> None:
        if "sections" not in run.queries:
            return
        titles: list[str] = []
        for mapping, rows in self._read(run, "sections", self._params(run, run.now)):
            titles += [str(t).strip() for t in (mapping.record(r).get("title") for r in rows) if t]
        with self.factory() as session:
            for title in titles[:1000]:  # a site's categories, not a hostile table's rows
                store.section_id(session, section_slug(title), title[:200])
            session.commit()

    def _changed(self, run: _Run, name: str) -> None:
        """Rows changed since the watermark (less the overlap), loaded by ingest."""
        if name not in run.queries:
            return
        with self.factory() as session:
            state = store.source_state(session, run.source.name, name)
            since = state.mark_at
            session.commit()
        first = run.now - timedelta(days=run.source.first_days)
        since = first if since is None else since - timedelta(minutes=run.source.overlap_minutes)
        best, best_id = since, None
        ingester = Ingester(self.factory, clock=self.clock, unknown_withdrawals=False)
        for mapping, rows in self._read(run, name, self._params(run, since)):
            records = [mapping.record(row) for row in rows]
            for record in records:
                at = mark(record, WATERMARK[name])
                if at is not None and at >= best:
                    best, best_id = at, str(record.get("id", record.get("number")))
            where = [mapping.where(row) for row in rows]
            if name == "articles":
                found = ingester.load(zip(where, map(as_article, records), strict=True))
            else:
                batch = [
                    (w, str(r.get("article_id", "")).strip(), r)
                    for w, r in zip(where, records, strict=True)
                ]
                found = load_comments(self.factory, batch)
            run.report.ingest.merge(found)
        run.marks[name] = (best if best_id is not None else None, best_id)

    def _views(self, run: _Run) -> None:
        """Counters change without the article changing: the recent ones, each sync."""
        if "views" not in run.queries:
            return
        since = run.now - timedelta(days=run.source.views_days)
        for mapping, rows in self._read(run, "views", self._params(run, since)):
            counted: dict[str, int] = {}
            for row in rows:
                record = mapping.record(row)
                try:
                    counted[str(record["article_id"]).strip()] = max(0, int(record["views"]))
                except (KeyError, TypeError, ValueError):
                    run.report.ingest.warnings.append(
                        Problem(mapping.where(row), "views: not a number")
                    )
            with self.factory() as session:
                ids = store.article_ids(session, counted)
                run.report.views_changed += store.set_views(
                    session, {ids[k]: v for k, v in counted.items() if k in ids}
                )
                session.commit()

    def _keep(self, run: _Run) -> None:
        """The sync finished: each query's watermark moves (never back) and its
        figures are kept."""
        with self.factory() as session:
            for name in run.queries:
                state = store.source_state(session, run.source.name, name)
                at, ident = run.marks.get(name, (None, None))
                if at is not None and (state.mark_at is None or at > state.mark_at):
                    state.mark_at, state.mark_id = at, ident
                state.synced_at = run.now
                state.rows = run.report.rows.get(name, 0)
                state.seconds = run.report.seconds
                state.error = state.error_at = None
            session.commit()

    def _failed(self, source: str, error: str) -> None:
        with self.factory() as session:
            for state in store.source_states(session, source) or [
                store.source_state(session, source, "articles")
            ]:
                state.error, state.error_at = error[:500], self.clock()
            session.commit()
