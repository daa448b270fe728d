from __future__ import annotations

import re
import shutil
from dataclasses import replace
from datetime import date
from html.parser import HTMLParser
from pathlib import Path

import pytest

from digest.compose import Placeholders
from digest.errors import RenderError
from digest.render import (
    CommentView,
    Renderer,
    date_long,
    date_plain,
    inline_css,
    parse_section_key,
    plural,
    render_subject,
    section_key,
    span_long,
)
from tests.support.factories import article, edition, with_lead

SLOTS = Placeholders(b"k" * 32)
TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(TEMPLATES, SLOTS)


# -- Russian ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 комментариев"),
        (1, "1 комментарий"),
        (2, "2 комментария"),
        (4, "4 комментария"),
        (5, "5 комментариев"),
        (11, "11 комментариев"),
        (12, "12 комментариев"),
        (14, "14 комментариев"),
        (21, "21 комментарий"),
        (22, "22 комментария"),
        (25, "25 комментариев"),
        (101, "101 комментарий"),
        (111, "111 комментариев"),
        (1001, "1\xa0001 комментарий"),
        (9110, "9\xa0110 комментариев"),
    ],
)
def test_comment_counts_use_russian_plural_forms(n: int, text: str) -> None:
    assert plural(n, "комментарий") == text


def test_other_words_and_dates() -> None:
    assert plural(1465, "просмотр") == "1\xa0465 просмотров"
    assert plural(3, "день") == "3 дня"
    assert date_long(date(2018, 9, 15)) == "15 сентября 2018\xa0г."
    assert date_plain(date(2018, 9, 15)) == "15 сентября 2018"
    assert date_plain(date(2026, 3, 1)) == "1 марта 2026"


def test_subject_template_is_sandboxed_and_one_line() -> None:
    subject = render_subject(
        "{{ site_name }} за {{ date }}\n", {"site_name": "Новости ВПК", "date": "15 сентября 2018"}
    )
    assert subject == "Новости ВПК за 15 сентября 2018"
    with pytest.raises(RenderError):
        render_subject("{{ ''.__class__.__mro__[1].__subclasses__() }}", {})
    with pytest.raises(RenderError):
        render_subject("{{ missing }}", {})


# -- the HTML a mail client gets -----------------------------------------------------------


class Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.comments: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_comment(self, data: str) -> None:
        self.comments.append(data)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Collect:
    collected = Collect()
    collected.feed(html)
    return collected


def test_html_follows_the_body_rules(renderer: Renderer) -> None:
    html = renderer.render(edition()).html
    doc = parse(html)
    tags = [t for t, _ in doc.tags]
    assert html.startswith("<!DOCTYPE html>") and html.lower().count("<!doctype") == 1
    assert ("html", {"lang": "ru", "xmlns": "http://www.w3.org/1999/xhtml"}) in doc.tags
    assert any(t == "meta" and a.get("charset") == "utf-8" for t, a in doc.tags)
    assert all(a.get("role") == "presentation" for t, a in doc.tags if t == "table")
    assert all(a.get("alt") for t, a in doc.tags if t == "img")
    for banned in ("script", "form", "iframe", "svg", "object", "embed"):
        assert banned not in tags
    assert not re.search(r"\.webp\b", html, re.I)
    # The phone layout lives in the one <style> block premailer keeps; all else is inline.
    styles = re.findall(r"<style[^>]*>(.*?)</style>", html, re.S)
    assert len(styles) == 1 and "@media" in styles[0] and len(styles[0].encode()) < 16 * 1024
    assert "max-width:600px" in html.replace(" ", "")
    assert any("if mso" in c and 'width="600"' in c for c in doc.comments)
    lead_title = next(a for t, a in doc.tags if t == "h1")
    assert "font-size:22px" in (lead_title.get("style") or "").replace(" ", "")


def test_exactly_one_hidden_element_the_preheader(renderer: Renderer) -> None:
    html = renderer.render(edition(preheader="Коротко о главном")).html
    hidden = [
        a for _, a in parse(html).tags if "display:none" in (a.get("style") or "").replace(" ", "")
    ]
    assert len(hidden) == 1 and hidden[0].get("class") == "preheader"
    assert re.search(r'class="preheader"[^>]*>Коротко о главном<', html)


