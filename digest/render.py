"""Render: Jinja2 + Babel → HTML and text; premailer inlines the CSS once per variant.

The output keeps slots where each subscriber's own values go (templates write
``{{ slot("UNSUB_URL") }}``; compose splices the values in). A slot's name
holds a secret stem (``compose.Placeholders``), so untrusted text — titles,
URLs, comments, the desk's intro — cannot create one, whatever it contains.
Slots have no spaces because premailer URL-quotes ``{{ x }}`` inside ``href``.
An ``EditionView`` with ``archive`` set renders no slot at all.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal
from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateSyntaxError,
    select_autoescape,
)
from jinja2.sandbox import SandboxedEnvironment

from digest.compose import Placeholders
from digest.errors import RenderError
from digest.select import lead_rank

log = logging.getLogger(__name__)

LOCALE = "ru"
STYLE_LIMIT = 16 * 1024  # MAIL-RULES 19: the head <style> (kept for @media) under 16 KB
_STYLE_BLOCK = re.compile(r"<style[^>]*>(.*?)</style>", re.S | re.I)

# Russian word forms per CLDR plural category (one, few, many; "other" is for fractions).
WORD_FORMS: dict[str, tuple[str, str, str]] = {
    "комментарий": ("комментарий", "комментария", "комментариев"),
    "просмотр": ("просмотр", "просмотра", "просмотров"),
    "день": ("день", "дня", "дней"),
    "статья": ("статья", "статьи", "статей"),
    "человек": ("человек", "человека", "человек"),
}


def plural(n: int, word: str, *forms: str, locale: str = LOCALE) -> str:
    """``plural(21, "комментарий")`` → «21 комментарий»; Babel picks the CLDR category.
    A word not in ``WORD_FORMS`` takes its forms along: ``plural(5, "раздел",
    "раздела", "разделов")`` (one, few, many); without them it is a clear error."""
    if len(forms) == 2:
        one, few, many = word, *forms
    elif word in WORD_FORMS and not forms:
        one, few, many = WORD_FORMS[word]
    else:
        raise RenderError(
            f'plural: no forms for «{word}»; write plural("{word}", "…", "…") with its '
            f"forms for 2 and 5, or use one of: {', '.join(WORD_FORMS)}"
        )
    category = Locale.parse(locale).plural_form(n)
    form = {"one": one, "few": few, "many": many}.get(category, few)
    return f"{format_decimal(n, locale=locale)} {form}"


def date_long(d: date, locale: str = LOCALE) -> str:
    """«15 сентября 2018 г.» — with a no-break space before «г.»: CLDR's narrow one
    (U+202F) is missing from fonts some mail clients use."""
    return str(format_date(d, "long", locale=locale)).replace("\u202f", "\xa0")


def date_plain(d: date, locale: str = LOCALE) -> str:
    """«15 сентября 2018» (for subjects)."""
    return str(format_date(d, "d MMMM y", locale=locale))


def span_long(d: date, days: int, locale: str = LOCALE) -> str:
    """The masthead's date: «25 ноября 2026 г.» for a day's edition, the week for a
    week's: «18–25 ноября 2026 г.», «28 ноября – 5 декабря 2026 г.» (issue 28 §7)."""
    if days <= 1:
        return date_long(d, locale)
    start = d - timedelta(days=days)
    if (start.year, start.month) == (d.year, d.month):
        return f"{start.day}–{date_long(d, locale)}"
    pattern = "d MMMM" if start.year == d.year else "d MMMM y"
    return f"{format_date(start, pattern, locale=locale)} – {date_long(d, locale)}"


def window_words(days: int, locale: str = LOCALE) -> str:
    """«за сутки», «за неделю», «за 3 дня»."""
    return {1: "за сутки", 7: "за неделю"}.get(days) or f"за {plural(days, 'день', locale=locale)}"


