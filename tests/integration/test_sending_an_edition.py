"""Sending through a real SMTP server (aiosmtpd on 127.0.0.1), on SQLite and PostgreSQL."""

from __future__ import annotations

import email
import email.policy
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from digest import demo, store
from digest.audience.rows import Row
from digest.audience.subscribers import SubscriberBook
from digest.capture import CaptureServer
from digest.config import parse_smtp_url
from digest.errors import EmptyEdition, RelayUnavailable
from digest.models import (
    Article,
    Block,
    Delivery,
    DeliveryStatus,
    Edition,
    EditionStatus,
    Subscriber,
    SubscriberStatus,
)
from digest.schedule.files import Schedule
from digest.send import SmtpConnection, probe, run_async
from digest.wiring import Services
from tests.support.common import FIXED_NOW, together
from tests.support.databases import count_commits
from tests.support.demo_data import load_demo_articles
from tests.support.mail import READERS, send
from tests.support.smtp import ScriptedHandler

addr = demo.reader_address  # the demo's address of reader number i


@pytest.fixture
def schedule(services: Services) -> Schedule:
    return services.schedule("daily")


@pytest.fixture
def loaded(services: Services, schedule: Schedule, fixed_date: date) -> Services:
    load_demo_articles(services.factory, schedule, fixed_date)
    demo.add_subscribers(services.factory, READERS, now=FIXED_NOW)
    return services


def deliveries(factory: sessionmaker[Session], edition: Edition) -> dict[str, Delivery]:
    with factory() as session:
        rows = session.execute(
            select(Subscriber.email, Delivery)
            .join(Delivery, Delivery.subscriber_id == Subscriber.id)
            .where(Delivery.edition_id == edition.id)
        ).all()
    return {e: d for e, d in rows}


def test_every_subscriber_gets_exactly_one_message_equal_to_the_preview(
    loaded: Services, schedule: Schedule, fixed_date: date, smtp_server: CaptureServer
) -> None:
    edition = loaded.editions.build(schedule, fixed_date)
    result = send(loaded, schedule, edition, smtp_server)
    assert result.sent == READERS and result.failed == result.deferred == 0
    received = Counter(m.rcpt_to[0] for m in smtp_server.messages)
    with loaded.factory() as session:
        active = set(session.scalars(select(Subscriber.email)))
    assert set(received) == active and set(received.values()) == {1}
    # What arrived is byte for byte what `digest preview --subscriber` shows.
    for captured in smtp_server.messages[:5]:
        preview = loaded.previews.preview(schedule, edition, captured.rcpt_to[0])
        assert captured.data == preview.data
        assert captured.mail_from == preview.envelope_from
    rows = deliveries(loaded.factory, edition)
    assert {d.status for d in rows.values()} == {DeliveryStatus.SENT}
    assert all(d.smtp_code == 250 and "queued as" in (d.smtp_reply or "") for d in rows.values())
    assert all(d.message_id and d.sent_at and d.attempts == 1 for d in rows.values())
    with loaded.factory() as session:
        stored = session.get(Edition, edition.id)
        assert stored is not None and stored.status is EditionStatus.SENT and stored.sent_at


def test_a_second_run_sends_nothing(
    loaded: Services, schedule: Schedule, fixed_date: date, smtp_server: CaptureServer
) -> None:
    edition = loaded.editions.build(schedule, fixed_date)
    send(loaded, schedule, edition, smtp_server)
    again = loaded.editions.build(schedule, fixed_date)
    assert again.status is EditionStatus.SENT
    result = send(loaded, schedule, again, smtp_server)
    assert result.claimed == 0 and result.sent == 0
    assert len(smtp_server.messages) == READERS


def test_a_new_subscriber_gets_the_edition_on_the_next_run(
    loaded: Services, schedule: Schedule, fixed_date: date, smtp_server: CaptureServer
) -> None:
    edition = loaded.editions.build(schedule, fixed_date)
    send(loaded, schedule, edition, smtp_server)
    demo.add_subscribers(loaded.factory, READERS + 3, now=FIXED_NOW)
    result = send(loaded, schedule, edition, smtp_server)
    assert result.sent == 3 and len(smtp_server.messages) == READERS + 3


