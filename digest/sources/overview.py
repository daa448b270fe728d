"""What `digest sources` lists and what `digest doctor` checks of each source
(issue 29). The check changes nothing on the site: it asks the database whether
the session is read-only and what its timeout is, and runs each query on an empty
range to read the columns it returns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from digest import store
from digest.db import Factory
from digest.errors import SourceError
from digest.observe.health import Check
from digest.sources.files import Source
from digest.sources.rows import Mapping, bind
from digest.store.site import SiteDatabase


@dataclass(frozen=True)
class SourceLine:
    name: str
    preset: str
    every: int  # minutes, 0: by hand and before builds
    synced_at: datetime | None
    rows: int  # read by the last sync, every query
    lag: timedelta | None  # the articles' watermark behind now
    error: str | None


def overview(factory: Factory, now: datetime, sources: dict[str, Source]) -> list[SourceLine]:
    with factory() as session:
        states = store.source_states(session)
    lines = []
    for name, source in sources.items():
        mine = [s for s in states if s.source == name]
        synced = max((s.synced_at for s in mine if s.synced_at), default=None)
        marks = [s.mark_at for s in mine if s.query == "articles" and s.mark_at]
        errors = [s.error for s in mine if s.error]
        lines.append(
            SourceLine(
                name,
                source.preset or "own queries",
                source.sync_every,
                synced,
                sum(s.rows for s in mine),
                now - marks[0] if marks else None,
                errors[0] if errors else None,
            )
        )
    return lines


def check(source: Source, now: datetime) -> Check:
    """Reachable, read-only, the timeout set, every mapped column there."""
    label = f"source {source.name}"
    try:
        with SiteDatabase(source.name, source.url(), source.timeout) as site:
            read_only, timeout = site.settings()
            if not read_only:
                return Check(label, False, "the session is not read-only")
            if timeout <= 0:
                return Check(label, False, "no statement timeout is set")
            params = bind(site.postgres, source.zone, now, now)
            queries = source.all_queries()
            for name, query in queries.items():
                mapping = Mapping.of(source.name, name, query, source.zone)
                mapping.check(site.columns(name, query.sql, params))
    except SourceError as exc:
        return Check(label, False, str(exc))
    return Check(
        label,
        True,
        f"read-only, timeout {timeout:g} s, {len(queries)} queries: {', '.join(queries)}",
    )
