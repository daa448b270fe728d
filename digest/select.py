"""What goes into an edition: the day's articles and the most discussed.

Pure functions over rows handed in by ``store``; docs/ARCHITECTURE.md §Selection is the
specification. The same rows always give the same edition (MAIL-RULES 30):
every ordering ends in a tie-break on the article's external id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from digest.errors import EmptyEdition
from digest.models import Candidate, Discussion
from digest.schedule.files import SelectSpec


@dataclass(frozen=True)
class Pick:
    article: Candidate
    discussed: bool = False
    comments_in_window: int = 0
    comments_total: int = 0
    score: float = 0.0


@dataclass(frozen=True)
class Selection:
    lead: Pick
    day: list[Pick]
    discussed: list[Pick]
    skipped_repeats: list[int] = field(default_factory=list)


def discussion_score(
    per_commenter: Mapping[str, int],
    cap: int,
    *,
    ranking: str = "capped",
    age_hours: float = 0.0,
) -> float:
    """How discussed an article is inside the window.

    ``capped`` (docs/ARCHITECTURE.md): each commenter counts at most ``cap`` comments,
    plus one point per distinct commenter, so two people arguing cannot
    outrank a broad discussion. ``hot``: the same activity decayed by the
    article's age, Discourse-style: activity / (hours + 2) ** 1.2.
    """
    activity = sum(min(n, cap) for n in per_commenter.values() if n > 0) + sum(
        1 for n in per_commenter.values() if n > 0
    )
    if ranking == "capped":
        return float(activity)
    if ranking == "hot":
        return activity / float((max(age_hours, 0.0) + 2.0) ** 1.2)
    raise ValueError(f"unknown ranking {ranking!r}")


def _newest_first(c: Candidate) -> tuple[float, str]:
    return (-c.published_at.timestamp(), c.external_id)


def _most_read(c: Candidate) -> tuple[int, float, str]:
    # A weekly edition keeps the week's most read, not its last few days.
    return (-c.views, -c.published_at.timestamp(), c.external_id)


def lead_rank(has_image: bool, views: int, published_at: datetime) -> tuple[bool, int, float]:
    """The rule of the lead: the most read story with a picture leads; without
    pictures, the most read; then the newest. The edition's lead and each
    variant's (a reader's sections) are chosen by it (issue 27 §1)."""
    return (not has_image, -views, -published_at.timestamp())


def _lead_key(c: Candidate) -> tuple[tuple[bool, int, float], str]:
    return (lead_rank(c.has_image, c.views, c.published_at), c.external_id)


def select_edition(
    day_articles: Iterable[Candidate],
    discussions: Iterable[Discussion],
    spec: SelectSpec,
    *,
    window_end: datetime,
    already_sent: Mapping[int, int] | None = None,
) -> Selection:
    """Choose an edition's content.

    ``day_articles``: published inside the window. ``discussions``: articles
    published within the lookback with comments inside the window.
    ``already_sent``: article id → comments posted since the last edition of
    this schedule that carried it. Raises ``EmptyEdition`` when no article is
    left for the day: an empty window never makes an edition.
    """
    sent = already_sent or {}
    order = _most_read if spec.order == "most_read" else _newest_first
    fresh = sorted((c for c in day_articles if c.id not in sent), key=order)
    repeats = sorted({c.id for c in day_articles if c.id in sent})
    if not fresh:
        raise EmptyEdition("no new articles were published in the window; no edition is made")

    lead = min(fresh, key=_lead_key)
    rest = [c for c in fresh if c.id != lead.id][: spec.max_articles - 1]
    chosen = {lead.id, *(c.id for c in rest)}

    ranked = _rank(discussions, spec, window_end, sent)
    top_ids = {d.article.id for d in ranked[: spec.max_discussed]}
    by_id = {d.article.id: d for d in ranked}

    def pick(c: Candidate) -> Pick:
        d = by_id.get(c.id)
        if d is None:
            return Pick(c)
        return Pick(c, c.id in top_ids, d.comments_in_window, d.comments_total)

    # An article in both lists is shown once, in the day's list, marked as discussed.
    block = [
        Pick(d.article, True, d.comments_in_window, d.comments_total, score)
        for d, score in ((d, _score(d, spec, window_end)) for d in ranked)
        if d.article.id not in chosen
    ][: spec.max_discussed]
    return Selection(pick(lead), [pick(c) for c in rest], block, repeats)


def _score(d: Discussion, spec: SelectSpec, window_end: datetime) -> float:
    age = (window_end - d.article.published_at).total_seconds() / 3600
    return discussion_score(
        d.per_commenter, spec.comments_per_commenter, ranking=spec.ranking, age_hours=age
    )


def _rank(
    discussions: Iterable[Discussion],
    spec: SelectSpec,
    window_end: datetime,
    sent: Mapping[int, int],
) -> list[Discussion]:
    eligible = [
        d
        for d in discussions
        if d.comments_in_window > 0
        and (d.article.id not in sent or sent[d.article.id] >= spec.rediscuss_min_new_comments)
    ]
    # Ties by views, then id, so the same data always gives the same edition.
    return sorted(
        eligible,
        key=lambda d: (-_score(d, spec, window_end), -d.article.views, d.article.external_id),
    )