def test_replies_are_recorded_in_the_servers_own_words(
    loaded: Services, schedule: Schedule, fixed_date: date, smtp_server: CaptureServer
) -> None:
    handler = smtp_server.handler
    assert isinstance(handler, ScriptedHandler)
    handler.rules = {
        addr(1): "451 4.3.0 Mailbox temporarily unavailable",
        addr(2): f"550 5.1.1 <{addr(2)}>: user unknown",
        addr(3): "554 5.7.1 Message rejected as spam",
        addr(4): "drop",
    }
    edition = loaded.editions.build(schedule, fixed_date)
    result = send(loaded, schedule, edition, smtp_server)
    assert (result.failed, result.bounced) == (1, 1)
    rows = deliveries(loaded.factory, edition)
    # The spam verdict slows that domain (negative feedback, MAIL-RULES 23-24) but one
    # reply never pauses it: its other readers got the edition like everyone else.
    policy_domain = result.domains[addr(3).split("@")[1]]
    assert policy_domain.slowed == 1 and policy_domain.pauses == 0
    assert result.deferred == 2 and result.sent == READERS - 4
    temp = rows[addr(1)]
    assert (temp.status, temp.smtp_code) == (DeliveryStatus.DEFERRED, 451)
    assert temp.smtp_reply == "4.3.0 Mailbox temporarily unavailable"
    assert temp.next_attempt_at is not None and temp.next_attempt_at - FIXED_NOW >= timedelta(
        minutes=5
    )
    hard = rows[addr(2)]
    assert (hard.status, hard.smtp_code) == (DeliveryStatus.BOUNCED, 550)
    assert hard.smtp_reply == f"5.1.1 <{addr(2)}>: user unknown"
    policy = rows[addr(3)]
    assert (policy.status, policy.smtp_code) == (DeliveryStatus.FAILED, 554)
    with loaded.factory() as session:
        status = dict(session.execute(select(Subscriber.email, Subscriber.status)).all())
    # A hard bounce suppresses the address; a spam verdict is our problem, not the reader's.
    assert status[addr(2)] is SubscriberStatus.BOUNCED
    assert status[addr(3)] is SubscriberStatus.ACTIVE
    dropped = rows[addr(4)]
    assert dropped.status is DeliveryStatus.DEFERRED and dropped.smtp_code is None
    assert "connection lost" in (dropped.smtp_reply or "")
    with loaded.factory() as session:
        stored = session.get(Edition, edition.id)
        assert stored is not None and stored.status is EditionStatus.SENDING  # two still to retry
    # A failed delivery is never sent again; a deferred one is, once it is due.
    handler.rules = {}
    with loaded.factory() as session, session.begin():
        session.execute(
            update(Delivery)
            .where(Delivery.status == DeliveryStatus.DEFERRED)
            .values(next_attempt_at=FIXED_NOW)
        )
    retry = send(loaded, schedule, edition, smtp_server)
    assert retry.sent == 2 and retry.failed == 0
    assert deliveries(loaded.factory, edition)[addr(1)].attempts == 2


def test_an_unsubscribe_takes_effect_mid_send(
    loaded: Services, schedule: Schedule, fixed_date: date, smtp_server: CaptureServer
) -> None:
    edition = loaded.editions.build(schedule, fixed_date)
    loaded.lifecycle.start_sending(schedule, edition)
    with loaded.factory() as session, session.begin():
        session.execute(
            update(Subscriber)
            .where(Subscriber.email == addr(5))
            .values(status=SubscriberStatus.UNSUBSCRIBED)
        )
    result = send(loaded, schedule, edition, smtp_server)
    assert result.suppressed == 1 and result.sent == READERS - 1
    row = deliveries(loaded.factory, edition)[addr(5)]
    assert (
        row.status is DeliveryStatus.SUPPRESSED and row.smtp_reply == "subscriber is unsubscribed"
    )
    assert addr(5) not in {m.rcpt_to[0] for m in smtp_server.messages}


