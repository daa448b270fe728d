"""What a chunk of records looks up, asked once (issue 29: a site's 100 000
articles were one query for the article and one for its section each): the
chunk's known articles in one query, each section once."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from digest import store
from digest.db import Session
from digest.ingest.records import valid_id
from digest.models import Article

T = TypeVar("T")


def section_slug(section: str) -> str:
    """A section's slug from its title: «Армия и флот» → армия-и-флот."""
    return re.sub(r"[^\w]+", "-", section.lower()).strip("-") or "other"


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _external_id(raw: dict[str, Any]) -> str | None:
    return valid_id(raw.get("id"))


class Lookups:
    """Articles by the site's id and sections by slug, for one chunk in one
    transaction; forgotten when a savepoint rolls back what it made."""

    def __init__(self) -> None:
        self.articles: dict[str, Article | None] = {}
        self.sections: dict[str, int] = {}

    def prefetch(self, session: Session, raws: Iterable[dict[str, Any]]) -> None:
        wanted = {i for i in map(_external_id, raws) if i is not None} - set(self.articles)
        found = store.articles_by_external_ids(session, wanted)
        self.articles.update({i: found.get(i) for i in wanted})

    def article(self, session: Session, external_id: str) -> Article | None:
        if external_id not in self.articles:
            self.articles[external_id] = store.article_by_external_id(session, external_id)
        return self.articles[external_id]

    def section(self, session: Session, title: str) -> int:
        slug = section_slug(title)
        if slug not in self.sections:
            self.sections[slug] = store.section_id(session, slug, title)
        return self.sections[slug]

    def forget(self) -> None:
        self.articles.clear()
        self.sections.clear()
