"""The letter in a real mail client (issue 27 §5): a composed message of each
kind — the full edition, a section subset, text only — opened in Thunderbird
(Debian's, on a private Xvfb screen, a fresh profile, remote content blocked as
it is by default). What the window shows is read back by OCR: the message
opened, its subject and its first headline are on screen. The pictures are kept
in ``var/thunderbird/`` for a person to look at (`make render-check`)."""

from __future__ import annotations

import re
from datetime import date
from difflib import SequenceMatcher
from pathlib import Path

import pytest
from sqlalchemy import update

from digest import demo, store
from digest.capture import CaptureServer
from digest.edition.view import edition_view
from digest.models import Subscriber
from digest.render import parse_section_key
from digest.wiring import Services
from tests.support.common import FIXED_NOW, PROJECT_ROOT
from tests.support.demo_data import load_demo_articles
from tests.support.smtp import send_through
from tests.support.thunderbird import need_thunderbird, open_message

pytestmark = pytest.mark.thunderbird

KINDS = {  # reader: (sections, format)
    "full": (demo.reader_address(1), None, "html"),
    "subset": (demo.reader_address(2), "армия,флот", "html"),
    "text": (demo.reader_address(3), None, "text"),
}
PICTURES = PROJECT_ROOT / "var" / "thunderbird"


def words(text: str) -> str:
    return re.sub(r"[^0-9a-zа-яё]+", "", text.lower())


def on_screen(wanted: str, seen: str) -> float:
    """How much of ``wanted`` OCR read, in one run (1.0: all of it)."""
    want, have = words(wanted), words(seen)
    match = SequenceMatcher(None, want, have, autojunk=False).find_longest_match(
        0, len(want), 0, len(have)
    )
    return match.size / max(1, len(want))


@pytest.fixture
def letters(
    services: Services, fixed_date: date, smtp_server: CaptureServer, tmp_path: Path
) -> dict[str, tuple[Path, str, str]]:
    """Each kind's message as a file, with its subject and its first headline."""
    need_thunderbird()
    schedule = services.schedule("daily")
    load_demo_articles(services.factory, schedule, fixed_date)
    demo.add_subscribers(services.factory, 3, now=FIXED_NOW)
    with services.factory.begin() as session:
        for email, sections, fmt in KINDS.values():
            change = {"sections": sections, "format": fmt}
            session.execute(update(Subscriber).where(Subscriber.email == email).values(**change))
    edition = services.editions.build(schedule, fixed_date)
    send_through(services, edition, smtp_server.url)
    with services.factory() as session:
        stored = store.edition_by_id(session, edition.id)
        assert stored is not None
        view = edition_view(services.tools, session, schedule, stored)
        subject = stored.subject
    found = {}
    for kind, (email, sections, _) in KINDS.items():
        message = next(m for m in smtp_server.messages if m.rcpt_to[0] == email)
        eml = tmp_path / f"{kind}.eml"
        eml.write_bytes(message.data)
        mine = view.for_sections(parse_section_key(sections or ""))
        assert mine is not None
        found[kind] = (eml, subject, mine.lead.title)
    return found


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_of_letter_opens_in_thunderbird_with_its_subject_and_lead(
    letters: dict[str, tuple[Path, str, str]], kind: str
) -> None:
    eml, subject, headline = letters[kind]
    PICTURES.mkdir(parents=True, exist_ok=True)
    opened = open_message(eml, PICTURES / f"thunderbird-{kind}.png", title=subject)
    assert opened.picture.stat().st_size > 20_000
    assert on_screen(subject, opened.text) > 0.9, opened.text[:1500]
    assert on_screen(headline, opened.text) > 0.8, (headline, opened.text[:3000])
