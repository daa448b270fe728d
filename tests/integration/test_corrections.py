"""Corrections after approval, through a real SMTP server on both databases: the
site corrects a headline (or withdraws an article) while the edition is being
sent; the send pauses between claim batches, says what changed, and a rebuild
sends the rest with the corrected text under the same Message-IDs."""

from __future__ import annotations

import email
import email.policy
import json
import logging
import time
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from digest import demo, store
from digest.capture import Captured, CaptureServer
from digest.config import parse_smtp_url
from digest.errors import EditionError
from digest.ingest import Ingester, read_jsonl
from digest.models import (
    Article,
    Block,
    Delivery,
    DeliveryStatus,
    Edition,
    EditionStatus,
    EditionVariant,
    Subscriber,
)
from digest.schedule.files import Schedule
from digest.send import RelayPool, RunResult, SmtpConnection, run_async
from digest.track.reports import edition_report
from digest.wiring import Services
from tests.support.common import FIXED_NOW
from tests.support.demo_data import load_demo_articles
from tests.support.smtp import ScriptedHandler

READERS = 30
NEW_TITLE = "Исправлено: «Армата» прошла государственные испытания"


addr = demo.reader_address  # the demo's address of reader number i


@pytest.fixture
def schedule(services: Services) -> Schedule:
    return services.schedule("daily")


@pytest.fixture
def approved(services: Services, schedule: Schedule, fixed_date: date) -> Edition:
    """The day's edition, approved, with its readers."""
    load_demo_articles(services.factory, schedule, fixed_date)
    demo.add_subscribers(services.factory, READERS, now=FIXED_NOW)
    edition = services.editions.build(schedule, fixed_date)
    services.lifecycle.approve(edition)
    return edition


def item(services: Services, edition: Edition, block: Block, n: int = 0) -> Article:
    with services.factory() as session:
        current = session.get(Edition, edition.id)
        assert current is not None
        items = [i for i in sorted(current.items, key=lambda i: i.position) if i.block is block]
        return items[n].article


def correct(services: Services, tmp_path: Path, **record: Any) -> None:
    """What the site's export says now, ingested from a real file."""
    path = tmp_path / f"correction-{record['id']}.jsonl"
    path.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    report = Ingester(services.factory, clock=services.clock).load(read_jsonl(path))
    assert not report.problems, [p.reason[:300] for p in report.problems]


def full_record(article: Article, **changes: Any) -> dict[str, Any]:
    return {
        "id": article.external_id,
        "url": article.url,
        "title": article.title,
        "lead": article.lead,
        "published_at": article.published_at.isoformat(),
        "section": article.section.title if article.section else None,
        "views": article.views,
        **changes,
    }


def send(
    services: Services, schedule: Schedule, edition: Edition, server: CaptureServer
) -> RunResult:
    """One send run with small claim batches (the check runs between them)."""
    services.lifecycle.start_sending(schedule, edition)
    run = services.sender.send_run(
        schedule,
        edition,
        lambda t: SmtpConnection(t, 5),
        worker="test",
        relays=RelayPool([parse_smtp_url(server.url)], cooldown=0.2, outage_limit=1.0),
    )
    run.claims.batch_size = run.writer.batch_size = 4
    result = run_async(run.run())
    services.lifecycle.finish(edition)
    return result


def send_as_digest_send(
    services: Services, schedule: Schedule, edition: Edition, server: CaptureServer
) -> RunResult:
    """As `digest send` runs it (``until_done``): a pause that is lifted while the
    run stops for it (an editor's rebuild moments after the check) does not end
    the send. Small claim batches, as in ``send``."""
    batched = Services(
        services.settings.model_copy(update={"batch_size": 4}),
        services.factory,
        clock=services.clock,
    )
    batched.lifecycle.start_sending(schedule, edition)
    result = batched.sender.until_done(
        schedule,
        edition,
        lambda t: SmtpConnection(t, 5),
        RelayPool([parse_smtp_url(server.url)], cooldown=0.2, outage_limit=1.0),
        limit=None,
        wait=False,
        progress=None,
    )
    batched.lifecycle.finish(edition)
    return result


def text_of(message: Captured) -> str:
    parsed = email.message_from_bytes(message.data, policy=email.policy.default)
    body = parsed.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def message_id(message: Captured) -> str:
    parsed = email.message_from_bytes(message.data, policy=email.policy.default)
    return str(parsed["Message-ID"])


def rows(services: Services, edition: Edition) -> list[tuple[Delivery, EditionVariant]]:
    with services.factory() as session:
        return [
            (d, v)
            for d, v in session.execute(
                select(Delivery, EditionVariant)
                .join(EditionVariant, EditionVariant.id == Delivery.variant_id)
                .where(Delivery.edition_id == edition.id)
            )
        ]


