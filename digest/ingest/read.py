"""Where articles come from: JSON Lines files (read with a bound on each line) and
RSS/Atom feeds from a file or URL (feedparser), as (where, record or Problem)."""

from __future__ import annotations

import calendar
import json
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lxml import html as lxml_html
from lxml.etree import ParserError

from digest.ingest.records import MAX_FEED, MAX_LINE, Problem

FEED_SUFFIXES = (".xml", ".rss", ".atom", ".rdf")
FETCH_TIMEOUT = 30.0  # seconds for a feed's server to answer each read


def read_jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any] | Problem]]:
    """One article per line; blank lines are skipped; a bad line is a Problem.
    Lines are read with a bound: a longer one is skipped in chunks, never held."""
    with path.open("rb") as handle:
        number = 0
        while line := handle.readline(MAX_LINE + 1):
            number += 1
            where = f"{path}:{number}"
            if len(line) > MAX_LINE:
                while line and not line.endswith(b"\n"):
                    line = handle.readline(MAX_LINE)
                yield where, Problem(where, f"the line is over {MAX_LINE // 2**20} MB")
                continue
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                yield where, Problem(where, f"not valid JSON: {exc}")
                continue
            except RecursionError:
                yield where, Problem(where, "JSON nested too deeply")
                continue
            if not isinstance(value, dict):
                yield where, Problem(where, "a line must be a JSON object")
                continue
            yield where, value


def read_feed(source: str) -> Iterator[tuple[str, dict[str, Any] | Problem]]:
    """RSS 2.0 / Atom from a file or URL (feedparser), as article records. The
    bytes are ours to fetch, bounded once uncompressed (``MAX_FEED``): feedparser's
    own fetch inflated a 300 KB gzip answer to 300 MB and 1.6 GB of memory."""
    try:
        document = _feed_bytes(source)
    except (OSError, ValueError, zlib.error) as exc:
        yield source, Problem(source, f"could not read the feed: {exc}")
        return
    # Imported by the feeds alone: every edition's build loads this module (a sync
    # of the sources comes first), and feedparser with its charset detectors was a
    # twentieth of a `digest send`'s imports.
    import feedparser

    parsed = feedparser.parse(document)
    if parsed.bozo and not parsed.entries:
        yield source, Problem(source, f"not a readable feed: {parsed.get('bozo_exception')}")
        return
    feed_title = parsed.feed.get("title")
    for index, entry in enumerate(parsed.entries, start=1):
        where = f"{source} entry {index}"
        stamp = entry.get("published_parsed") or entry.get("updated_parsed")
        record: dict[str, Any] = {
            "id": entry.get("id") or entry.get("link"),
            "url": entry.get("link"),
            "title": _strip_html(entry.get("title", "")),
            "lead": _strip_html(entry.get("summary", "")) or None,
            "published_at": (
                datetime.fromtimestamp(calendar.timegm(stamp), tz=UTC) if stamp else None
            ),
            "source": feed_title,
        }
        tags = entry.get("tags") or []
        if tags and tags[0].get("term"):
            record["section"] = tags[0]["term"]
        image = _entry_image(entry)
        if image:
            record["image_url"] = image
        yield where, record


def _feed_bytes(source: str) -> bytes:
    if not source.startswith(("http://", "https://")):
        with Path(source).open("rb") as handle:
            data = handle.read(MAX_FEED + 1)
        if len(data) > MAX_FEED:
            raise ValueError(f"over {MAX_FEED // 2**20} MB")
        return data
    import urllib.request  # the feeds' fetch alone (as feedparser above)

    request = urllib.request.Request(
        source, headers={"Accept-Encoding": "gzip, deflate", "User-Agent": "digest ingest"}
    )
    with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT) as response:  # nosec B310  # http(s) only, checked above
        encoding = (response.headers.get("Content-Encoding") or "identity").lower()
        return _bounded(response, encoding)


def _bounded(response: Any, encoding: str) -> bytes:
    """The body, inflated if it came compressed, refused past ``MAX_FEED`` either way."""
    inflate = None
    if encoding in ("gzip", "x-gzip", "deflate"):
        inflate = zlib.decompressobj(zlib.MAX_WBITS | (16 if "gzip" in encoding else 0))
    elif encoding != "identity":
        raise ValueError(f"an encoding we do not read: {encoding}")
    out, size = [], 0
    while chunk := response.read(65536):
        if inflate is not None:
            chunk = inflate.decompress(chunk, MAX_FEED + 1 - size)
            if inflate.unconsumed_tail:
                raise ValueError(f"over {MAX_FEED // 2**20} MB once uncompressed")
        size += len(chunk)
        if size > MAX_FEED:
            raise ValueError(f"over {MAX_FEED // 2**20} MB once uncompressed")
        out.append(chunk)
    return b"".join(out)


def _strip_html(value: str) -> str:
    if "<" not in value and "&" not in value:
        return value
    try:
        return str(lxml_html.fromstring(value).text_content())
    except (ParserError, ValueError):
        return value


def _entry_image(entry: Any) -> str | None:
    for link in entry.get("enclosures", []) or []:
        if str(link.get("type", "")).startswith("image/") and link.get("href"):
            return str(link["href"])
    for media in entry.get("media_content", []) or []:
        if str(media.get("type", "image/")).startswith("image/") and media.get("url"):
            return str(media["url"])
    return None


def is_feed(source: str) -> bool:
    if source.startswith(("http://", "https://")):
        return True
    path = Path(source)
    if path.suffix.lower() in FEED_SUFFIXES:
        return True
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        return False
    with path.open("rb") as handle:
        head = handle.read(512).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"<")


def read_source(source: str) -> Iterator[tuple[str, dict[str, Any] | Problem]]:
    if not source.startswith(("http://", "https://")) and not Path(source).is_file():
        yield source, Problem(source, "no such file")
        return
    yield from (read_feed(source) if is_feed(source) else read_jsonl(Path(source)))