def shorten(text: str | None, limit: int) -> str:
    text = " ".join((text or "").split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(",.;:—- ") + "…"


@dataclass(frozen=True)
class CommentView:
    author: str
    body: str
    votes: int


@dataclass(frozen=True)
class ArticleView:
    id: int
    title: str
    url: str
    lead: str
    section: str
    section_title: str
    section_position: int
    published_at: datetime
    views: int = 0
    image_url: str | None = None
    image_caption: str | None = None
    discussed: bool = False
    comments_in_window: int = 0
    comments_total: int = 0
    commenters: int = 0  # people who commented in the window: what the rank counts
    top_comment: CommentView | None = None


@dataclass(frozen=True)
class SectionView:
    title: str
    articles: list[ArticleView]


@dataclass(frozen=True)
class EditionView:
    site_name: str
    site_url: str
    list_name: str
    list_description: str
    edition_date: date
    window_days: int
    subject: str
    preheader: str
    lead: ArticleView
    day: list[ArticleView]
    discussed: list[ArticleView]
    zone: ZoneInfo
    intro: str | None = None
    sections_filter: frozenset[str] | None = field(default=None)
    archive_url: str = ""
    # The public archive page: no subscriber's address or links in the footer.
    archive: bool = False
    # A special edition an editor made by hand (issue 28 §6): «Срочный выпуск».
    special: bool = False
    # How the preheader is made (the schedule's template and the edition's values),
    # so a variant's own lead gives it its own (issue 27 §1); "": kept as it is.
    preheader_template: str = ""
    preheader_values: tuple[tuple[str, str | int], ...] = ()

    @property
    def articles(self) -> int:
        return 1 + len(self.day) + len(self.discussed)

    def sections(self) -> list[SectionView]:
        groups: dict[str, list[ArticleView]] = {}
        for a in self.day:
            groups.setdefault(a.section, []).append(a)
        ordered = sorted(groups.values(), key=lambda g: (g[0].section_position, g[0].section_title))
        return [SectionView(g[0].section_title, g) for g in ordered]

    def for_sections(self, keys: frozenset[str] | None) -> EditionView | None:
        """The variant for a subscriber who chose ``keys`` (None: everything).
        None when nothing of the edition is left for them."""
        if keys is None:
            return self
        pool = [a for a in (self.lead, *self.day) if a.section in keys]
        discussed = [a for a in self.discussed if a.section in keys]
        if not pool:
            return None
        # The edition's lead (the rule's choice or an editor's) when the reader has
        # its section; else the rule picks from what they get, not the list's first.
        lead = self.lead if self.lead in pool else min(pool, key=_lead_rank)
        day = [a for a in pool if a is not lead]
        view = replace(self, lead=lead, day=day, discussed=discussed, sections_filter=keys)
        return replace(view, preheader=view.own_preheader())

    def own_preheader(self) -> str:
        """The preheader this view's content gives (its lead, its count)."""
        if not self.preheader_template:
            return self.preheader
        values = {**dict(self.preheader_values), "lead_title": self.lead.title}
        values["articles"] = 1 + len(self.day)
        return shorten(render_subject(self.preheader_template, values), PREHEADER_LIMIT)


# A credit begins a sentence of its own: «… Источник: aztv.az.», «Фото: ТАСС».
_CREDIT = re.compile(r"(?:^|(?<=[.!?]))\s*(?:Источник|Фото|Фотография|Photo|Source|©).*$", re.S)


def picture_words(caption: str | None) -> str:
    """What the picture shows, for its ``alt``: the caption without its credit
    («Ильхам Алиев. Источник: aztv.az.» → «Ильхам Алиев»); "" when there is no
    caption: the picture then only decorates, and the reader with images off
    should not read the headline twice (issue 27 §2)."""
    if not caption:
        return ""
    return _CREDIT.sub("", caption).strip().rstrip(".").strip()


PREHEADER_LIMIT = 100  # characters: what an inbox list shows of it at most


def _lead_rank(a: ArticleView) -> tuple[bool, int, float]:
    return lead_rank(a.image_url is not None, a.views, a.published_at)


@dataclass(frozen=True)
class Rendered:
    html: str
    text: str
    render_ms: float


class Renderer:
    """Turns an ``EditionView`` into inlined HTML and text with placeholders."""

    def __init__(
        self, templates_dir: Path, placeholders: Placeholders, locale: str = LOCALE
    ) -> None:
        if not templates_dir.is_dir():
            raise RenderError(f"no templates folder at {templates_dir} (DIGEST_TEMPLATES_DIR)")
        self.locale = locale
        self.placeholders = placeholders
        self.env = Environment(
            loader=FileSystemLoader(templates_dir),
            autoescape=select_autoescape(enabled_extensions=("html", "html.j2")),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self.env.filters.update(
            plural=lambda n, word, *forms: plural(n, word, *forms, locale=locale),
            date_long=lambda d: date_long(d, locale),
            time_local=self._time_local,
            when=self._when,
            shorten=shorten,
            window_words=lambda days: window_words(days, locale),
            span_long=lambda d, days: span_long(d, days, locale),
            # An article's time: the hour in a day's letter, the day and hour in a week's.
            published=lambda dt, e: (
                self._time_local(dt, e.zone) if e.window_days <= 1 else self._when(dt, e.zone)
            ),
            picture_words=picture_words,
        )
        self.env.globals["slot"] = placeholders.mark

    def _time_local(self, dt: datetime, zone: ZoneInfo) -> str:
        return dt.astimezone(zone).strftime("%H:%M")

    def _when(self, dt: datetime, zone: ZoneInfo) -> str:
        return str(format_datetime(dt.astimezone(zone), "d MMMM, HH:mm", locale=self.locale))

    def render(self, view: EditionView, template: str = "digest") -> Rendered:
        return self.render_page(template, {"e": view, "sections": view.sections()})

    def render_page(self, template: str, context: dict[str, Any]) -> Rendered:
        """``template.html.j2`` (CSS inlined) and ``template.txt.j2`` with ``context``."""
        started = time.perf_counter()
        try:
            html_raw = self.env.get_template(f"{template}.html.j2").render(context)
            text = self.env.get_template(f"{template}.txt.j2").render(context)
        except Exception as exc:  # a template may raise anything: say where, not a traceback
            raise RenderError(f"template {template!r}: {template_fault(exc)}") from exc
        html = inline_css(html_raw)
        return Rendered(html, text, (time.perf_counter() - started) * 1000)


def template_fault(exc: BaseException) -> str:
    """«digest.html.j2, line 42: plural: no forms for «раздел»…»: the file and line
    a template error happened at (Jinja puts the template's lines in the traceback)."""
    what = str(exc.message if isinstance(exc, RenderError) else exc) or type(exc).__name__
    if not isinstance(exc, (TemplateError, RenderError)):
        what = f"{type(exc).__name__}: {what}"
    if isinstance(exc, TemplateSyntaxError):
        return f"{Path(exc.filename or exc.name or '?').name}, line {exc.lineno}: {what}"
    place = None
    frame = exc.__traceback__
    while frame is not None:
        name = frame.tb_frame.f_code.co_filename
        if name.endswith(".j2"):
            place = f"{Path(name).name}, line {frame.tb_lineno}"
        frame = frame.tb_next
    return f"{place}: {what}" if place else what


def inline_css(html: str) -> str:
    """premailer: every rule into style attributes; @media stays in a <style> block
    (the phone layout needs it). premailer keeps the doctype or drops it, by the
    lxml underneath: it is put back only when missing (issue 17: it was doubled)."""
    wanted = html.lstrip().lower().startswith("<!doctype")
    try:
        # Imported here: premailer brings lxml, cssutils and requests (0.15-0.2 s),
        # and a command that never renders a letter should not wait for them.
        import premailer

        inlined = premailer.Premailer(
            html,
            keep_style_tags=False,
            remove_classes=False,
            strip_important=False,
            disable_validation=True,
            cssutils_logging_level=logging.CRITICAL,
            allow_network=False,
            # CSS widths and heights stay CSS: premailer copied `width: 100%` and
            # `height: auto` into the picture's attributes, where "auto" is not a
            # value and a percentage hid the template's width="560" from Outlook.
            disable_basic_attributes=["width", "height"],
        ).transform()
    except Exception as exc:  # premailer raises whatever lxml and cssutils raise
        raise RenderError(f"CSS inlining failed: {exc}") from exc
    inlined = str(inlined)
    style = sum(len(m.encode("utf-8")) for m in _STYLE_BLOCK.findall(inlined))
    if style > STYLE_LIMIT:
        raise RenderError(f"the head <style> is {style} bytes, over the {STYLE_LIMIT} limit")
    if wanted and not inlined.lstrip().lower().startswith("<!doctype"):
        inlined = "<!DOCTYPE html>\n" + inlined
    return inlined


def render_subject(template: str, variables: dict[str, Any]) -> str:
    """Subjects and preheaders come from schedule files: render them sandboxed."""
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    try:
        return " ".join(env.from_string(template).render(variables).split())
    except TemplateError as exc:
        raise RenderError(f"subject/preheader template {template!r}: {exc}") from None


def section_key(sections: Iterable[str] | None) -> str:
    """A subscriber's section choice, normalised: sorted, comma-joined ("" = all)."""
    if not sections:
        return ""
    return ",".join(sorted({s.strip().lower() for s in sections if s.strip()}))


def parse_section_key(key: str) -> frozenset[str] | None:
    return frozenset(key.split(",")) if key else None


TEXT_ONLY = "|text"
FORMATS = ("html", "text")


def variant_key(sections: str | None, fmt: str = "html") -> str:
    """One variant per distinct (sections, format) choice: ``"армия,флот|text"``."""
    return (sections or "") + (TEXT_ONLY if fmt == "text" else "")


def parse_variant_key(key: str) -> tuple[str, bool]:
    """``(section key, text only)``."""
    if key.endswith(TEXT_ONLY):
        return key[: -len(TEXT_ONLY)], True
    return key, False