def test_an_accepted_message_is_recorded_before_its_connection_sends_again(
    loaded: Services, schedule: Schedule, fixed_date: date, smtp_server: CaptureServer
) -> None:
    """The bound behind crash-safety: when the relay receives a message, every
    earlier accepted message but at most one per connection is already committed
    as sent, so a kill -9 at any moment can duplicate at most `connections`."""
    demo.add_subscribers(loaded.factory, 300, now=FIXED_NOW)
    edition = loaded.editions.build(schedule, fixed_date)
    loaded.lifecycle.start_sending(schedule, edition)
    engine = loaded.factory.kw["bind"]
    commits = count_commits(engine)
    handler = smtp_server.handler
    assert isinstance(handler, ScriptedHandler)
    lags: list[int] = []

    def check(_envelope: object) -> None:
        with loaded.factory() as session:
            counts = store.delivery_counts(session, edition.id)
        lags.append(len(smtp_server.messages) - counts.get(DeliveryStatus.SENT, 0))

    handler.on_data = check
    result = send(loaded, schedule, edition, smtp_server, batch=50)
    assert result.sent == 300 and len(lags) == 300
    assert max(lags) <= loaded.settings.smtp_connections
    # Outcomes of all connections share commits: never more than one per message.
    assert commits() <= 300 + 2 * 300 // 50 + 4


def test_limit_sends_at_most_n(
    loaded: Services, schedule: Schedule, fixed_date: date, smtp_server: CaptureServer
) -> None:
    edition = loaded.editions.build(schedule, fixed_date)
    assert send(loaded, schedule, edition, smtp_server, limit=7).sent == 7
    assert len(smtp_server.messages) == 7
    with loaded.factory() as session:
        counts = store.delivery_counts(session, edition.id)
    assert counts[DeliveryStatus.QUEUED] == READERS - 7 and DeliveryStatus.SENDING not in counts
    assert send(loaded, schedule, edition, smtp_server).sent == READERS - 7


def test_a_relay_that_is_down_changes_nothing(
    loaded: Services, schedule: Schedule, fixed_date: date
) -> None:
    dead = SmtpConnection(parse_smtp_url("smtp://127.0.0.1:9"), 2)
    with pytest.raises(RelayUnavailable, match="cannot connect"):
        run_async(probe(dead))


def test_a_relay_that_fails_mid_send_stops_the_run_and_releases_claims(
    loaded: Services, schedule: Schedule, fixed_date: date, smtp_server: CaptureServer
) -> None:
    handler = smtp_server.handler
    assert isinstance(handler, ScriptedHandler)
    handler.rules = {addr(i): "drop" for i in range(1, READERS + 1)}
    edition = loaded.editions.build(schedule, fixed_date)
    result = send(loaded, schedule, edition, smtp_server)
    assert result.aborted and "no relay usable for 1 s" in result.aborted
    with loaded.factory() as session:
        counts = store.delivery_counts(session, edition.id)
    assert DeliveryStatus.SENDING not in counts
    queued, deferred = counts.get(DeliveryStatus.QUEUED, 0), counts.get(DeliveryStatus.DEFERRED, 0)
    assert queued + deferred == READERS
    # Each rest costs at most one message per connection, not the whole list.
    assert queued > 0


def test_each_section_choice_gets_its_own_variant(
    loaded: Services, schedule: Schedule, fixed_date: date, smtp_server: CaptureServer
) -> None:
    with loaded.factory() as session, session.begin():
        session.execute(
            update(Subscriber).where(Subscriber.email == addr(1)).values(sections="космос")
        )
        session.execute(
            update(Subscriber).where(Subscriber.email == addr(2)).values(sections="нет-такого")
        )
    edition = loaded.editions.build(schedule, fixed_date)
    send(loaded, schedule, edition, smtp_server)
    with loaded.factory() as session:
        keys = {v.key: v for v in store.variants(session, edition.id)}
    assert {"", "космос", "нет-такого"} <= set(keys)
    assert keys["нет-такого"].articles == 0
    rows = deliveries(loaded.factory, edition)
    assert rows[addr(2)].status is DeliveryStatus.SUPPRESSED
    space = next(m for m in smtp_server.messages if m.rcpt_to[0] == addr(1))
    html = email.message_from_bytes(space.data, policy=email.policy.default).get_body(("html",))
    content = html.get_content()  # type: ignore[union-attr]
    assert "Космос" in content and ">Флот<" not in content


