"""The schema on both backends: migrations, types and the arbiters (unique keys)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from digest import db, store
from digest.models import Article, Base, Delivery, Edition, Subscriber, SubscriberStatus
from tests.support.common import statements, together


@pytest.fixture
def engine(empty_database_url: str) -> Iterator[Engine]:
    """This file's databases are migrated here, from empty, through the whole chain
    (elsewhere a test gets a copy of one migrated template)."""
    engine = db.make_engine(empty_database_url)
    db.upgrade(engine)
    yield engine
    engine.dispose()


def _partition(factory: sessionmaker[Session], day: date) -> None:
    """The day's delivery partition (PostgreSQL): a send makes its own."""
    with factory() as session, session.begin():
        store.make_partitions(session, [day])


def test_upgrade_creates_every_table_and_is_idempotent(engine: Engine) -> None:
    tables = set(inspect(engine).get_table_names())
    assert {
        "article",
        "comment",
        "section",
        "subscriber",
        "edition",
        "edition_item",
        "edition_variant",
        "delivery",
        "event",
        "alembic_version",
    } <= tables
    assert db.upgrade(engine) == (db.head_revision(), db.head_revision())
    db.check_schema(engine)


def test_the_head_and_current_revision_are_alembics_own(engine: Engine) -> None:
    # digest reads both without importing Alembic (a command starts at once): the
    # file names and the version table must say what Alembic says.
    assert db.head_revision() == ScriptDirectory(str(db.MIGRATIONS)).get_current_head()
    with engine.connect() as conn:
        alembic_says = MigrationContext.configure(conn).get_current_revision()
    assert db.current_revision(engine) == alembic_says == db.head_revision()


def test_the_migration_matches_the_models(engine: Engine) -> None:
    with engine.connect() as conn:
        # A day's partition of delivery (PostgreSQL) is delivery's, not a table of its own.
        days = {store.partition_name(d) for d in store.partition_days(conn)}
        context = MigrationContext.configure(
            conn,
            opts={"include_name": lambda name, kind, _: not (kind == "table" and name in days)},
        )
        diff = compare_metadata(context, Base.metadata)
    assert diff == []
    assert (len(days) >= 9) is (engine.dialect.name == "postgresql")  # yesterday to a week on


def test_an_old_schema_is_refused_until_upgraded(empty_database_url: str) -> None:
    engine = db.make_engine(empty_database_url)
    with pytest.raises(db.SchemaOutOfDate, match="digest db upgrade"):
        db.check_schema(engine)
    assert db.upgrade(engine)[0] is None
    db.check_schema(engine)
    engine.dispose()


def test_datetimes_are_stored_utc_and_come_back_aware(factory: sessionmaker[Session]) -> None:
    moscow = timezone(timedelta(hours=3))
    with factory() as session, session.begin():
        session.add(
            Article(
                external_id="x",
                url="https://e.ru/x",
                title="t",
                published_at=datetime(2026, 11, 25, 10, 0, tzinfo=moscow),
            )
        )
    with factory() as session:
        stored = session.scalar(select(Article.published_at))
        assert stored == datetime(2026, 11, 25, 7, 0, tzinfo=UTC) and stored.tzinfo is not None
        # Comparisons in SQL are in UTC on both backends.
        found = session.scalar(
            select(Article.id).where(
                Article.published_at >= datetime(2026, 11, 25, 9, 59, tzinfo=moscow)
            )
        )
        assert found is not None


def test_naive_datetimes_are_refused(factory: sessionmaker[Session]) -> None:
    with factory() as session, pytest.raises(StatementError, match="naive datetime"):
        session.add(
            Article(
                external_id="y",
                url="https://e.ru/y",
                title="t",
                published_at=datetime(2026, 11, 25, 10, 0),
            )
        )
        session.flush()


def test_one_edition_per_schedule_and_date(factory: sessionmaker[Session]) -> None:
    now = datetime.now(UTC)
    with factory() as session, session.begin():
        session.add(
            Edition(
                schedule="daily", edition_date=date(2026, 11, 25), window_start=now, window_end=now
            )
        )
    with factory() as session, pytest.raises(IntegrityError):
        session.add(
            Edition(
                schedule="daily", edition_date=date(2026, 11, 25), window_start=now, window_end=now
            )
        )
        session.commit()


