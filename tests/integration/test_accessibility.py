"""WCAG 2.2 AA (issue 17): axe-core in Debian's Chromium on every page a reader or
an editor meets, and on the email's HTML at 600 and 375 px; the desk with the
keyboard alone.

axe-core comes from npm (``tests/axe``, installed by ``make test`` with
``npm ci``); under CI=true a missing copy is an error, never a skip."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select

from digest.edition.desk import split_message
from digest.models import Edition, EditionStatus, Subscriber
from digest.wiring import Services
from tests.support.common import IN_CI, PROJECT_ROOT
from tests.support.demo_data import load_demo_articles
from tests.support.web import PASSWORD, log_in, preferences_path, unsubscribe_url

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Response

AXE = PROJECT_ROOT / "tests" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
# WCAG 2.0, 2.1 and 2.2 at A and AA, and axe's best practices (landmarks, headings).
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa", "best-practice"]
WEB_LIMIT = ("critical", "serious", "moderate")
MAIL_LIMIT = ("critical", "serious")


@dataclass(frozen=True)
class Finding:
    rule: str
    impact: str
    targets: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.impact} {self.rule}: {', '.join(self.targets[:4])}"


def axe_script() -> Path:
    if not AXE.exists():
        message = f"no axe-core at {AXE}: `make test` installs it (npm ci in tests/axe)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return AXE


def audit(page: Page, impacts: tuple[str, ...] = WEB_LIMIT) -> list[Finding]:
    """axe-core's violations on the page as it is now, of the given impacts."""
    # The pages' policy runs no inline script: axe goes in through the DevTools side.
    page.evaluate(axe_script().read_text(encoding="utf-8"))
    result: dict[str, Any] = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", TAGS
    )
    return [
        Finding(v["id"], v["impact"], tuple(" ".join(n["target"]) for n in v["nodes"]))
        for v in result["violations"]
        if v["impact"] in impacts
    ]


class Markup(HTMLParser):
    """What axe does not flag but a parser and a screen reader meet: a <form>
    inside a <p> (the parser closes the paragraph: invalid HTML) and empty
    table headers."""

    def __init__(self) -> None:
        super().__init__()
        self.open_p = False
        self.in_th = False
        self.th_text = ""
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "p":
            self.open_p = True
        elif tag in ("div", "table", "section", "form") and self.open_p:
            self.problems.append(f"<{tag}> inside <p>")
            self.open_p = False
        elif tag == "th":
            self.in_th, self.th_text = True, ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "p":
            self.open_p = False
        elif tag == "th":
            self.in_th = False
            if not self.th_text.strip():
                self.problems.append("an empty <th>")

    def handle_data(self, data: str) -> None:
        if self.in_th:
            self.th_text += data


def markup_problems(response: Response | None) -> list[str]:
    assert response is not None and response.status == 200, response
    parser = Markup()
    parser.feed(response.text())
    return parser.problems


def sent(services: Services, day: date) -> Edition:
    """The day's edition, as the archive shows it once sent."""
    schedule = services.schedule("daily")
    edition = services.editions.build(schedule, day)
    with services.factory.begin() as session:
        stored = session.get(Edition, edition.id)
        assert stored is not None
        stored.status = EditionStatus.SENT
    return edition


def tomorrows_draft(services: Services) -> Edition:
    schedule = services.schedule("daily")
    tomorrow = services.clock().date() + timedelta(days=1)
    load_demo_articles(services.factory, schedule, tomorrow)
    return services.editions.build(schedule, tomorrow)


def reader_pages(services: Services, base: str) -> dict[str, str]:
    who = "reader00001@example.com"
    return {
        "unsubscribe": unsubscribe_url(services, who).replace(services.settings.base_url, base),
        "preferences": base + preferences_path(services, who),
        "subscribe": f"{base}/subscribe",
        "archive index": f"{base}/archive/",
    }


def test_every_page_a_reader_meets_passes_axe(
    browser: Browser,
    desk: tuple[Services, str],
) -> None:
    services, base = desk
    edition = sent(services, services.clock().date())
    pages = reader_pages(services, base)
    pages["archive edition"] = f"{base}/archive/daily/{edition.edition_date}"
    page = browser.new_page()
    found: dict[str, list[Finding]] = {}
    problems: dict[str, list[str]] = {}
    for name, url in pages.items():
        problems[name] = markup_problems(page.goto(url))
        found[name] = audit(page)
    # The preferences: each group a fieldset named by its legend, the zone by a label.
    page.goto(pages["preferences"])
    assert page.get_by_role("group", name="Разделы").get_by_role("checkbox").count() >= 2
    assert page.get_by_role("group", name="Как часто").get_by_role("radio").count() == 2
    assert page.get_by_role("group", name="Вид письма").get_by_role("radio").count() == 2
    assert page.get_by_label("Часовой пояс").get_attribute("name") == "timezone"
    # After the one click: the page that says it is done.
    page.goto(pages["unsubscribe"])
    page.get_by_role("button", name="Отписаться").click()
    page.wait_for_selector("text=Вы отписаны")
    found["unsubscribed"] = audit(page)
    page.close()
    assert {name: [str(f) for f in fs] for name, fs in found.items() if fs} == {}
    assert {name: p for name, p in problems.items() if p} == {}