def test_each_variant_leads_with_its_own_best_story_and_its_preheader_names_it(
    loaded: Services, schedule: Schedule, fixed_date: date, smtp_server: CaptureServer
) -> None:
    """Issue 27 §1 through the real build and send: the reader of two sections gets
    a letter led by the most read of their own stories (with a picture first),
    and the hidden preheader the inbox shows is that story, not the full edition's."""
    chosen = "армия,флот"
    with loaded.factory() as session, session.begin():
        session.execute(
            update(Subscriber).where(Subscriber.email == addr(1)).values(sections=chosen)
        )
    edition = loaded.editions.build(schedule, fixed_date)
    send(loaded, schedule, edition, smtp_server)
    with loaded.factory() as session:
        full = store.edition_by_id(session, edition.id)
        assert full is not None
        mine = [
            i.article
            for i in full.items
            if i.block is not Block.DISCUSSED and i.article.section.slug in chosen.split(",")
        ]
        variant = next(v for v in store.variants(session, edition.id) if v.key == chosen)
        full_preheader = full.preheader
    best = min(mine, key=lambda a: (a.image_url is None, -a.views, -a.published_at.timestamp()))
    assert full_preheader not in (best.title, "")  # the full edition leads elsewhere
    assert variant.preheader == best.title
    letter = next(m for m in smtp_server.messages if m.rcpt_to[0] == addr(1))
    html = email.message_from_bytes(letter.data, policy=email.policy.default).get_body(("html",))
    content = html.get_content()  # type: ignore[union-attr]
    hidden = content.split('class="preheader"', 1)[1].split("</div>", 1)[0]
    assert best.title in hidden and full_preheader not in hidden
    first_story = content.index(
        best.title, content.index("</div>", content.index('class="preheader"'))
    )
    assert all(
        first_story < content.find(a.title) for a in mine if a is not best and a.title in content
    )


def test_an_empty_window_makes_no_edition(loaded: Services, schedule: Schedule) -> None:
    with pytest.raises(EmptyEdition, match="no new articles"):
        loaded.editions.build(schedule, date(2020, 1, 1))
    with loaded.factory() as session:
        assert store.edition_for(session, "daily", date(2020, 1, 1)) is None


def test_a_draft_is_refreshed_and_a_sending_edition_is_frozen(
    loaded: Services, schedule: Schedule, fixed_date: date, smtp_server: CaptureServer
) -> None:
    edition = loaded.editions.build(schedule, fixed_date)
    start, _ = schedule.bounds(fixed_date)
    with loaded.factory() as session, session.begin():
        session.add(
            Article(
                external_id="late",
                url="https://vpk.example.ru/late.html",
                title="Поздняя новость",
                published_at=start + timedelta(hours=23),
                views=10**6,
            )
        )
    refreshed = loaded.editions.build(schedule, fixed_date)
    assert refreshed.id == edition.id
    assert "Поздняя новость" in loaded.previews.preview(schedule, refreshed).data.decode(
        "ascii"
    ) or (
        "Поздняя новость"
        in email.message_from_bytes(
            loaded.previews.preview(schedule, refreshed).data, policy=email.policy.default
        )
        .get_body(("html",))
        .get_content()
    )  # type: ignore[union-attr]
    send(loaded, schedule, refreshed, smtp_server, limit=1)
    with loaded.factory() as session, session.begin():
        session.add(
            Article(
                external_id="later",
                url="https://vpk.example.ru/later.html",
                title="Ещё позже",
                published_at=start + timedelta(hours=23, minutes=30),
                views=10**7,
            )
        )
    frozen = loaded.editions.build(schedule, fixed_date)
    html = email.message_from_bytes(
        loaded.previews.preview(schedule, frozen).data, policy=email.policy.default
    ).get_body(("html",))
    assert "Ещё позже" not in html.get_content()  # type: ignore[union-attr]


