"""An edition's deliveries counted by status, kept by the database (issue 31).

`digest status` read a million rows to count them while two workers sent (over
a second on a slow day). The counts are now kept by triggers on ``delivery``:
whatever writes a delivery — the enqueue, a claim, an outcome, a retry, a
bounce, a cancel, a forgotten reader's cascade, a prune — the counts move with
it, in the same transaction. Each test holds them to a GROUP BY of the rows.
"""

from __future__ import annotations

import secrets
from datetime import date, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, insert, select, text, update
from sqlalchemy import delete as sql_delete
from sqlalchemy.orm import Session

from digest import db, demo, store
from digest.capture import CaptureServer
from digest.kinds import DeliveryStatus, EditionStatus
from digest.models import Delivery, DeliveryCount, Edition, Subscriber, SubscriberStatus
from digest.track.retention import Retention
from digest.wiring import Services
from tests.support.common import FIXED_NOW, statements
from tests.support.demo_data import load_demo_articles
from tests.support.mail import READERS, send
from tests.support.smtp import ScriptedHandler


def counted(engine_or_services: Engine | Services) -> dict[int, dict[str, int]]:
    """What ``delivery_count`` says, by edition (the zeros left out)."""
    c = DeliveryCount
    query = select(c.edition_id, c.status, func.sum(c.n)).group_by(c.edition_id, c.status)
    return _by_edition(_rows(engine_or_services, query))


def real(engine_or_services: Engine | Services) -> dict[int, dict[str, int]]:
    """What the delivery rows say, by edition."""
    d = Delivery.__table__.c
    query = select(d.edition_id, d.status, func.count()).group_by(d.edition_id, d.status)
    return _by_edition(_rows(engine_or_services, query))


def _rows(where: Engine | Services, query: Any) -> list[Any]:
    if isinstance(where, Services):
        with where.factory() as session:
            return list(session.execute(query))
    with where.connect() as conn:
        return list(conn.execute(query))


def _by_edition(rows: list[Any]) -> dict[int, dict[str, int]]:
    found: dict[int, dict[str, int]] = {}
    for edition_id, status, n in rows:
        if n:
            found.setdefault(edition_id, {})[str(status)] = int(n)
    return found


def test_every_path_that_writes_a_delivery_keeps_the_counts(
    services: Services, fixed_date: date, smtp_server: CaptureServer
) -> None:
    schedule = services.schedule("daily")
    handler = smtp_server.handler
    assert isinstance(handler, ScriptedHandler)
    handler.rules = {
        demo.reader_address(1): f"550 5.1.1 <{demo.reader_address(1)}>: user unknown",
        demo.reader_address(2): "554 5.7.1 Message rejected as spam",
        demo.reader_address(3): "450 4.2.0 Greylisted, try again later",
    }
    load_demo_articles(services.factory, schedule, fixed_date)
    demo.add_subscribers(services.factory, READERS, now=FIXED_NOW)
    edition = services.editions.build(schedule, fixed_date)

    send(services, schedule, edition, smtp_server, limit=10, batch=4)  # claims, outcomes
    steps = {"a part sent": real(services)}
    assert counted(services) == steps["a part sent"]
    send(services, schedule, edition, smtp_server, batch=7)  # the rest
    steps["sent"] = real(services)
    assert steps["sent"][edition.id] == {
        "sent": READERS - 3,
        "bounced": 1,
        "failed": 1,
        "deferred": 1,
    }
    assert counted(services) == steps["sent"]

    services.lifecycle.retry(edition, failed=True, old_ok=True)  # back to the queue
    assert counted(services) == real(services) != steps["sent"]
    reader = _reader(services, demo.reader_address(5))
    services.support().forget(reader, "anna")  # the reader's rows go by cascade
    after = real(services)
    assert sum(after[edition.id].values()) == READERS - 1
    assert counted(services) == after

    # A report reads the counts; what it says is what the rows say.
    report = services.reports.of(edition.label)
    assert report is not None
    assert {k: v for k, v in report.counts.items() if v} == after[edition.id]


def _reader(services: Services, email: str) -> int:
    with services.factory() as session:
        found = session.scalar(select(Subscriber.id).where(Subscriber.email == email))
        assert found is not None
        return found


def test_a_pruned_edition_leaves_no_counts_behind(
    services: Services, fixed_date: date, smtp_server: CaptureServer
) -> None:
    """On PostgreSQL the day's partition is dropped (no trigger fires): its
    editions' counts go in the same transaction; on SQLite the deletes count down."""
    schedule = services.schedule("daily")
    load_demo_articles(services.factory, schedule, fixed_date)
    demo.add_subscribers(services.factory, READERS, now=FIXED_NOW)
    old = services.editions.build(schedule, fixed_date)
    send(services, schedule, old, smtp_server)
    assert counted(services)[old.id] == {"sent": READERS}
    later = FIXED_NOW + timedelta(days=40)
    Retention(services.factory, lambda: later, soft_bounce_days=15, batch=7).prune(30)
    assert old.id not in counted(services) and real(services) == {}
    report = services.reports.of(old.label)  # the summary's figures
    assert report is not None and report.counts["sent"] == READERS


