"""Demo data: the seed articles (shared/seed) dated into today's window, filler
articles and comments around them, and demo readers.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

from digest import store
from digest.db import Factory, transaction
from digest.demo.words import (
    FILLER,
    FIRST,
    FLAME_WAR,
    LAST,
    NICKS,
    PHRASES,
    SECTIONS,
    SITE,
    reader_address,
    reader_name,
)
from digest.ingest import Ingester, IngestReport
from digest.models import Clock, Subscriber, SubscriberStatus, utcnow
from digest.render import section_key
from digest.schedule.files import Schedule
from digest.tokens import new_token_key


@dataclass(frozen=True)
class DemoData:
    edition_date: date
    records: list[dict[str, Any]]


def _seed_data() -> dict[str, Any]:
    text = resources.files("digest").joinpath("data/seed.json").read_text(encoding="utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


def _local(value: str, year: int | None, zone: ZoneInfo) -> datetime:
    """«14.09.2018 20:53», or «01.06 17:03» with the year given, in the site's zone."""
    if year is not None:
        value = f"{value[:5]}.{year}{value[5:]}"
    return datetime.strptime(value, "%d.%m.%Y %H:%M").replace(tzinfo=zone)


def build(schedule: Schedule, edition_date: date) -> DemoData:
    """Every article record of the demo for ``edition_date``'s window."""
    rng = random.Random(f"digest-demo-{edition_date.isoformat()}")  # nosec B311  # the demo's made-up data, no secret
    zone = schedule.zone
    start, end = schedule.bounds(edition_date)
    prefix = edition_date.strftime("%Y%m%d")
    seed = _seed_data()
    records = [_seed_article(seed["article"], prefix, zone, start, rng)]
    records += _discussed(seed["discussed"], seed["discussed_year"], prefix, zone, end, rng)
    records += _filler(prefix, start, end, rng)
    return DemoData(edition_date, records)


def _seed_article(
    article: dict[str, Any], prefix: str, zone: ZoneInfo, start: datetime, rng: random.Random
) -> dict[str, Any]:
    published = _local(article["published_local"], None, zone)
    # The page's own spacing, moved so that publication is 40 minutes into the window.
    shift = start + timedelta(minutes=40) - published
    comments = [
        {
            "number": c["number"],
            "author": c["author"] or rng.choice(NICKS[1:]),
            "posted_at": (_local(c["posted_local"], None, zone) + shift).isoformat(),
            "body": c["body"],
            "votes": c["votes"],
        }
        for c in article["comments"]
    ]
    return {
        "id": f"{prefix}-seed",
        "url": f"{SITE}/news/{prefix}-azerbaidzhan-derzhit-kurs-na-odkb.html",
        "title": article["title"],
        "lead": article["paragraphs"][0],
        "section": article["section"],
        "published_at": (published + shift).isoformat(),
        "views": article["views"],
        "rating": article["rating"],
        "image_url": f"{SITE}/images/news/{article['image_name']}.jpg",
        "image_caption": article["image_caption"],
        "source": "Vzglyad.az",
        "comments": comments,
    }


def _discussed(
    items: list[dict[str, Any]],
    year: int,
    prefix: str,
    zone: ZoneInfo,
    end: datetime,
    rng: random.Random,
) -> Iterator[dict[str, Any]]:
    times = [_local(i["posted_local"], year, zone) for i in items]
    # The newest item lands 30 minutes before the window closes; the rest keep their spacing.
    shift = end - timedelta(minutes=30) - max(times)
    for n, (item, when) in enumerate(zip(items, times, strict=True), start=1):
        last = (when + shift).astimezone(UTC)
        count = item["comments"]
        # The sidebar time is the latest activity; busy threads started days earlier.
        age = (
            timedelta(days=4)
            if count >= 1000
            else timedelta(days=2)
            if count >= 100
            else (timedelta(hours=rng.randint(1, 3)) if count else timedelta(0))
        )
        published = last - age
        yield {
            "id": f"{prefix}-talk-{n:02d}",
            "url": f"{SITE}/news/{prefix}-talk-{n:02d}.html",
            "title": item["title"],
            "lead": None,
            "section": item["section"],
            "published_at": published.isoformat(),
            "views": count * rng.randint(8, 15) + rng.randint(100, 900),
            "rating": rng.randint(-5, 40),
            "comments": _comments(count, published, last, rng),
        }


