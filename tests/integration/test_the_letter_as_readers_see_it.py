"""The letter as a reader opens it (issue 27): in Debian's Chromium at a
phone's 375 px, light and dark, with images on and blocked (most clients'
default). The pictures are kept under ``var/letter/`` for a person to look at;
``make letter-pictures`` copies them to ``docs/letter/``, where the README shows
them. What can be asserted from the page is asserted: nothing overflows, the
picture's place says what it shows, the dark scheme is the letter's own."""

from __future__ import annotations

import struct
import zlib
from datetime import date

import pytest
from playwright.sync_api import Browser, Route

from digest import demo
from digest.edition.desk import split_message
from digest.wiring import Services
from tests.support.common import FIXED_NOW, PROJECT_ROOT
from tests.support.demo_data import load_demo_articles

PICTURES = PROJECT_ROOT / "var" / "letter"


def picture(width: int = 560, height: int = 315) -> bytes:
    """A plain PNG to stand for the site's photographs (the tests reach only
    127.0.0.1): a grey-blue gradient, so the picture's place is visible."""
    rows = b"".join(
        b"\x00" + bytes((90 + y // 4, 110 + y // 5, 130 + y // 6) * width) for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + (chunk(b"IEND", b""))
    )


@pytest.fixture
def letter(services: Services, fixed_date: date) -> str:
    schedule = services.schedule("daily")
    load_demo_articles(services.factory, schedule, fixed_date)
    demo.add_subscribers(services.factory, 3, now=FIXED_NOW)
    edition = services.editions.build(schedule, fixed_date)
    html, _, _ = split_message(services.previews.preview(schedule, edition).data)
    return html


# The letter is the same from either database; one set of pictures, one writer of each file.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("images", ["images", "no-images"])
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_letter_at_375_px_in_light_and_dark_with_images_on_and_off(
    browser: Browser, letter: str, scheme: str, images: str
) -> None:
    page = browser.new_page(viewport={"width": 375, "height": 800})
    page.emulate_media(color_scheme=scheme)  # type: ignore[arg-type]
    png = picture()

    def photographs(route: Route) -> None:
        if images == "images":
            route.fulfill(status=200, body=png, content_type="image/png")
        else:
            route.abort()  # blocked, as a mail client does by default

    page.route("**/*.jpg", photographs)
    page.set_content(letter, wait_until="load")
    PICTURES.mkdir(parents=True, exist_ok=True)
    shot = PICTURES / f"letter-375-{scheme}-{images}.png"
    page.screenshot(path=str(shot))  # the first screen: what the reader opens to
    wide = page.evaluate("document.documentElement.scrollWidth")
    lead = page.evaluate(
        "() => { const i = document.querySelector('img.lead-img');"
        " return i && [i.naturalWidth, i.alt, i.getBoundingClientRect().width]; }"
    )
    title = page.inner_text("h1.lead-title")
    page.close()
    assert wide <= 375, f"the letter is {wide} px wide at 375"
    assert shot.stat().st_size > 10_000
    if lead is not None:
        loaded, alt, shown = lead
        assert (loaded > 0) == (images == "images")
        assert alt != title  # with images off the headline is not read twice
        assert shown <= 375