def test_every_desk_page_passes_axe(
    browser: Browser,
    desk: tuple[Services, str],
) -> None:
    services, base = desk
    schedule = services.schedule("daily")
    today = services.clock().date()
    draft = tomorrows_draft(services)
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    problems = {"login": markup_problems(page.goto(f"{base}/desk/login"))}
    found = {"login": audit(page)}
    log_in(page, base)
    done = services.editions.build(schedule, today)  # sent by the fixture
    with services.factory() as session:
        reader_id = session.scalars(select(Subscriber.id).order_by(Subscriber.id)).first()
    for name, path in {
        "index": "/desk/",
        "draft": f"/desk/editions/{draft.id}",
        "sent edition": f"/desk/editions/{done.id}",
        "delivery": f"/desk/editions/{done.id}/delivery",
        "readers": "/desk/readers?q=reader",
        "reader": f"/desk/readers/{reader_id}",
    }.items():
        problems[name] = markup_problems(page.goto(base + path))
        found[name] = audit(page)
    # The shaping buttons say which article they move.
    page.goto(f"{base}/desk/editions/{draft.id}")
    rows = page.locator("#items tr")
    for i in range(rows.count()):
        title = rows.nth(i).locator("td:nth-child(2) a").inner_text()
        names = [
            b.get_attribute("aria-label") or "" for b in rows.nth(i).get_by_role("button").all()
        ]
        assert len(names) == 4 and all(n.endswith(f": {title}") for n in names), names
    page.close()
    assert {name: [str(f) for f in fs] for name, fs in found.items() if fs} == {}
    assert {name: p for name, p in problems.items() if p} == {}


def rgb(css: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", css)[:3])


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [600, 375])
def test_the_emails_html_passes_axe_at_desktop_and_phone_width(
    browser: Browser,
    desk: tuple[Services, str],
    width: int,
    scheme: str,
) -> None:
    """And in the dark (issue 27 §3): the letter declares both schemes and has a
    dark palette of its own, the masthead still the brand's red; axe checks every
    text pair's contrast with the dark scheme emulated."""
    services, _ = desk
    schedule = services.schedule("daily")
    edition = services.editions.build(schedule, services.clock().date())
    html, _, _ = split_message(services.previews.preview(schedule, edition).data)
    doctypes = len(re.findall(r"<!doctype", html, re.IGNORECASE))
    assert doctypes == 1, f"{doctypes} doctypes"
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.emulate_media(color_scheme=scheme)  # type: ignore[arg-type]
    page.set_content(html)
    style = "(s) => getComputedStyle(document.querySelector(s)).backgroundColor"
    card, masthead = (rgb(page.evaluate(style, s)) for s in (".card", ".masthead"))
    declared = page.evaluate("document.querySelector('meta[name=color-scheme]')?.content")
    found = audit(page, MAIL_LIMIT)
    page.close()
    assert declared == "light dark"
    assert masthead == (0x7A, 0x1C, 0x1C)  # the brand, in both
    assert (sum(card) < 120) if scheme == "dark" else card == (255, 255, 255), card
    assert [str(f) for f in found] == []


def test_an_editor_approves_the_draft_with_the_keyboard_alone(
    browser: Browser,
    desk: tuple[Services, str],
) -> None:
    """Tab from the top of the edition page to «Утвердить», each stop with a
    visible focus ring, and Enter approves."""
    services, base = desk
    with services.factory.begin() as session:  # a reader of two sections: a second variant
        reader = session.scalars(select(Subscriber).order_by(Subscriber.id)).first()
        assert reader is not None
        reader.sections = "армия,флот"
    draft = tomorrows_draft(services)
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.goto(f"{base}/desk/login")
    for _ in range(6):  # the skip link, the header's link, then the form
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.name") == "username":
            break
    assert page.evaluate("document.activeElement.name") == "username"
    page.keyboard.type("anna")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/desk/")
    page.goto(f"{base}/desk/editions/{draft.id}")
    stops: list[str] = []
    for _ in range(60):
        page.keyboard.press("Tab")
        name = page.evaluate("document.activeElement.textContent.trim()")
        ring = page.evaluate(
            "(() => { const s = getComputedStyle(document.activeElement);"
            " return s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2; })()"
        )
        stops.append(name)
        assert ring, f"no visible focus ring on {name!r}"
        if name == "Утвердить":
            break
    assert stops[-1] == "Утвердить", stops
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Снять утверждение")
    # Another variant of the preview, by keyboard: the arrow key changes the option
    # and nothing else (WCAG 3.2.2); «Показать» shows it.
    url = page.url
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.tagName") == "SELECT":
            break
    assert page.evaluate("document.activeElement.tagName") == "SELECT"
    page.keyboard.press("ArrowDown")
    page.wait_for_timeout(300)  # a submit on change would be on its way by now
    assert page.url == url
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"variant="))
    with services.factory() as session:
        stored = session.get(Edition, draft.id)
        assert stored is not None and stored.status is EditionStatus.APPROVED
    page.close()