def test_the_page_shows_what_a_reader_needs(renderer: Renderer) -> None:
    view = edition(day=4, discussed=2)
    html = renderer.render(view).html
    assert "Новости ВПК" in html and "25 ноября 2026\xa0г." in html
    # The alt says what the picture shows, not the title again (issue 27 §2).
    assert "Подпись к фото. Источник" in html and 'alt="Подпись к фото"' in html
    assert "Обсуждаемое" in html
    assert "2 комментария за сутки" in html and "всего 11 комментариев" in html
    for name in ("UNSUB_URL", "PREFS_URL", "EMAIL"):
        assert SLOTS.mark(name) in html
    assert ">Отписаться</a>" in html
    # Grouped by section, sections in their order.
    assert html.index(">Армия<") < html.index(">Флот<") < html.index(">Авиация<")


def test_a_full_edition_stays_under_gmail_clipping(renderer: Renderer) -> None:
    long_lead = "Очень длинный вводный абзац. " * 60
    view = edition(day=49, discussed=30)
    view = with_lead(view, lead=long_lead)
    html = renderer.render(view).html
    assert len(html.encode("utf-8")) < 100_000


HOSTILE = [
    '<script>alert("x")</script>',
    '"><img src=x onerror=alert(1)>',
    "Заголовок\r\nBcc: victim@example.com",
    "Подмена __UNSUB_URL__ и __EMAIL__",
    "</style><style>body{display:none}</style>",
]


@pytest.mark.parametrize("title", HOSTILE)
def test_hostile_titles_and_comments_stay_text(renderer: Renderer, title: str) -> None:
    bad = article(
        7,
        title=title,
        lead=title,
        discussed=True,
        top_comment=CommentView(title, title, 1),
    )
    view = replace(edition(day=0, discussed=0), day=[bad], discussed=[replace(bad, id=8)])
    rendered = renderer.render(view)
    doc = parse(rendered.html)
    assert "script" not in [t for t, _ in doc.tags]
    assert not any("onerror" in a for _, a in doc.tags)
    assert len([t for t, _ in doc.tags if t == "style"]) == 1
    assert title.split("\r\n")[0][:10] in "".join(doc.text)
    # Our own slots appear only where the template put them.
    assert rendered.html.count(SLOTS.mark("UNSUB_URL")) == 1
    assert rendered.text.count(SLOTS.mark("UNSUB_URL")) == 1
    assert rendered.html.count(SLOTS.mark("EMAIL")) == 1


def test_text_part_reads_as_text_and_has_every_url(renderer: Renderer) -> None:
    view = edition(day=5, discussed=3)
    text = renderer.render(view).text
    for a in (view.lead, *view.day, *view.discussed):
        assert a.url in text
    assert f"Отписаться: {SLOTS.mark('UNSUB_URL')}" in text
    assert "<" not in text.replace("<br>", "")  # no markup leaks into the text part
    assert "2 комментария за сутки" in text
    for name in ("UNSUB_URL", "PREFS_URL", "EMAIL"):  # the template's own line lengths
        text = text.replace(SLOTS.mark(name), f"__{name}__")
    assert max(len(line) for line in text.splitlines()) <= 80


def test_section_variants(renderer: Renderer) -> None:
    view = edition(day=6, discussed=3)
    army = view.for_sections(parse_section_key(section_key(["Армия"])))
    assert army is not None
    assert {a.section for a in (army.lead, *army.day, *army.discussed)} == {"армия"}
    assert view.for_sections(frozenset({"космос"})) is None
    assert view.for_sections(None) is view
    assert section_key(["Флот", " армия", "флот"]) == "армия,флот"
    assert section_key(None) == "" and parse_section_key("") is None


def test_inlining_keeps_media_queries_and_puts_the_doctype_back() -> None:
    html = (
        "<!DOCTYPE html><html><head><style>p{color:red} @media (max-width:600px)"
        '{p{color:blue}}</style></head><body><p>x</p><a href="__UNSUB_URL__">y</a></body></html>'
    )
    out = inline_css(html)
    assert out.startswith("<!DOCTYPE html>")
    assert 'style="color:red"' in out and "@media" in out
    assert 'href="__UNSUB_URL__"' in out