def test_one_delivery_per_edition_and_subscriber(factory: sessionmaker[Session]) -> None:
    _partition(factory, date(2026, 11, 25))
    now = datetime.now(UTC)
    with factory() as session, session.begin():
        edition = Edition(
            schedule="daily", edition_date=date(2026, 11, 25), window_start=now, window_end=now
        )
        reader = Subscriber(email="a@example.ru", status=SubscriberStatus.ACTIVE, token_key="k1")
        session.add_all([edition, reader])
        session.flush()
        session.add(Delivery(edition_id=edition.id, subscriber_id=reader.id))
        ids = edition.id, reader.id
    with factory() as session, pytest.raises(IntegrityError):
        session.add(Delivery(edition_id=ids[0], subscriber_id=ids[1]))
        session.commit()


def test_the_fast_outcome_path_stores_what_the_orm_stores(factory: sessionmaker[Session]) -> None:
    """record_outcomes bypasses type processing: its datetimes must equal the ORM's."""
    from sqlalchemy import text

    _partition(factory, date(2026, 11, 25))
    moscow = timezone(timedelta(hours=3))
    at = datetime(2026, 11, 25, 10, 0, 0, tzinfo=moscow)  # microsecond 0: the tricky format
    with factory() as session, session.begin():
        edition = Edition(
            schedule="daily", edition_date=date(2026, 11, 25), window_start=at, window_end=at
        )
        readers = [
            Subscriber(email=f"r{i}@example.ru", status=SubscriberStatus.ACTIVE, token_key=f"k{i}")
            for i in range(2)
        ]
        session.add_all([edition, *readers])
        session.flush()
        orm = Delivery(
            edition_id=edition.id, subscriber_id=readers[0].id, sent_at=at, updated_at=at
        )
        fast = Delivery(edition_id=edition.id, subscriber_id=readers[1].id)
        session.add_all([orm, fast])
        session.flush()
        row = ("sent", 1, 250, "ok", "<m>", at, None, at, at, 0, fast.id)
        # Named with another day, the row is not this edition's: nothing is written.
        store.record_outcomes(session, [row], date(2026, 11, 26))
        assert session.scalar(text(f"SELECT status FROM delivery WHERE id = {fast.id}")) == "queued"
        store.record_outcomes(session, [row], date(2026, 11, 25))  # a send's: its day's rows
        ids = orm.id, fast.id
    with factory() as session:
        raw = dict(session.execute(text("SELECT id, CAST(sent_at AS TEXT) FROM delivery")).all())
        assert raw[ids[0]] == raw[ids[1]]
        stored = session.get(Delivery, ids[1])
        assert stored is not None and stored.sent_at == at and stored.status == "sent"
        assert stored.next_attempt_at is None and stored.claimed_by is None
        assert stored.first_attempt_at == at
    # One delivery twice in a batch: written in order, as one statement a row would.
    deferred = ("deferred", 2, 451, "later", "<m>", None, at, at, at, 1, ids[1])
    again = ("sent", 3, 250, "ok", "<m>", at, None, at, at, 1, ids[1])
    with factory() as session, session.begin():
        store.record_outcomes(session, [deferred, again], date(2026, 11, 25))
    with factory() as session:
        stored = session.get(Delivery, ids[1])
        assert stored is not None
        assert (stored.status, stored.attempts, stored.ambiguous) == ("sent", 3, 2)


