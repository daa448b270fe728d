"""Through a real MTA: digest → a private Postfix → aiosmtpd servers that play
mail.ru, Gmail and Yandex. Postfix retries the greylisted readers itself, gives
up on a mailbox that stays full (its queue-expiry DSN, ``Status: 4.2.2``),
returns its own DSNs to the VERP address, and delivers them into a Maildir that
`digest bounces` reads. No hand-written DSN stands in for Postfix's here."""

from __future__ import annotations

import email
import time
from collections.abc import Iterator
from datetime import date

import pytest
from sqlalchemy import select

from digest import demo
from digest.audience.rows import Row
from digest.audience.subscribers import SubscriberBook
from digest.capture import CaptureServer
from digest.config import parse_smtp_url
from digest.models import Delivery, DeliveryStatus, Subscriber, SubscriberStatus, utcnow
from digest.send import run_async
from digest.tokens import LinkSigner
from digest.track.bounces import BounceReader
from digest.track.intake import Source, process_returns
from digest.track.outcomes import SoftBouncePolicy
from digest.wiring import Services
from tests.support.common import FIXED_NOW
from tests.support.demo_data import load_demo_articles
from tests.support.faults import FaultHandler
from tests.support.postfix import Postfix
from tests.support.smtp import send_through

READERS = 40
pytestmark = [
    pytest.mark.postfix,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]


@pytest.fixture
def receivers() -> Iterator[dict[str, tuple[CaptureServer, FaultHandler]]]:
    """mail.ru, Gmail and Yandex, each an aiosmtpd server on 127.0.0.1."""
    handlers = {name: FaultHandler() for name in ("mailru", "gmail", "yandex")}
    servers = {name: CaptureServer(h).start() for name, h in handlers.items()}
    yield {name: (servers[name], handlers[name]) for name in handlers}
    for server in servers.values():
        server.stop()


def port(server: CaptureServer) -> int:
    return parse_smtp_url(server.url).port


def test_postfix_retries_greylisting_and_its_own_dsns_bounce_exactly_the_unknown_users(
    services: Services,
    fixed_date: date,
    receivers: dict[str, tuple[CaptureServer, FaultHandler]],
) -> None:
    schedule = services.schedule("daily")
    load_demo_articles(services.factory, schedule, fixed_date)
    demo.add_subscribers(services.factory, READERS, now=FIXED_NOW)
    with services.factory() as session:
        emails = list(session.scalars(select(Subscriber.email).order_by(Subscriber.id)))
    by_domain = {
        "example.ru": "mailru",
        "mail.example.ru": "mailru",
        "example.com": "gmail",
        "yandex.example.ru": "yandex",
        "example.org": "yandex",
    }
    server_of = {e: receivers[by_domain[e.split("@")[1]]][1] for e in emails}
    unknown = [e for e in emails if e.endswith("@example.com")][:3]
    full_for_good = [e for e in emails if e.endswith("@example.com")][3:4]
    full_for_now = [e for e in emails if e.endswith("@example.org")][:1]
    # Yandex's word for a dead mailbox, under a policy code (issue 25): a hard bounce.
    dead_at_yandex = [e for e in emails if e.endswith("@example.org")][1:2]
    unknown += dead_at_yandex
    greylisted = [e for e in emails if e.endswith("example.ru")][:6]
    for rcpt in unknown:
        reply = "550 5.7.1 No such user!" if rcpt in dead_at_yandex else None
        reply = reply or f"550 5.1.1 <{rcpt}>: Recipient address rejected"
        server_of[rcpt].script(rcpt, [f"rcpt:{reply}"])
    for rcpt in full_for_good:
        server_of[rcpt].script(rcpt, ["rcpt:552 5.2.2 Mailbox full, over quota"])
    for rcpt in full_for_now:
        server_of[rcpt].script(rcpt, ["rcpt:452 4.2.2 Mailbox full"] * 1000)
    for rcpt in greylisted:
        server_of[rcpt].script(rcpt, ["rcpt:451 4.7.1 Please try again later"])

    bounce_domain = services.settings.return_path.split("@")[1]
    routes = {d: port(receivers[name][0]) for d, name in by_domain.items()}
    with Postfix(routes, bounce_domain, lifetime=6) as postfix:
        edition = services.editions.build(schedule, fixed_date)
        result = send_through(services, edition, postfix.url, "postfix")
        assert result.sent == READERS  # the relay accepted every message
        postfix.wait_idle(timeout=90)
        returned = sorted((postfix.maildir / "new").iterdir())
        assert len(returned) == len(unknown) + len(full_for_good) + len(full_for_now)
        first = email.message_from_bytes(returned[0].read_bytes())
        assert str(first["Delivered-To"]).startswith("bounces+")  # Postfix's own, by VERP
        cfg = services.settings
        reader = BounceReader(LinkSigner(cfg.link_key(), "verp"), cfg.return_path)
        policy = SoftBouncePolicy(cfg.soft_bounce_limit, cfg.soft_bounce_days)
        report = process_returns(
            services.factory, Source(postfix.maildir), reader, policy, lambda: FIXED_NOW
        )
        assert report.counts == {"bounced": 4, "soft": 2}, (report.counts, report.problems)
        assert not list((postfix.maildir / "new").iterdir())  # read: not read again

    received = {name: h.received() for name, (_, h) in receivers.items()}
    delivered = {e for counts in received.values() for e, n in counts.items() if n == 1}
    assert delivered == set(emails) - set(unknown) - set(full_for_good) - set(full_for_now)
    assert all(server_of[e].attempts[e] == 2 for e in greylisted)  # Postfix retried them
    with services.factory() as session:
        rows = session.execute(
            select(Subscriber.email, Subscriber.status, Delivery.status, Delivery.smtp_reply).join(
                Delivery, Delivery.subscriber_id == Subscriber.id
            )
        ).all()
    state = {e: (s, d, reply) for e, s, d, reply in rows}
    for rcpt in unknown:
        assert state[rcpt][:2] == (SubscriberStatus.BOUNCED, DeliveryStatus.BOUNCED)
        words = "5.7.1 No such user!" if rcpt in dead_at_yandex else None
        assert state[rcpt][2] == (words or f"5.1.1 <{rcpt}>: Recipient address rejected")
    for rcpt in full_for_good + full_for_now:
        assert state[rcpt][:2] == (SubscriberStatus.ACTIVE, DeliveryStatus.FAILED)
    assert state[full_for_now[0]][2] == "4.2.2 Mailbox full"
    for rcpt in set(emails) - set(unknown) - set(full_for_good) - set(full_for_now):
        assert state[rcpt][:2] == (SubscriberStatus.ACTIVE, DeliveryStatus.SENT)