def test_editions_remember_each_other(
    loaded: Services, schedule: Schedule, fixed_date: date, smtp_server: CaptureServer
) -> None:
    first = loaded.editions.build(schedule, fixed_date)
    send(loaded, schedule, first, smtp_server)
    next_day = fixed_date + timedelta(days=1)
    start, _ = schedule.bounds(next_day)
    with loaded.factory() as session, session.begin():
        # A new article for the next day, and an old one that went out but gets 25 new comments.
        session.add(
            Article(
                external_id="tomorrow",
                url="https://vpk.example.ru/t.html",
                title="Завтрашняя новость",
                published_at=start + timedelta(hours=1),
            )
        )
        old = session.scalar(
            select(Article).where(Article.external_id == f"{fixed_date:%Y%m%d}-talk-01")
        )
        assert old is not None
        from digest.models import Comment

        for n in range(25):
            session.add(
                Comment(
                    article_id=old.id,
                    number=100_000 + n,
                    author=f"новый{n}",
                    posted_at=start + timedelta(hours=2),
                    body="ещё",
                )
            )
        # This week's article that went out yesterday: republished in the new window by mistake.
        repeat = session.scalar(
            select(Article).where(Article.external_id == f"{fixed_date:%Y%m%d}-seed")
        )
        assert repeat is not None
        repeat.published_at = start + timedelta(hours=3)
    second = loaded.editions.build(schedule, next_day)
    with loaded.factory() as session:
        items = {i.article.external_id: i for i in session.get(Edition, second.id).items}  # type: ignore[union-attr]
    assert "tomorrow" in items
    assert f"{fixed_date:%Y%m%d}-seed" not in items  # went out yesterday: not repeated
    assert items[f"{fixed_date:%Y%m%d}-talk-01"].block.value == "discussed"


def test_window_edges_in_sql(services: Services, schedule: Schedule, fixed_date: date) -> None:
    """[start, end): an article or comment exactly at the start counts, at the end it does not."""
    from digest.models import Comment

    start, end = schedule.bounds(fixed_date)
    with services.factory() as session, session.begin():
        for name, at in (
            ("before", start - timedelta(microseconds=1)),
            ("at-start", start),
            ("inside", start + timedelta(hours=5)),
            ("last", end - timedelta(microseconds=1)),
            ("at-end", end),
        ):
            session.add(
                Article(external_id=name, url=f"https://e.ru/{name}", title=name, published_at=at)
            )
        session.flush()
        old = Article(
            external_id="old",
            url="https://e.ru/old",
            title="old",
            published_at=start - timedelta(days=2),
        )
        session.add(old)
        session.flush()
        for n, at in enumerate(
            (start - timedelta(microseconds=1), start, end - timedelta(seconds=1), end), start=1
        ):
            session.add(
                Comment(article_id=old.id, number=n, author=f"a{n}", posted_at=at, body="x")
            )
    with services.factory() as session:
        day = {c.external_id for c in store.day_candidates(session, start, end)}
        talk = store.discussions(session, start, end, start - timedelta(days=7))
    assert day == {"at-start", "inside", "last"}
    assert len(talk) == 1 and talk[0].comments_in_window == 2 and talk[0].comments_total == 3