def _comments(
    count: int,
    first: datetime,
    last: datetime,
    rng: random.Random,
    authors: list[str] | None = None,
) -> list[dict[str, Any]]:
    span = (last - first).total_seconds()
    pool = authors or NICKS[1:]  # NICKS[0] is the seed page's real commenter
    stamps = sorted(first + timedelta(seconds=span * rng.random() ** 2) for _ in range(count - 1))
    if count:
        stamps.append(last)
    return [
        {
            "number": number,
            # Zipf-like: a few regulars write much of every thread.
            "author": pool[min(int(rng.paretovariate(1.2)) - 1, len(pool) - 1)]
            if authors is None
            else pool[number % len(pool)],
            "posted_at": stamp.isoformat(),
            "body": " ".join(rng.sample(PHRASES, rng.randint(1, 3))),
            "votes": rng.randint(-3, 15),
        }
        for number, stamp in enumerate(stamps, start=1)
    ]


def _filler(
    prefix: str, start: datetime, end: datetime, rng: random.Random
) -> Iterator[dict[str, Any]]:
    window = (end - start).total_seconds()
    for n, (section, title, lead) in enumerate(FILLER, start=1):
        inside = n % 4 != 0  # three in four in the window, the rest in the days before
        offset = window * rng.uniform(0.03, 0.97)
        published = (
            start
            + timedelta(seconds=offset)
            - (timedelta(days=rng.randint(1, 3)) if not inside else timedelta(0))
        )
        if n - 1 == FLAME_WAR:
            published = start + timedelta(hours=2)
            comments = _comments(
                80, published, end - timedelta(minutes=20), rng, authors=["Танкист", "Летун"]
            )
        else:
            count = rng.choice([0, 0, 1, 2, 3, 5, 8, 12, 20, 35])
            comments = _comments(
                count,
                published,
                min(end - timedelta(minutes=1), published + timedelta(hours=30)),
                rng,
            )
        yield {
            "id": f"{prefix}-news-{n:02d}",
            "url": f"{SITE}/news/{prefix}-news-{n:02d}.html",
            "title": title,
            "lead": lead,
            "section": section,
            "published_at": published.isoformat(),
            "views": rng.randint(150, 1300),
            "rating": rng.randint(-3, 25),
            "image_url": f"{SITE}/images/news/{prefix}-{n:02d}.jpg" if n % 3 == 0 else None,
            "image_caption": f"Фото: пресс-служба. {title[:40]}" if n % 3 == 0 else None,
            "comments": comments,
        }


def load(factory: Factory, data: DemoData, clock: Clock = utcnow) -> IngestReport:
    report = Ingester(factory, clock=clock).load((f"demo:{r['id']}", r) for r in data.records)
    with transaction(factory) as session:
        store.set_section_order(session, list(SECTIONS))
    return report


def add_subscribers(
    factory: Factory, count: int, *, now: datetime, seed: str = "subscribers"
) -> tuple[int, int]:
    """Make sure ``reader00001@…`` … exist (active, confirmed): returns (total, added).
    One subscriber in ten chose some sections, so the edition has several variants.
    Made in chunks, so a list of 100 000 is never held in memory at once."""
    rng = random.Random(seed)  # nosec B311  # the demo's made-up data, no secret
    choices = [section_key(["Армия", "Флот"]), section_key(["Космос", "Авиация", "ОПК"])]
    added = 0
    for first in range(1, count + 1, 5000):
        numbers = range(first, min(first + 5000, count + 1))
        emails = [reader_address(i) for i in numbers]
        # Draw for every reader, new or not, so names stay the same across runs.
        people = [
            (
                None if rng.random() < 0.15 else reader_name(rng.choice(FIRST), rng.choice(LAST)),
                rng.choice(choices) if rng.random() < 0.1 else None,
            )
            for _ in emails
        ]
        with transaction(factory) as session:
            existing = store.known_emails(session, emails)
            rows = [
                {
                    "email": email,
                    "name": name,
                    "status": SubscriberStatus.ACTIVE,
                    "locale": "ru",
                    "sections": sections,
                    "frequency": "daily",
                    "token_key": new_token_key(),
                    "consent_at": now,
                    "consent_source": "demo",
                    "confirmed_at": now,
                    "created_at": now,
                }
                for email, (name, sections) in zip(emails, people, strict=True)
                if email not in existing
            ]
            store.add_subscribers(session, rows)
            added += len(rows)
    if added:
        with transaction(factory) as session:
            store.analyse(session, Subscriber)  # `digest send` may follow at once
    return count, added