def test_an_oversized_style_block_is_refused() -> None:
    rules = "".join(f"@media (max-width:{600 + i}px){{.c{i}{{color:red}}}}" for i in range(800))
    with pytest.raises(RenderError, match="over the"):
        inline_css(f"<html><head><style>{rules}</style></head><body>x</body></html>")


def test_the_discussed_block_says_how_many_people_discuss_first(renderer: Renderer) -> None:
    """Issue 14: «80 комментариев» printed below «8 комментариев» read as a wrong
    order. The rank counts people (a flame war of two is capped), so each item
    shows how many people discuss it, first, in both parts."""
    flame = article(200, discussed=True, commenters=2, comments_in_window=80, comments_total=90)
    broad = article(201, discussed=True, commenters=7, comments_in_window=8, comments_total=9)
    view = replace(edition(day=3, discussed=0), discussed=[broad, flame])
    out = renderer.render(view, "digest")
    text = re.sub(r"<[^>]+>", " ", out.html)
    assert re.search(r"обсуждают\s+7 человек\s.*?8 комментариев", text, re.S)
    assert text.index("7 человек") < text.index("2 человека")
    assert "обсуждают 7 человек · 8 комментариев" in out.text
    assert "обсуждают 2 человека · 80 комментариев" in out.text


def test_the_mail_speaks_russian_and_names_itself_where_webmail_keeps_it(
    renderer: Renderer,
) -> None:
    """Issue 17: Gmail and Outlook drop <html>; the wrapper keeps the language and
    is an article named by the subject. The lead image's link has a name: what
    the picture shows (issue 27 §2: the headline, its name before, was read twice
    with images off); a picture without a caption is no link (a link needs a name)."""
    view = edition()
    doc = parse(renderer.render(view).html)
    wrapper = next(a for t, a in doc.tags if t == "div" and a.get("class") == "container")
    assert wrapper.get("lang") == "ru" and wrapper.get("role") == "article"
    assert wrapper.get("aria-label") == view.subject
    image = next(a for t, a in doc.tags if t == "img")
    assert view.lead.image_caption and image.get("alt") == "Подпись к фото"
    assert ("main", {}) not in doc.tags  # the archive page's landmark only


def test_a_variant_leads_with_its_own_best_story_and_says_it_in_its_preheader(
    renderer: Renderer,
) -> None:
    """Issue 27 §1: a reader of «флот» saw the full edition's lead in the inbox
    list (a story their letter does not hold), and their letter led with the
    first of the day's list (100 views) above a story with 400. The variant's lead
    is chosen by the edition's rule from its own items, and its preheader is made
    from it."""
    view = replace(
        edition(day=6, discussed=0),
        preheader="Новость номер 0",
        preheader_template="{{ lead_title }}",
        preheader_values=(("site_name", "Новости ВПК"),),
    )
    fleet = view.for_sections(frozenset({"флот"}))
    assert fleet is not None
    assert [a.id for a in (fleet.lead, *fleet.day)] == [4, 1]  # 400 views above 100
    assert fleet.preheader == "Новость номер 4"
    html = renderer.render(fleet).html
    assert '<div class="preheader"' in html and "Новость номер 0" not in html
    pictured = replace(view, day=[replace(a, image_url=f"https://vpk.example.ru/{a.id}.jpg")
                                  if a.id == 1 else a for a in view.day])  # fmt: skip
    assert pictured.for_sections(frozenset({"флот"})).lead.id == 1  # type: ignore[union-attr]
    # The edition's own lead stays where the reader has its section.
    army = view.for_sections(frozenset({"армия"}))
    assert army is not None and army.lead is view.lead and army.preheader == "Новость номер 0"


def test_obsuzhdayut_means_people_in_the_days_list_too(renderer: Renderer) -> None:
    """Issue 27 §4: «обсуждают: 20 комментариев» in the day's list and «обсуждают
    29 человек» in «Обсуждаемое»: one word, two meanings. It counts people
    everywhere; the comments are said as comments."""
    hot = article(7, discussed=True, commenters=12, comments_in_window=20, comments_total=31)
    view = replace(edition(day=3, discussed=0), day=[hot, article(8)])
    out = renderer.render(view, "digest")
    for part in (re.sub(r"<[^>]+>", " ", out.html), out.text):
        assert not re.search(r"обсуждают:", part)
        assert re.search(r"обсуждают\s+12 человек\s*·\s*20 комментариев", part), part[:3000]


