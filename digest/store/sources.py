"""What digest keeps of its site database sources (issue 29): each query's
watermark and last sync (``source_state``), and the write a sync makes beside
ingest's: refreshed view counters."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from digest.models import Article, SourceState


def source_states(session: Session, source: str | None = None) -> list[SourceState]:
    query = select(SourceState).order_by(SourceState.source, SourceState.query)
    if source is not None:
        query = query.where(SourceState.source == source)
    return list(session.scalars(query))


def source_state(session: Session, source: str, query: str) -> SourceState:
    """The row of (``source``, ``query``), made empty the first time."""
    state = session.get(SourceState, (source, query))
    if state is None:
        state = SourceState(source=source, query=query, rows=0, seconds=0.0)
        session.add(state)
        session.flush()
    return state


def set_views(session: Session, views: dict[int, int]) -> int:
    """Each article's counter as the site has it now (article id → views); only
    those that changed are written. Returns how many changed."""
    if not views:
        return 0
    ids = list(views)
    rows = session.execute(select(Article.id, Article.views).where(Article.id.in_(ids)))
    current = {id_: count for id_, count in rows}
    changed = [
        {"id": id_, "views": value}
        for id_, value in views.items()
        if id_ in current and current[id_] != value
    ]
    if changed:
        session.execute(update(Article), changed)  # by primary key, in one statement
    return len(changed)
