"""The archive as an Atom feed (RFC 4287): one entry per sent edition, its public
page as id and link. Built with ElementTree, so every text is escaped as XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET  # nosec B405  # builds the Atom feed; parses nothing
from collections.abc import Sequence
from datetime import UTC, datetime

from digest.models import Edition

ATOM = "http://www.w3.org/2005/Atom"


def atom_feed(
    editions: Sequence[Edition], base_url: str, title: str, page_url: str, now: datetime
) -> bytes:
    ET.register_namespace("", ATOM)
    base = base_url.rstrip("/")
    feed = ET.Element(f"{{{ATOM}}}feed")
    _text(feed, "title", title)
    _text(feed, "id", f"{base}/archive/")
    _link(feed, f"{base}/archive/feed.xml", "self")
    _link(feed, page_url, "alternate")
    newest = max((e.sent_at or e.created_at for e in editions), default=now)
    _text(feed, "updated", _when(newest))
    for edition in editions:
        url = f"{base}/archive/{edition.schedule}/{edition.edition_date.isoformat()}"
        entry = ET.SubElement(feed, f"{{{ATOM}}}entry")
        _text(entry, "title", edition.subject or edition.label)
        _text(entry, "id", url)
        _link(entry, url, "alternate")
        _text(entry, "updated", _when(edition.sent_at or edition.created_at))
        if edition.preheader:
            _text(entry, "summary", edition.preheader)
        author = ET.SubElement(entry, f"{{{ATOM}}}author")
        _text(author, "name", title)
    return bytes(ET.tostring(feed, encoding="utf-8", xml_declaration=True))


def _text(parent: ET.Element, name: str, value: str) -> None:
    ET.SubElement(parent, f"{{{ATOM}}}{name}").text = value


def _link(parent: ET.Element, href: str, rel: str) -> None:
    ET.SubElement(parent, f"{{{ATOM}}}link", {"rel": rel, "href": href})


def _when(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds")
