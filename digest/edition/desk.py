"""The editors' desk, looking: editions to come and sent, a draft's preview in
every variant (Gmail's clipping size shown), the delivery page of a send."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from digest import store
from digest.compose import Message
from digest.db import Session
from digest.errors import EditionError
from digest.kinds import state_word
from digest.models import (
    Article,
    Block,
    Edition,
    EditionItem,
    EditionStatus,
)
from digest.schedule.files import Schedule, load_schedules
from digest.track.reports import EditionReport, edition_report, progress_words

if TYPE_CHECKING:
    from digest.db import Factory
    from digest.edition.preview import Previews
    from digest.models import Clock
    from digest.toolkit import Toolkit

GMAIL_CLIP = 102 * 1024  # Gmail clips a message whose HTML is larger


@dataclass(frozen=True)
class ItemRow:
    article_id: int
    title: str
    url: str
    block: str
    section: str
    published_at: datetime
    withdrawn: bool = False  # the site took it down: the letter leaves it out


@dataclass(frozen=True)
class ChangeRow:
    editor: str
    at: datetime
    action: str
    detail: dict[str, Any] | None


@dataclass(frozen=True)
class PreviewPage:
    edition: EditionReport
    message: Message
    html: str
    text: str
    headers: list[tuple[str, str]]
    variants: list[tuple[str, int]]  # (key, articles)
    variant: str
    items: list[ItemRow]
    candidates: list[ItemRow]
    changes: list[ChangeRow]
    intro: str
    subject: str
    shaped: bool
    special: int = 0  # a special edition's number (issue 28 §6)
    section: str | None = None  # … and the section whose readers get it

    @property
    def html_bytes(self) -> int:
        return len(self.html.encode("utf-8"))

    @property
    def clipped(self) -> bool:
        return self.html_bytes > GMAIL_CLIP


@dataclass(frozen=True)
class LinkClicks:
    """Clicks on one of an edition's links: the editors' best signal of what readers
    want (issue 28 §5). ``title`` is the article's, or empty for another link."""

    url: str
    title: str
    clicks: int
    readers: int  # distinct readers; 0 without individual tracking


@dataclass
class DeliveryPage:
    edition: EditionReport
    zone: ZoneInfo  # the schedule's: where the wave's hour and the chart's minutes are shown
    bounces: int = 0
    unsubscribes: int = 0
    per_minute: list[tuple[str, int]] = field(default_factory=list)
    clicks: list[LinkClicks] = field(default_factory=list)
    tracked: bool = False  # the list counts opens or clicks at all

    @property
    def sent(self) -> int:
        return self.edition.counts.get("sent", 0)

    @property
    def sent_share(self) -> int:
        """Per cent of the edition's deliveries accepted: the bar's width."""
        total = self.edition.total
        return round(100 * self.sent / total) if total else 0

    @property
    def progress(self) -> tuple[str, str]:
        return progress_words(self.edition, russian=True)

    @property
    def next_wave_local(self) -> str | None:
        wave = self.edition.next_wave
        return wave.astimezone(self.zone).strftime("%d.%m %H:%M") if wave else None

    def as_json(self) -> dict[str, Any]:
        rate, left = self.progress
        return {
            **self.edition.as_json(),
            "status_text": state_word(self.edition.status),
            "rate_text": rate,
            "eta_text": left,
            "next_wave_local": self.next_wave_local,
            "bounces": self.bounces,
            "unsubscribes": self.unsubscribes,
            "per_minute": [{"minute": m, "sent": n} for m, n in self.per_minute],
            "sent": self.sent,
            "sent_share": self.sent_share,
            "clicks": [asdict(c) for c in self.clicks],
        }