def on_message(server: CaptureServer, n: int, action: Any) -> None:
    """Run ``action`` once, when the relay receives its n-th message."""
    handler = server.handler
    assert isinstance(handler, ScriptedHandler)
    seen = [0]

    def hook(_envelope: object) -> None:
        seen[0] += 1
        if seen[0] == n:
            action()

    handler.on_data = hook


def test_a_headline_corrected_mid_send_pauses_it_and_a_rebuild_sends_the_rest_corrected(
    services: Services,
    schedule: Schedule,
    approved: Edition,
    smtp_server: CaptureServer,
    tmp_path: Path,
) -> None:
    lead = item(services, approved, Block.LEAD)
    old_title = lead.title
    handler = smtp_server.handler
    assert isinstance(handler, ScriptedHandler)
    # The first reader is greylisted: deferred, with the Message-ID it will keep.
    handler.rules[addr(1)] = "451 4.7.1 greylisted, try again later"
    on_message(
        smtp_server,
        3,
        lambda: correct(services, tmp_path, **full_record(lead, title=NEW_TITLE)),
    )

    first = send(services, schedule, approved, smtp_server)

    assert first.stopped == "paused"
    before = list(smtp_server.messages)
    assert 2 <= len(before) < READERS - 1  # stopped between batches, not at the end
    assert all(old_title in text_of(m) and NEW_TITLE not in text_of(m) for m in before)
    with services.factory() as session:
        current = session.get(Edition, approved.id)
        assert current is not None and current.pause_reason == "correction"
        report = edition_report(session, current, FIXED_NOW)
    assert report.paused and report.pause_reason == "correction"
    [change] = report.corrections
    assert change.kind == "changed"
    assert change.before == {"title": old_title} and change.after == {"title": NEW_TITLE}
    # Resuming as if nothing happened is refused: the rest would go out uncorrected.
    with pytest.raises(EditionError, match="editions rebuild"):
        services.lifecycle.resume(approved)

    [greylisted_id] = [
        d.message_id for d, _ in rows(services, approved) if d.status is DeliveryStatus.DEFERRED
    ]
    assert greylisted_id

    done = services.corrections.rebuild(approved, "editor-anna")
    assert done.resumed and done.repointed == READERS - len(before)
    del handler.rules[addr(1)]
    handler.on_data = None
    services.lifecycle.retry(approved)  # the greylisted one is due now
    second = send(services, schedule, approved, smtp_server)

    assert second.stopped is None and second.sent == READERS - len(before)
    after = smtp_server.messages[len(before) :]
    assert all(NEW_TITLE in text_of(m) for m in after)
    recipients = [m.rcpt_to[0] for m in smtp_server.messages]
    assert sorted(recipients) == sorted(set(recipients)) and len(recipients) == READERS
    # The greylisted reader's message: the corrected text, the Message-ID it had.
    [retried] = [m for m in after if m.rcpt_to[0] == addr(1)]
    assert message_id(retried) == greylisted_id
    # What went out before stays recorded with the version it went out with.
    versions = {
        (d.status, v.version, v.retired_at is not None) for d, v in rows(services, approved)
    }
    assert versions == {(DeliveryStatus.SENT, 1, True), (DeliveryStatus.SENT, 2, False)}
    with services.factory() as session:
        changes = [(c.editor, c.action) for c in store.edition_changes(session, approved.id)]
        status = session.get(Edition, approved.id)
        assert status is not None and status.status is EditionStatus.SENT
    assert ("digest", "correction-paused") in changes and ("editor-anna", "rebuild") in changes


def test_a_withdrawn_article_leaves_the_rest_of_the_send_and_the_archive(
    services: Services,
    schedule: Schedule,
    approved: Edition,
    smtp_server: CaptureServer,
    tmp_path: Path,
) -> None:
    gone = item(services, approved, Block.DAY, 1)
    on_message(
        smtp_server, 2, lambda: correct(services, tmp_path, id=gone.external_id, withdrawn=True)
    )

    assert send(services, schedule, approved, smtp_server).stopped == "paused"
    sent_before = len(smtp_server.messages)
    assert all(gone.title in text_of(m) for m in smtp_server.messages)
    with services.factory() as session:
        current = session.get(Edition, approved.id)
        assert current is not None
        [change] = edition_report(session, current).corrections
    assert change.kind == "withdrawn" and change.title == gone.title
    # The desk marks it in the edition's list.
    items = services.desk.preview(approved.id).items
    assert [i.title for i in items if i.withdrawn] == [gone.title]

    services.corrections.rebuild(approved, "editor-anna")
    smtp_server.handler.on_data = None  # type: ignore[attr-defined]
    assert send(services, schedule, approved, smtp_server).sent == READERS - sent_before
    assert all(gone.title not in text_of(m) for m in smtp_server.messages[sent_before:])
    # The archive shows the edition as it is now.
    assert gone.title not in services.archive.page(schedule, approved)