STATUSES = [s.value for s in DeliveryStatus]
# One statement on the table, as any path might write it.
step = st.one_of(
    st.tuples(st.just("insert"), st.integers(0, 1), st.integers(1, 12)),
    st.tuples(st.just("status"), st.sampled_from(STATUSES), st.integers(0, 7), st.integers(1, 8)),
    st.tuples(st.just("noop"), st.integers(0, 7)),  # a heartbeat: no status changes
    st.tuples(st.just("delete"), st.integers(0, 7), st.integers(1, 8)),
    st.tuples(st.just("forget"), st.integers(0, 11)),
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(step, min_size=1, max_size=8))
def test_any_statement_on_deliveries_keeps_the_counts(
    engine: Engine, steps: list[tuple[Any, ...]]
) -> None:
    """Statements as any path might write them — many rows at once, none, the
    same status again, a reader removed with their rows — and the counts after
    each are the rows' own."""
    editions, readers = _fresh(engine)
    for what, *args in steps:
        with engine.begin() as conn:
            conn.execute(_statement(what, args, editions, readers))
        assert counted(engine) == real(engine), (what, args)
        if what == "forget":
            readers = _readers(engine)


def _fresh(engine: Engine) -> tuple[list[tuple[int, date]], list[int]]:
    """Two editions of two days and twelve readers, no deliveries (the deletes
    that clear the last example's are counted down like any other)."""
    with engine.begin() as conn:
        conn.execute(sql_delete(Delivery.__table__))
    assert counted(engine) == {}
    return _editions(engine), _readers(engine)


def _editions(engine: Engine) -> list[tuple[int, date]]:
    days = [date(2026, 11, 25), date(2026, 11, 26)]
    with engine.begin() as conn:
        store.make_partitions(conn, days)
    with db.session_factory(engine)() as session, session.begin():
        if not session.scalar(select(func.count()).select_from(Edition)):
            for day in days:
                session.add(
                    Edition(
                        schedule="daily",
                        edition_date=day,
                        window_start=FIXED_NOW,
                        window_end=FIXED_NOW,
                    )
                )
    with engine.connect() as conn:
        e = Edition.__table__.c
        return [(i, d) for i, d in conn.execute(select(e.id, e.edition_date).order_by(e.id))]


def _readers(engine: Engine) -> list[int]:
    with db.session_factory(engine)() as session, session.begin():
        have = len(list(session.scalars(select(Subscriber.id))))
        for _ in range(have, 12):
            _new_reader(session)
    with engine.connect() as conn:
        return list(conn.scalars(select(Subscriber.__table__.c.id).order_by(text("id"))))


def _new_reader(session: Session) -> int:
    """A reader of their own (a random key), their id."""
    key = secrets.token_hex(8)
    person = Subscriber(email=f"{key}@example.ru", status=SubscriberStatus.ACTIVE, token_key=key)
    session.add(person)
    session.flush()
    return person.id


def _statement(
    what: str, args: list[Any], editions: list[tuple[int, date]], readers: list[int]
) -> Any:
    d = Delivery.__table__.c
    table = Delivery.__table__
    if what == "insert":  # an enqueue: its rows, those already there kept
        (edition_id, day), many = editions[args[0]], args[1]
        taken = select(d.subscriber_id).where(d.edition_id == edition_id)
        return insert(table).from_select(
            ["edition_id", "edition_date", "subscriber_id", "status", "attempts", "ambiguous"],
            select(
                text(str(edition_id)),
                text(f"'{day.isoformat()}'"),
                Subscriber.__table__.c.id,
                text("'queued'"),
                text("0"),
                text("0"),
            )
            .where(Subscriber.__table__.c.id.not_in(taken))
            .limit(many),
        )
    if what == "status":  # an outcome, a claim, a retry, a cancel: many rows at once
        status, offset, many = args
        ids = select(d.id).order_by(d.id).offset(offset).limit(many).scalar_subquery()
        return update(table).where(d.id.in_(ids)).values(status=status)
    if what == "noop":
        ids = select(d.id).order_by(d.id).offset(args[0]).limit(5).scalar_subquery()
        return update(table).where(d.id.in_(ids)).values(attempts=d.attempts + 1)
    if what == "delete":
        offset, many = args
        ids = select(d.id).order_by(d.id).offset(offset).limit(many).scalar_subquery()
        return sql_delete(table).where(d.id.in_(ids))
    return sql_delete(Subscriber.__table__).where(  # the cascade takes their rows
        Subscriber.__table__.c.id == readers[args[0] % len(readers)]
    )


