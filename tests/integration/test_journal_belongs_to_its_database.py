"""Issue 32 on both databases: a journal line is applied only where its database,
edition, delivery, reader and Message-ID are all the database's own."""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from datetime import date

from sqlalchemy import update

from digest import demo, store
from digest.models import Delivery, DeliveryStatus
from digest.send.journal import Journal, JournalPlace
from digest.send.options import journal_folder
from digest.track.outcomes import Outcome
from digest.wiring import Services
from tests.support.common import FIXED_NOW
from tests.support.demo_data import load_demo_articles

DEAD_PID = 4_999_999  # above Linux's largest pid: never a live process


def test_only_a_line_that_matches_its_delivery_in_every_part_is_applied(
    services: Services, fixed_date: date
) -> None:
    schedule = services.schedule("daily")
    load_demo_articles(services.factory, schedule, fixed_date)
    demo.add_subscribers(services.factory, 6, now=FIXED_NOW)
    edition = services.editions.build(schedule, fixed_date)
    services.lifecycle.start_sending(schedule, edition)
    with services.factory() as session:
        rows = session.query(Delivery.id, Delivery.subscriber_id).order_by(Delivery.id).all()
    composer = services.tools.composer(schedule)
    prefix = composer.message_id_prefix(edition.id, schedule.name, edition.edition_date)

    def accepted(delivery: int, subscriber: int) -> Outcome:
        message_id = composer.message_id(prefix, subscriber)
        return Outcome.sent(delivery, 1, FIXED_NOW, 250, "ok", message_id, subscriber)

    (d1, s1), (d2, _s2), (d3, s3), (d4, s4), (d5, s5), (d6, s6) = rows
    root = journal_folder(services.settings)
    ours = JournalPlace(root, services.sender.recovery.database, edition.id)
    lines = {
        ours: [
            accepted(d1, s1),  # every part matches: applied
            accepted(d2, s3),  # another reader's
            replace(accepted(d3, s3), message_id=composer.message_id(prefix, s4)),
            accepted(d5, s5),  # bounced since: stays bounced
            accepted(d6, s6),  # matches too
        ],
        replace(ours, edition=edition.id + 1): [accepted(d4, s4)],  # another edition's
    }
    for place, outcomes in lines.items():
        journal = Journal(place)
        for outcome in outcomes:
            journal.write(outcome)
        journal.close(all_committed=False)
        dead = journal.path.with_name(f"{socket.gethostname()}-{DEAD_PID}-{place.edition}.jsonl")
        os.replace(journal.path, dead)
    with services.factory.begin() as session:
        session.execute(
            update(Delivery).where(Delivery.id == d5).values(status=DeliveryStatus.BOUNCED)
        )

    services.sender.reclaim()

    with services.factory() as session:
        found = {d.id: d for d in session.query(Delivery)}
        counts = store.delivery_counts(session, edition.id)
    assert found[d1].status is DeliveryStatus.SENT
    assert found[d1].message_id == composer.message_id(prefix, s1)
    assert found[d6].status is DeliveryStatus.SENT
    assert {found[d].status for d in (d2, d3, d4)} == {DeliveryStatus.QUEUED}
    assert found[d5].status is DeliveryStatus.BOUNCED
    assert counts[DeliveryStatus.SENT] == 2
    assert not list((root / ours.database).glob("*.jsonl"))  # replayed, removed