def test_the_rate_is_the_recent_pace_not_the_average_since_the_first_message(
    engine: Engine, factory: sessionmaker[Session]
) -> None:
    from digest.models import DeliveryStatus

    _partition(factory, date(2026, 11, 25))

    start = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)
    with factory() as session, session.begin():
        edition = Edition(
            schedule="daily", edition_date=date(2026, 11, 25), window_start=start, window_end=start
        )
        session.add(edition)
        session.flush()
        # 10 messages in a burst, then a resumed run two hours later at 4 per second,
        # and one sent later that bounced since: not part of the sending pace.
        stamps = [start + timedelta(seconds=i / 100) for i in range(10)]
        stamps += [start + timedelta(hours=2, seconds=i / 4) for i in range(41)]
        bounced = start + timedelta(hours=3)
        for n, at in enumerate([*stamps, bounced]):
            reader = Subscriber(
                email=f"r{n}@example.ru", status=SubscriberStatus.ACTIVE, token_key=f"k{n}"
            )
            session.add(reader)
            session.flush()
            status = DeliveryStatus.BOUNCED if at == bounced else DeliveryStatus.SENT
            session.add(
                Delivery(edition_id=edition.id, subscriber_id=reader.id, status=status, sent_at=at)
            )
        # Still to send: one due, one claimed, one queued for a later wave.
        wave = stamps[-1] + timedelta(hours=5)
        for n, (status, due) in enumerate(
            [
                (DeliveryStatus.QUEUED, None),
                (DeliveryStatus.SENDING, None),
                (DeliveryStatus.QUEUED, wave),
            ]
        ):
            reader = Subscriber(
                email=f"w{n}@example.ru", status=SubscriberStatus.ACTIVE, token_key=f"w{n}"
            )
            session.add(reader)
            session.flush()
            session.add(
                Delivery(
                    edition_id=edition.id,
                    subscriber_id=reader.id,
                    status=status,
                    next_attempt_at=due,
                )
            )
        edition_id = edition.id
    with factory() as session:
        assert store.recent_rate(session, edition_id) == pytest.approx(4.0)
        assert store.recent_rate(session, edition_id + 1) is None
        # `digest status` reads the counts as the database keeps them, and the last
        # sent time through the sent rows' index.
        counts = store.delivery_counts(session, edition_id)
        assert counts == {
            DeliveryStatus.SENT: 51,
            DeliveryStatus.BOUNCED: 1,
            DeliveryStatus.QUEUED: 2,
            DeliveryStatus.SENDING: 1,
        }
        assert store.newest_sent(session, edition_id, 1) == [stamps[-1]]
        assert store.recent_rate(session, edition_id) == pytest.approx(4.0)
        assert store.delivery_counts(session, edition_id + 1) == {}
        assert store.newest_sent(session, edition_id + 1, 1) == []

    # The status of a send under way: the counts as the database keeps them, what
    # is due, the next wave and the rate through partial indexes (issue 31: a scan
    # of a million rows before, four before that).
    with factory() as session, statements(engine, "FROM delivery") as read:
        sending = store.edition_tally(session, edition_id, now=stamps[-1] + timedelta(seconds=20))
    assert len(read) == 3  # the counts, the newest sent, the held
    assert sending.counts == counts and sending.last_sent == stamps[-1]
    assert sending.due == 2 and sending.next_wave == wave
    assert sending.rate == pytest.approx(4.0)
    if engine.dialect.name == "sqlite":
        assert _plans(engine, read) == [
            "delivery_count: ",  # its own small table, by its key
            "delivery: SEARCH delivery USING INDEX ix_delivery_sent (edition_id=?)",
            "delivery: SEARCH delivery USING INDEX ix_delivery_held "
            "(edition_id=? AND next_attempt_at>?)",
        ]
    # Paused for hours: the rate is its last minute of sending.
    with factory() as session:
        paused = store.edition_tally(session, edition_id, now=stamps[-1] + timedelta(hours=2))
    assert paused.rate == pytest.approx(4.0)
    assert paused.due == 2 and paused.next_wave == wave
    with factory() as session:
        assert store.edition_tally(session, edition_id + 1, now=start) == ({}, None, 0, None, None)


def _plans(engine: Engine, read: list[tuple[str, Any]]) -> list[str]:
    """SQLite's plan of each statement: the table it reads and how, one line each."""
    found = []
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        for sql, parameters in read:
            rows = raw.execute(f"EXPLAIN QUERY PLAN {sql}", parameters).fetchall()
            steps = [r[3] for r in rows if r[3].split(" ")[1:2] == ["delivery"]]
            table = "delivery_count" if "FROM delivery_count" in sql else "delivery"
            found.append(f"{table}: {'; '.join(steps)}")
    return found