def test_a_cyrillic_mailbox_crosses_postfix_with_smtputf8(
    services: Services,
    fixed_date: date,
    receivers: dict[str, tuple[CaptureServer, FaultHandler]],
) -> None:
    """Postfix (smtputf8_enable) takes иван@пример.рф with SMTPUTF8 and hands it on
    the same way; the readers beside it get 7-bit messages as always."""
    schedule = services.schedule("daily")
    load_demo_articles(services.factory, schedule, fixed_date)
    demo.add_subscribers(services.factory, 5, now=FIXED_NOW)
    book = SubscriberBook(services.factory, double_opt_in=False)
    assert book.add(Row.parse({"email": "иван@пример.рф"})) == "added"
    server, handler = receivers["mailru"]
    domains = [*demo.DOMAINS, "xn--e1afmkfd.xn--p1ai"]
    bounce_domain = services.settings.return_path.split("@")[1]
    with Postfix({d: port(server) for d in domains}, bounce_domain) as postfix:
        edition = services.editions.build(schedule, fixed_date)
        result = send_through(services, edition, postfix.url, "postfix")
        with services.factory() as session:
            replies = session.execute(select(Delivery.status, Delivery.smtp_reply)).all()
        assert result.sent == 6, replies
        postfix.wait_idle(timeout=60)
        assert not (postfix.maildir / "new").exists() or not any(
            (postfix.maildir / "new").iterdir()
        )
    (utf8,) = [m for m in handler.messages if not m.rcpt_to[0].isascii()]
    assert utf8.rcpt_to == ("иван@xn--e1afmkfd.xn--p1ai",)
    assert "иван@пример.рф".encode() in utf8.data.split(b"\r\n\r\n", 1)[0]
    assert all(m.data.isascii() for m in handler.messages if m is not utf8)


@pytest.mark.timing
def test_a_provider_that_answers_421_and_closes_is_held_briefly_then_probed(
    services: Services,
    fixed_date: date,
    receivers: dict[str, tuple[CaptureServer, FaultHandler]],
) -> None:
    """Issue 25 §1 against a real MTA playing the provider: Postfix answers every
    RCPT for mail.example.ru with `421 4.7.0 Try again later, closing connection`
    and hangs up (access(5)), until the test lifts it after a dozen refusals.
    digest holds the domain for a short back-off, sends one probe at a time
    while it is down, and delivers the rest once a probe is answered; the other
    domains never wait and nobody gets two copies."""
    import threading

    schedule = services.schedule("daily")
    today = schedule.today(utcnow())  # the real clock's: holds end on it
    load_demo_articles(services.factory, schedule, today)
    demo.add_subscribers(services.factory, 100, now=utcnow())
    server, handler = receivers["mailru"]
    domains = ("example.ru", "mail.example.ru", "example.com", "yandex.example.ru", "example.org")
    down = "421 4.7.0 Try again later, closing connection"
    bounce_domain = services.settings.return_path.split("@")[1]
    cfg = services.settings.model_copy(update={"domain_pause": 0.3, "domain_max_pause": 2.0})
    fast = Services(cfg, services.factory, utcnow)
    with Postfix(
        {d: port(server) for d in domains}, bounce_domain, refusals={"mail.example.ru": down}
    ) as postfix:
        lifted = threading.Event()

        def lift_after_a_dozen() -> None:
            while postfix.refused() < 12 and not lifted.wait(0.05):
                pass
            postfix.refuse({})  # the provider is back
            lifted.set()

        lifter = threading.Thread(target=lift_after_a_dozen, daemon=True)
        lifter.start()
        edition = fast.editions.build(schedule, today)
        fast.lifecycle.start_sending(schedule, edition)
        relays = fast.tools.relay_pool(parse_smtp_url(postfix.url))
        run = fast.sender.send_run(
            schedule, edition, fast.tools.connector(), worker="t", wait=True, relays=relays
        )
        result = run_async(run.run())
        lifted.set()
        with services.factory() as session:
            emails = list(session.scalars(select(Subscriber.email)))
        # Not Postfix's queue: its reload leaves delivered files for its next scan.
        deadline = time.monotonic() + 60
        while set(handler.received()) != set(emails) and time.monotonic() < deadline:
            time.sleep(0.1)
        refused = postfix.refused()
    received = handler.received()
    assert set(received) == set(emails) and set(received.values()) == {1}
    held = result.domains["mail.example.ru"]
    # The cohort's refusals (and what was in flight with them), then one probe per
    # back-off, never the domain's window of connections again.
    assert held.pauses >= 1 and held.probes >= 1 and refused >= 12
    assert refused - held.probes <= 2 * cfg.smtp_connections, (refused, held.probes)
    assert all(st.pauses == 0 for d, st in result.domains.items() if d != "mail.example.ru")