def test_a_missing_article_is_not_a_withdrawal_and_an_unchanged_one_is_no_correction(
    services: Services, schedule: Schedule, approved: Edition, tmp_path: Path
) -> None:
    lead = item(services, approved, Block.LEAD)
    # The export of a later hour: other articles, the lead re-sent unchanged but for views.
    correct(services, tmp_path, **full_record(lead, views=lead.views + 100))
    other = tmp_path / "other.jsonl"
    other.write_text(
        json.dumps(
            {
                "id": "elsewhere-1",
                "url": "https://vpk.example.ru/news/elsewhere.html",
                "title": "Другая новость",
                "published_at": "2026-11-25T05:00:00+03:00",
            },
            ensure_ascii=False,
        )
        + "\n",
        encoding="utf-8",
    )
    Ingester(services.factory).load(read_jsonl(other))
    assert services.corrections.pending(approved) == []
    with services.factory() as session:
        assert session.scalar(select(Article.withdrawn_at).where(Article.id == lead.id)) is None


@pytest.mark.parametrize("mode", ["rebuild", "ignore"])
def test_without_a_person_the_setting_says_what_a_correction_does(
    services: Services,
    schedule: Schedule,
    approved: Edition,
    smtp_server: CaptureServer,
    tmp_path: Path,
    mode: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`digest send` (Sender.deliver) with DIGEST_ON_CORRECTION=rebuild sends the rest
    corrected; with ignore, as approved, and the log and change log say so."""
    # Settings are the services' from their wiring: a change is a new wiring.
    services = Services(
        services.settings.model_copy(update={"on_correction": mode, "batch_size": 4}),
        services.factory,
        services.clock,
    )
    lead = item(services, approved, Block.LEAD)
    old_title = lead.title
    on_message(
        smtp_server, 3, lambda: correct(services, tmp_path, **full_record(lead, title=NEW_TITLE))
    )
    with caplog.at_level(logging.INFO):
        result = services.sender.deliver(
            schedule, approved, wait=False, via=parse_smtp_url(smtp_server.url)
        )

    assert result.stopped is None and result.sent == READERS
    texts = [text_of(m) for m in smtp_server.messages]
    assert old_title in texts[0]
    corrected = [t for t in texts if NEW_TITLE in t]
    with services.factory() as session:
        changes = [(c.editor, c.action) for c in store.edition_changes(session, approved.id)]
    if mode == "rebuild":
        assert corrected and NEW_TITLE in texts[-1]
        assert ("digest", "rebuild") in changes
    else:
        assert not corrected
        assert ("digest", "correction-ignored") in changes
        assert "DIGEST_ON_CORRECTION=ignore" in caplog.text
    assert services.corrections.pending(approved) == []


def test_a_rebuild_while_a_send_runs_fails_nothing_and_records_what_each_reader_got(
    services: Services,
    schedule: Schedule,
    approved: Edition,
    smtp_server: CaptureServer,
    tmp_path: Path,
) -> None:
    """An editor rebuilds before the send reached a batch boundary: the claims in
    flight go out as claimed (and are recorded with the old version), every later
    one with the new text; none fails for want of its new variant."""
    lead = item(services, approved, Block.LEAD)
    old_title = lead.title

    def correct_and_rebuild() -> None:
        correct(services, tmp_path, **full_record(lead, title=NEW_TITLE))
        # The editor is not instant: the send's check between batches of 4 may see
        # the correction first and pause (CI met it once: the run ended "paused",
        # and had the rebuild landed before its last heartbeat it would have ended
        # with readers left). `digest send` goes on once the rebuild lifts it.
        time.sleep(0.5)
        services.corrections.rebuild(approved, "editor-anna")

    on_message(smtp_server, 3, correct_and_rebuild)
    result = send_as_digest_send(services, schedule, approved, smtp_server)

    assert result.stopped is None and result.failed == 0 and result.sent == READERS
    with services.factory() as session:
        version = dict(
            session.execute(
                select(Subscriber.email, EditionVariant.version)
                .join(Delivery, Delivery.subscriber_id == Subscriber.id)
                .join(EditionVariant, EditionVariant.id == Delivery.variant_id)
                .where(Delivery.edition_id == approved.id)
            ).all()
        )
    got = {m.rcpt_to[0]: text_of(m) for m in smtp_server.messages}
    assert {version[r] for r in got} == {1, 2}
    for reader, text in got.items():
        assert (old_title in text) == (version[reader] == 1), reader
        assert (NEW_TITLE in text) == (version[reader] == 2), reader