class DeskView:
    """What the desk shows of editions: lists, a preview, the delivery page."""

    def __init__(self, factory: Factory, clock: Clock, tools: Toolkit, previews: Previews) -> None:
        self.factory = factory
        self.clock = clock
        self.tools = tools
        self.previews = previews

    def schedules(self) -> dict[str, Schedule]:
        return load_schedules(self.tools.settings.schedules_dir, self.tools.settings.timezone)

    def editions(self, limit: int = 60) -> tuple[list[EditionReport], list[EditionReport]]:
        """(upcoming drafts and today's, newest first; then the archive of the rest)."""
        today = self.clock().astimezone(self.tools.settings.zone).date()
        open_ = (EditionStatus.DRAFT, EditionStatus.APPROVED, EditionStatus.SENDING)
        current: list[EditionReport] = []
        archive: list[EditionReport] = []
        with self.factory() as session:
            for e in store.recent_editions(session, limit):
                upcoming = e.edition_date >= today or e.status in open_
                (current if upcoming else archive).append(edition_report(session, e))
        return current, archive

    def edition(self, edition_id: int) -> tuple[Schedule, Edition]:
        with self.factory() as session:
            found = store.edition_by_id(session, edition_id)
        if found is None:
            raise EditionError(f"no edition {edition_id}", ru=f"Выпуска {edition_id} нет.")
        return self.tools.schedule(found.schedule), found

    def preview(self, edition_id: int, variant: str = "") -> PreviewPage:
        schedule, edition = self.edition(edition_id)
        with self.factory() as session:
            current = store.edition_by_id(session, edition_id)
            assert current is not None
            report = edition_report(session, current)
            variants = [(v.key, v.articles) for v in store.variants(session, edition_id)]
            items = self._items(session, current)
            candidates = self._candidates(session, current) if self._shapeable(current) else []
            changes = self._changes(session, edition_id)
        if variant not in {k for k, _ in variants}:
            variant = ""
        message = self.previews.preview(schedule, edition, variant_key_=variant)
        html, text, headers = split_message(message.data)
        return PreviewPage(
            edition=report,
            message=message,
            html=html,
            text=text,
            headers=headers,
            variants=sorted(variants),
            variant=variant,
            items=items,
            candidates=candidates,
            changes=changes,
            intro=edition.intro or "",
            subject=edition.subject,
            shaped=edition.shaped_at is not None,
            special=edition.number,
            section=edition.section,
        )

    def delivery(self, edition_id: int) -> DeliveryPage:
        with self.factory() as session:
            current = store.edition_by_id(session, edition_id)
            if current is None:
                raise EditionError(f"no edition {edition_id}", ru=f"Выпуска {edition_id} нет.")
            now = self.clock()
            zone = self.tools.schedule(current.schedule).zone
            page = DeliveryPage(edition_report(session, current, now), zone=zone)
            page.bounces = page.edition.counts.get("bounced", 0)
            page.unsubscribes = store.unsubscribes_since(session, current.created_at)
            # Only a row that was sent has a time (a bounce or a failure may follow it).
            accepted = ("sent", "bounced", "failed")
            if any(page.edition.counts.get(s) for s in accepted):
                page.per_minute = list(_per_minute(session, edition_id, zone))
            page.clicks = _clicks(session, current)
        page.tracked = self.tools.mailing_list(self.tools.schedule(current.schedule)).tracking
        return page

    def _items(self, session: Session, edition: Edition) -> list[ItemRow]:
        """The items in the letter's order (issue 28 §4: ↑/↓ seemed to do nothing,
        the list being in stored order while the letter groups the day's articles
        by section): the lead, the day's by section, then the discussed."""
        items = sorted(edition.items, key=letter_order)
        return [_row(i.article, i.block.value) for i in items]

    def _candidates(self, session: Session, edition: Edition) -> list[ItemRow]:
        """Articles of the window (and since: late arrivals) not in the edition."""
        chosen = {i.article_id for i in edition.items}
        until = max(edition.window_end, self.clock())
        articles = store.articles_between(session, edition.window_start, until, 60)
        return [_row(a, "") for a in articles if a.id not in chosen]

    @staticmethod
    def _changes(session: Session, edition_id: int) -> list[ChangeRow]:
        rows = store.edition_changes(session, edition_id)
        return [ChangeRow(c.editor, c.at, c.action, c.detail) for c in rows]

    @staticmethod
    def _shapeable(edition: Edition) -> bool:
        return edition.status is EditionStatus.DRAFT


_BLOCKS = {Block.LEAD: 0, Block.DAY: 1, Block.DISCUSSED: 2}


def letter_order(item: EditionItem) -> tuple[int, int, str, int]:
    """As ``EditionView.sections`` orders the day's articles (the same rule)."""
    section = item.article.section
    if item.block is not Block.DAY:
        place = (0, "")
    elif section is None:
        place = (10_000, "Новости")  # as edition.view places an article without one
    else:
        place = (section.position, section.title)
    return (_BLOCKS[item.block], place[0], place[1], item.position)


def _row(article: Article, block: str) -> ItemRow:
    return ItemRow(
        article_id=article.id,
        title=article.title,
        url=article.url,
        block=block,
        section=article.section.title if article.section else "",
        published_at=article.published_at,
        withdrawn=article.withdrawn_at is not None,
    )


def _clicks(session: Session, edition: Edition) -> list[LinkClicks]:
    """Clicks per link, each article's under its title (a link that is no article's,
    the site's own say, keeps its address)."""
    titles = {i.article.url: i.article.title for i in edition.items}
    return [
        LinkClicks(url, titles.get(url, ""), clicks, readers)
        for url, clicks, readers in store.clicks_by_url(session, edition.id)
    ]


def _per_minute(session: Session, edition_id: int, zone: ZoneInfo) -> Iterator[tuple[str, int]]:
    """Messages accepted per minute, for the delivery chart (gaps as zeros), each
    minute in the schedule's zone as the rest of the desk shows time (zones are
    whole minutes off UTC, so a UTC minute is one minute of the zone)."""
    summary = store.edition_summary(session, edition_id)  # a pruned edition's minutes
    minutes = (
        {datetime.fromisoformat(m).replace(tzinfo=UTC): n for m, n in summary.minutes.items()}
        if summary is not None
        else store.sent_by_minute(session, edition_id)
    )
    counts = {m.astimezone(zone): n for m, n in minutes.items()}
    if not counts:
        return
    minute, last = min(counts), max(counts)
    steps = 0
    while minute <= last and steps < 240:
        yield minute.strftime("%H:%M"), counts.get(minute, 0)
        minute += timedelta(minutes=1)
        steps += 1


def split_message(data: bytes) -> tuple[str, str, list[tuple[str, str]]]:
    """(HTML part, text part, headers) of a composed message, for the preview."""
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    headers = [(k, str(v)) for k, v in parsed.items()]
    html_part = parsed.get_body(("html",))
    text_part = parsed.get_body(("plain",))
    html = str(html_part.get_content()) if html_part is not None else ""
    text = str(text_part.get_content()) if text_part is not None else ""
    return html, text, headers
