"""The desk on a phone (issue 28 §4): at 375 px the index was 658 px wide, an
edition 644, the readers 458; the letter's frame a fixed 600 px, cut. Every desk
page (and the subscription box and the archive) fits the screen at 375 and
1280 px: real Chromium measures it."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select

from digest.models import Edition, Subscriber
from digest.wiring import Services
from tests.support.web import READER, log_in

if TYPE_CHECKING:
    from playwright.sync_api import Browser


# What sticks out, to say which element to fix.
WIDEST = """(width) => [...document.querySelectorAll('body *')]
  .filter(e => e.getBoundingClientRect().right > width + 1 || e.scrollWidth > e.clientWidth + 1)
  .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
    + (e.className ? '.' + e.className : ''))
  .slice(-3)"""


def pages(services: Services) -> list[str]:
    with services.factory() as session:
        edition = session.scalars(select(Edition.id)).first()
        reader = session.scalar(select(Subscriber.id).where(Subscriber.email == READER))
    return [
        "/desk/",
        f"/desk/editions/{edition}",
        f"/desk/editions/{edition}/delivery",
        "/desk/readers?q=reader",
        f"/desk/readers/{reader}",
        "/desk/editors",
        "/desk/audit",
        "/desk/growth",
        "/desk/special",
        "/subscribe",  # and the pages readers see
        "/archive/",
    ]


@pytest.mark.parametrize("width", [375, 1280])
def test_every_desk_page_fits_the_screen(
    browser: Browser, desk: tuple[Services, str], width: int
) -> None:
    services, base = desk
    page = browser.new_page(viewport={"width": width, "height": 800})
    page.goto(f"{base}/desk/login")
    assert page.evaluate("document.documentElement.scrollWidth") <= width, "login"
    log_in(page, base)
    page.wait_for_url(re.compile(r"/desk/$"))
    wide = {}
    for path in pages(services):
        page.goto(base + path)
        measured = page.evaluate("document.documentElement.scrollWidth")
        if measured > width:
            wide[path] = (measured, page.evaluate(WIDEST, width))
    assert not wide, f"wider than {width} px: {wide}"
    page.close()