def test_two_builders_of_one_edition_end_with_one(
    loaded: Services, schedule: Schedule, fixed_date: date
) -> None:
    """Both processes select at the same moment; the second insert loses and retries."""
    import contextlib
    import threading

    barrier = threading.Barrier(2)
    original = loaded.editions._select

    def racing_select(*args, **kwargs):  # type: ignore[no-untyped-def]
        if args[3] is None:  # only the creating path races
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=5)
        return original(*args, **kwargs)

    loaded.editions._select = racing_select  # type: ignore[method-assign]
    results: list[int] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            results.append(loaded.editions.build(schedule, fixed_date).id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    together(build)
    assert not errors and len(results) == 2 and results[0] == results[1]
    with loaded.factory() as session:
        assert len(store.recent_editions(session)) == 1


def test_rendering_happens_once_per_variant_never_per_subscriber(
    loaded: Services, schedule: Schedule, fixed_date: date, smtp_server: CaptureServer
) -> None:
    calls: list[object] = []
    render = loaded.tools.renderer.render

    def counted(view, template="digest"):  # type: ignore[no-untyped-def]
        calls.append(view.sections_filter)
        return render(view, template)

    loaded.tools.renderer.render = counted  # type: ignore[method-assign]
    edition = loaded.editions.build(schedule, fixed_date)
    with loaded.factory() as session:
        variants = len(store.variants(session, edition.id))
    assert len(calls) == variants <= 3  # one per distinct section choice
    assert send(loaded, schedule, edition, smtp_server).sent == READERS
    assert len(calls) == variants  # the send rendered nothing


def test_a_frozen_edition_keeps_its_subject(
    loaded: Services, schedule: Schedule, fixed_date: date, smtp_server: CaptureServer
) -> None:
    edition = loaded.editions.build(schedule, fixed_date)
    send(loaded, schedule, edition, smtp_server, limit=5)
    changed = schedule.model_copy(
        update={"mail": schedule.mail.model_copy(update={"subject": "Другая тема {{ date }}"})}
    )
    with loaded.factory() as session, session.begin():
        session.execute(
            update(Subscriber).where(Subscriber.email == addr(9)).values(sections="космос")
        )  # a new variant must be rendered
    again = loaded.editions.build(changed, fixed_date)
    send(loaded, changed, again, smtp_server)
    subjects = {
        email.message_from_bytes(m.data, policy=email.policy.default)["Subject"]
        for m in smtp_server.messages
    }
    assert subjects == {"Новости ВПК за 25 ноября 2026"}


def test_a_test_copy_is_never_a_readers_message(
    loaded: Services, schedule: Schedule, fixed_date: date, smtp_server: CaptureServer
) -> None:
    """Gmail drops a second message with an id it has seen: every test copy gets its
    own Message-ID, and none carries a reader's id or return path."""
    edition = loaded.editions.build(schedule, fixed_date)
    send(loaded, schedule, edition, smtp_server)
    real = {
        m.rcpt_to[0]: (m.mail_from, email.message_from_bytes(m.data)["Message-ID"])
        for m in smtp_server.messages
    }
    cfg = loaded.settings.model_copy(update={"smtp_url": smtp_server.url})
    services = Services(cfg, loaded.factory, loaded.clock)
    for to in (addr(1), addr(1), "editor@example.ru", "editor@example.ru"):
        assert services.previews.send_test(schedule, edition, to).ok
    copies = smtp_server.messages[-4:]
    ids = [email.message_from_bytes(m.data)["Message-ID"] for m in copies]
    assert len(set(ids)) == 4 and not set(ids) & {mid for _, mid in real.values()}
    assert real[addr(1)][0].startswith("bounces+")
    assert all(m.mail_from == loaded.settings.return_path for m in copies)


CYRILLIC = "иван@пример.рф"


def test_a_cyrillic_mailbox_goes_with_smtputf8_and_fails_alone_where_it_is_not_offered(
    loaded: Services, schedule: Schedule, fixed_date: date, tmp_path: Path
) -> None:
    """RFC 6531/6532: the one message to иван@пример.рф carries UTF-8 in its
    envelope and To:, sent with SMTPUTF8; every other message stays 7-bit. A relay
    that does not offer SMTPUTF8 fails that one delivery with the reason."""
    book = SubscriberBook(loaded.factory, double_opt_in=False)
    assert book.add(Row.parse({"email": "Иван@Пример.РФ", "name": "Иван Петров"})) == "added"
    edition = loaded.editions.build(schedule, fixed_date)
    handler = ScriptedHandler(tmp_path / "utf8")
    with CaptureServer(handler, enable_SMTPUTF8=True) as server:
        result = send(loaded, schedule, edition, server)
    assert result.sent == READERS + 1 and not result.failed
    (utf8,) = [m for m in server.messages if not m.rcpt_to[0].isascii()]
    assert utf8.rcpt_to == ("иван@xn--e1afmkfd.xn--p1ai",)
    head = utf8.data.split(b"\r\n\r\n", 1)[0]
    assert "To: Иван Петров <иван@пример.рф>".encode() in head or (
        b"To: =?utf-8?" in head and "<иван@пример.рф>".encode() in head
    )
    others = [m for m in server.messages if m is not utf8]
    assert all(m.data.isascii() and m.rcpt_to[0].isascii() for m in others)

    # The same edition to a relay without SMTPUTF8: only that delivery fails, and says why.
    with loaded.factory.begin() as session:
        session.execute(update(Delivery).values(status=DeliveryStatus.QUEUED, attempts=0))
    plain = CaptureServer(ScriptedHandler(tmp_path / "plain"), enable_SMTPUTF8=False)
    with plain:
        again = send(loaded, schedule, edition, plain)
    assert again.sent == READERS and again.failed == 1
    rows = deliveries(loaded.factory, edition)
    assert rows[CYRILLIC].status is DeliveryStatus.FAILED
    assert "SMTPUTF8" in (rows[CYRILLIC].smtp_reply or "")
    assert not again.domains or all(st.slowed == 0 for st in again.domains.values())


def test_a_dry_run_is_the_real_send_captured_and_writes_nothing(
    loaded: Services, schedule: Schedule, fixed_date: date, smtp_server: CaptureServer
) -> None:
    """The same claim loop and composition as a send, over every active reader; no
    delivery row, no status change, no byte to the relay; a limit caps the messages."""
    edition = loaded.editions.build(schedule, fixed_date)
    with loaded.factory() as session:
        session.execute(update(Subscriber).where(Subscriber.id == 1).values(sections="нет-такого"))
        session.commit()
    loaded.editions.build(schedule, fixed_date)  # the new choice gets its (empty) variant
    dry = loaded.previews.dry_run(schedule, edition)
    assert (dry.messages, dry.skipped, dry.problems) == (READERS - 1, 1, [])
    real_size = len(loaded.previews.preview(schedule, edition, addr(2)).data)
    assert abs(dry.bytes / dry.messages - real_size) < real_size * 0.05
    assert loaded.previews.dry_run(schedule, edition, limit=7).messages == 7
    assert not smtp_server.messages
    with loaded.factory() as session:
        assert session.scalar(select(Delivery).limit(1)) is None
        assert session.get(Edition, edition.id).status is EditionStatus.DRAFT  # type: ignore[union-attr]


def test_the_discussed_block_counts_the_people_as_selection_does(
    loaded: Services, schedule: Schedule, fixed_date: date
) -> None:
    """Each discussed item says how many people discussed it in the window: authors
    compared case-insensitively, the anonymous as one (as the ranking counts them)."""
    from digest.edition.view import edition_view

    edition = loaded.editions.build(schedule, fixed_date)
    with loaded.factory() as session:
        current = session.get(Edition, edition.id)
        assert current is not None
        view = edition_view(loaded.tools, session, schedule, current)
        talk = store.discussions(
            session, current.window_start, current.window_end, FIXED_NOW - timedelta(days=30)
        )
    people = {d.article.id: len(d.per_commenter) for d in talk}
    assert view.discussed and all(a.commenters == people[a.id] for a in view.discussed)
    assert all(1 <= a.commenters <= a.comments_in_window for a in view.discussed)
    message = email.message_from_bytes(
        loaded.previews.preview(schedule, edition).data, policy=email.policy.default
    )
    plain = message.get_body(("plain",))
    assert plain is not None and "обсуждают" in plain.get_content()