def test_an_existing_database_is_counted_when_it_upgrades(
    empty_database_url: str,
) -> None:
    """Migration 0027 counts the rows already there (sent and in-flight editions)."""
    engine = db.make_engine(empty_database_url)
    try:
        db.upgrade(engine, "0026")
        editions, readers = _editions(engine), _readers(engine)
        with engine.begin() as conn:
            for i, (edition_id, day) in enumerate(editions):
                for n, reader in enumerate(readers):
                    status = ["sent", "queued", "sending", "bounced"][(n + i) % 4]
                    conn.execute(
                        text(
                            "INSERT INTO delivery (edition_id, edition_date, subscriber_id, "
                            "status, attempts, ambiguous) VALUES (:e, :d, :s, :st, 0, 0)"
                        ),
                        {"e": edition_id, "d": day, "s": reader, "st": status},
                    )
        before = real(engine)
        db.upgrade(engine)
        assert counted(engine) == before != {}
    finally:
        engine.dispose()


def test_the_scrapes_queue_and_rate_are_the_rows_own(services: Services) -> None:
    """`/metrics` reads the queue's depth from the counts and the held rows'
    index, and the last minute's messages through the sent rows' index of the
    editions that can have sent in it (a scrape read every delivery ever kept)."""
    now = FIXED_NOW
    S, E = DeliveryStatus, EditionStatus
    minute = timedelta(minutes=1)
    editions = {  # status, finished at, its deliveries: (status, held until, sent at)
        "sending": (
            E.SENDING,
            None,
            [(S.QUEUED, None, None)] * 3
            + [(S.QUEUED, now + timedelta(hours=1), None)] * 2
            + [(S.QUEUED, now - minute, None), (S.SENDING, None, None), (S.SENDING, None, None)]
            + [(S.DEFERRED, now + minute, None)]
            + [(S.SENT, None, now - minute / 2)] * 4
            + [(S.SENT, None, now - timedelta(hours=2))] * 2,
        ),
        "sent long ago": (E.SENT, now - timedelta(hours=2), [(S.SENT, None, now - 2 * minute)] * 5),
        "sent just now": (E.SENT, now - minute / 6, [(S.SENT, None, now - minute / 3)] * 3),
        "cancelled": (
            E.CANCELLED,
            None,
            [(S.SENT, None, now - minute * 2 / 3)] * 2 + [(S.SUPPRESSED, None, None)] * 2,
        ),
        "a draft": (E.DRAFT, None, [(S.QUEUED, None, None)] * 4),
    }
    day = date(2026, 11, 25)
    with services.factory() as session, session.begin():
        store.make_partitions(session, [day + timedelta(days=n) for n in range(len(editions))])
    with services.factory() as session, session.begin():
        for n, (status, finished, rows) in enumerate(editions.values()):
            edition = Edition(
                schedule="daily",
                edition_date=day + timedelta(days=n),
                window_start=now,
                window_end=now,
                status=status,
                sent_at=finished,
            )
            session.add(edition)
            session.flush()
            for state, held, sent_at in rows:
                session.add(
                    Delivery(
                        edition_id=edition.id,
                        subscriber_id=_new_reader(session),
                        status=state,
                        next_attempt_at=held,
                        sent_at=sent_at,
                    )
                )
    with services.factory() as session:
        assert store.queue_depth(session, now) == {"due": 6, "deferred": 1, "waiting": 2}
        assert store.sent_per_minute(session, now, now - minute) == 4 + 3 + 2


def test_the_newest_sent_are_read_in_the_index_order_whatever_the_statistics(
    engine: Engine,
) -> None:
    """The statistics of a day's partition are taken after its enqueue, when no
    row is sent: right after the send PostgreSQL planned max(sent_at) as a
    reading of every sent row (0.11 s at 300 000 in bench/million.py). The newest
    sent are asked as such, and read backwards through the sent rows' index."""
    (edition_id, _), *_ = _editions(engine)
    with engine.begin() as conn:
        conn.execute(sql_delete(Delivery.__table__))
    with db.session_factory(engine)() as session, session.begin():
        for _ in range(2000):
            session.add(Delivery(edition_id=edition_id, subscriber_id=_new_reader(session)))
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))  # every row queued, as after an enqueue
        conn.execute(update(Delivery.__table__).values(status="sent", sent_at=FIXED_NOW))
    with engine.connect() as conn, statements(engine, "ORDER BY") as seen:
        assert store.newest_sent(conn, edition_id, 3) == [FIXED_NOW] * 3
    (sql, parameters), *_ = seen
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        if engine.dialect.name == "sqlite":
            plan = " ".join(r[3] for r in raw.execute(f"EXPLAIN QUERY PLAN {sql}", parameters))
            assert "ix_delivery_sent" in plan and "TEMP B-TREE" not in plan, plan
        else:
            rows = raw.execute(f"EXPLAIN {sql}", parameters).fetchall()
            plan = " ".join(r[0] for r in rows)
            assert "Scan Backward using" in plan and "sent_at_idx" in plan, plan
            assert "Sort" not in plan, plan
