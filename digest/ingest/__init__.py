"""Ingest: articles and their comments from JSON Lines and RSS/Atom feeds.

A bad record is reported with where it came from (file and line, or feed
entry) and why; every other record is loaded (``load``). What a record may hold
is in ``records``; where records come from, in ``read``.
"""

from __future__ import annotations

from digest.ingest.load import Ingester
from digest.ingest.read import is_feed, read_feed, read_jsonl, read_source
from digest.ingest.records import MAX_LINE, ArticleIn, CommentIn, IngestReport, Problem, describe

__all__ = [
    "MAX_LINE",
    "ArticleIn",
    "CommentIn",
    "IngestReport",
    "Ingester",
    "Problem",
    "describe",
    "is_feed",
    "read_feed",
    "read_jsonl",
    "read_source",
]