def test_a_database_with_sent_editions_upgrades_across_the_versioned_variants(
    empty_database_url: str,
) -> None:
    """Migration 0009 rebuilds edition_variant (SQLite's batch mode), which sent
    deliveries point at: with foreign keys enforced the rebuild failed
    ("FOREIGN KEY constraint failed", a traceback from `digest db upgrade`)."""
    engine = db.make_engine(empty_database_url)
    db.upgrade(engine, "0008")
    at = datetime(2026, 11, 25, 4, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO edition (id, schedule, edition_date, window_start, window_end, "
                "status, subject, preheader, created_at) VALUES (1, 'daily', '2026-11-25', "
                ":at, :at, 'sent', 's', 'p', :at)"
            ),
            {"at": at},
        )
        conn.execute(
            text(
                "INSERT INTO edition_variant (id, edition_id, key, html, text, preheader, "
                "articles, render_ms, created_at) VALUES (1, 1, '', 'h', 't', 'p', 1, 1.0, :at)"
            ),
            {"at": at},
        )
        conn.execute(
            text(
                "INSERT INTO subscriber (id, email, status, locale, frequency, format, "
                "token_key, created_at) VALUES (1, 'a@example.ru', 'active', 'ru', 'daily', "
                "'html', 'k1', :at)"
            ),
            {"at": at},
        )
        conn.execute(
            text(
                "INSERT INTO delivery (edition_id, subscriber_id, variant_id, status, attempts) "
                "VALUES (1, 1, 1, 'sent', 1)"
            )
        )
    assert db.upgrade(engine) == ("0008", db.head_revision())
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version FROM edition_variant")).scalar() == 1
        assert conn.execute(text("SELECT variant_id FROM delivery")).scalar() == 1
        if engine.dialect.name == "sqlite":  # enforced again on the connections after it
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_a_capped_domains_slots_are_one_schedule_for_every_sender(
    factory: sessionmaker[Session],
) -> None:
    """Issue 16: two senders leasing a capped domain's slots at once from one
    database get slots that never coincide, each ``interval`` after the last."""
    import threading

    from digest.send.limits import CAP, SharedLimits

    interval, leases = 0.05, 40
    clock = utcnow_for_tests
    starts: list[datetime] = []
    lock = threading.Lock()

    def sender() -> None:
        limits = SharedLimits(factory)
        for _ in range(leases):
            start = limits.slots(CAP + "mail.ru", interval, 2, clock)
            with lock:
                starts.append(start)

    together(sender)
    starts.sort()
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    # Each lease is two slots: the next lease starts two intervals on at the earliest
    # (to the microsecond: the database keeps microseconds).
    assert len(starts) == 2 * leases and min(gaps) >= 2 * interval - 1e-6, min(gaps)


def utcnow_for_tests() -> datetime:
    return datetime.now(UTC)


def test_a_domains_hold_is_the_fleets_one_pause_one_probe(
    factory: sessionmaker[Session],
) -> None:
    """Issue 25: a pause in force stands whoever asks next (two senders had held
    one domain for 240 s and 120 s); when it ends one sender gets the probe; a
    failed probe doubles the back-off up to the cap; a success opens the domain
    for every sender, and full speed lets the next pause start short."""
    from digest.send.limits import SharedLimits

    a, b = SharedLimits(factory), SharedLimits(factory)
    t0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    first = a.pause("mail.ru", 5, 60, "421 4.7.0 Try again later", t0)
    second = b.pause("mail.ru", 5, 60, "421 4.7.0 from b", t0 + timedelta(seconds=1))
    assert first.until == second.until == t0 + timedelta(seconds=5)
    assert second.reason == "421 4.7.0 Try again later"  # the reply that decided it
    assert list(a.pauses(t0 + timedelta(seconds=2))) == ["mail.ru"]
    assert not a.take_probe("mail.ru", t0 + timedelta(seconds=4))  # still paused
    t1 = t0 + timedelta(seconds=5)
    assert a.take_probe("mail.ru", t1) and not b.take_probe("mail.ru", t1)
    assert "mail.ru" in b.pauses(t1)  # held until the probe says
    again = a.pause("mail.ru", 5, 60, "the probe met connection", t1)  # the probe failed
    assert again.until == t1 + timedelta(seconds=10)
    t2 = again.until
    backoffs = []
    for _ in range(4):
        assert b.take_probe("mail.ru", t2)
        hold = b.pause("mail.ru", 5, 60, "the probe met connection", t2)
        backoffs.append(hold.backoff)
        t2 = hold.until
    assert backoffs == [20, 40, 60, 60]
    assert a.take_probe("mail.ru", t2)
    a.reopen("mail.ru", t2)
    assert b.pauses(t2) == {} and b.take_probe("mail.ru", t2)  # open: nothing to probe
    soon = a.pause("mail.ru", 5, 60, "421 again", t2 + timedelta(seconds=1))
    assert soon.backoff == 60  # open for a second: still the long back-off
    assert a.take_probe("mail.ru", soon.until)
    a.reopen("mail.ru", soon.until)
    a.clear("mail.ru")  # back to full speed
    fresh = b.pause("mail.ru", 5, 60, "421", soon.until + timedelta(seconds=2))
    assert fresh.backoff == 5


def test_a_probe_whose_sender_died_is_taken_again_after_its_lease(
    factory: sessionmaker[Session],
) -> None:
    from digest.send.limits import SharedLimits
    from digest.store import PROBE_LEASE

    limits = SharedLimits(factory)
    t0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    hold = limits.pause("mail.ru", 5, 60, "421", t0)
    assert limits.take_probe("mail.ru", hold.until)
    assert not limits.take_probe("mail.ru", hold.until + PROBE_LEASE - timedelta(seconds=1))
    assert limits.take_probe("mail.ru", hold.until + PROBE_LEASE + timedelta(seconds=1))