def test_with_images_blocked_the_picture_says_what_it_shows_not_the_headline(
    renderer: Renderer,
) -> None:
    """Issue 27 §2: the lead picture's alt was the headline, so a reader with
    images off (most clients' default) read it twice; premailer turned the CSS
    into `width="100%"` and `height="auto"` (not a value: Outlook may draw the
    picture at its natural size). The alt is what the caption says the picture
    shows (its credit left out), empty for a picture without a caption; the
    width is the template's 560 and no attribute says "auto"."""
    view = with_lead(edition(day=2), image_caption="Ильхам Алиев. Источник: aztv.az.")
    html = renderer.render(view).html
    (img,) = re.findall(r"<img[^>]*>", html)
    assert 'alt="Ильхам Алиев"' in img and view.lead.title not in img
    assert 'width="560"' in img and 'height="auto"' not in img and 'width="100%"' not in img
    assert "Ильхам Алиев. Источник: aztv.az." in html  # the caption itself stays
    bare = renderer.render(with_lead(edition(day=2), image_caption=None)).html
    assert 'alt=""' in re.findall(r"<img[^>]*>", bare)[0]
    assert not re.search(r'<[^>]+\s(?:width|height)="auto"', html)


# -- when a template is wrong (issue 28 §7) -----------------------------------------


def test_a_word_plural_does_not_know_takes_its_forms_or_says_so() -> None:
    """`plural("раздел")` made `preview` and `digest doctor` die with a bare KeyError."""
    assert plural(5, "раздел", "раздела", "разделов") == "5 разделов"
    assert plural(21, "раздел", "раздела", "разделов") == "21 раздел"
    with pytest.raises(RenderError, match="no forms for «раздел»"):
        plural(5, "раздел")


def broken(tmp_path: Path, name: str, line: int, text: str) -> Renderer:
    """The project's templates with ``text`` put in as line ``line`` of ``name``."""
    folder = tmp_path / "templates"
    shutil.copytree(TEMPLATES, folder)
    lines = (folder / name).read_text(encoding="utf-8").splitlines(keepends=True)
    lines.insert(line - 1, text + "\n")
    (folder / name).write_text("".join(lines), encoding="utf-8")
    return Renderer(folder, SLOTS)


@pytest.mark.parametrize(
    ("name", "text", "said"),
    [
        ("digest.html.j2", '{{ 5 | plural("раздел") }}', "plural: no forms for «раздел»"),
        ("digest.txt.j2", "{% if %}", "Expected an expression"),
        ("digest.html.j2", "{{ nonesuch.title }}", "'nonesuch' is undefined"),
        ("digest.txt.j2", "{{ e.subject | int / 0 }}", "ZeroDivisionError"),
    ],
)
def test_a_template_error_names_the_file_the_line_and_what(
    tmp_path: Path, name: str, text: str, said: str
) -> None:
    """A template syntax error named neither the file nor the line."""
    renderer = broken(tmp_path, name, 20, text)
    with pytest.raises(RenderError) as caught:
        renderer.render(edition())
    message = str(caught.value)
    assert f"{name}, line 20: " in message and said in message, message


def test_a_weeks_letter_names_its_week_and_each_articles_day(renderer: Renderer) -> None:
    """Issue 28 §7: the weekly letter showed bare HH:MM for a whole week, and its
    masthead only the last day."""
    assert span_long(date(2026, 11, 25), 1) == "25 ноября 2026\xa0г."
    assert span_long(date(2026, 11, 25), 7) == "18–25 ноября 2026\xa0г."
    assert span_long(date(2026, 12, 2), 7) == "25 ноября – 2 декабря 2026\xa0г."
    assert span_long(date(2027, 1, 3), 7) == "27 декабря 2026 – 3 января 2027\xa0г."
    weekly = edition(window_days=7)
    rendered = renderer.render(weekly)
    for part in (rendered.html, rendered.text):
        assert "18–25 ноября 2026" in part
    stamp = weekly.day[0].published_at.astimezone(weekly.zone)
    assert f"{stamp.day} ноября, {stamp:%H:%M}" in rendered.text
    daily = renderer.render(edition())
    assert f"{stamp.day} ноября, {stamp:%H:%M}" not in daily.text and f"{stamp:%H:%M}" in daily.text
