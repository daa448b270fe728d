"""A large list on PostgreSQL (issue 31): a freshly imported list is enqueued at
once, whatever the planner knows, and an import leaves the statistics current.

The first send after an import of 200 000 readers once ran for six minutes and
had written a quarter of its rows: the tables were not analysed, and each probe
of the anti-join read the rows the same statement had written. Here the
database's statement timeout is the judge: a plan that goes quadratic on 50 000
readers is cancelled by PostgreSQL itself."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from digest import db, demo, store
from digest.audience.subscribers import SubscriberBook
from digest.config import load_settings
from digest.send.ledger import DeliveryStore
from digest.wiring import Services
from tests.support.common import FIXED_NOW, statements
from tests.support.databases import PG_ADMIN, _admin
from tests.support.demo_data import load_demo_articles

pytestmark = [pytest.mark.postgres]

READERS = 50_000


@pytest.fixture
def large(
    env: dict[str, str],
    postgres_databases: Callable[..., str],
    postgres_template: str,
    monkeypatch: pytest.MonkeyPatch,
    fixed_date: date,
) -> Iterator[tuple[Services, str]]:
    """Services on a fresh PostgreSQL database whose statements are cancelled after
    60 s, and which autovacuum never analyses (what a send right after an import
    meets: the statistics are those of the empty tables)."""
    url = postgres_databases(template=postgres_template)
    name = make_url(url).database
    _admin(f"ALTER DATABASE {name} SET statement_timeout = '60s'")
    with psycopg.connect(PG_ADMIN, dbname=name, autocommit=True) as conn:
        # delivery is partitioned by day: the setting is each partition's, and the
        # test's day has its partition now, not at the send.
        conn.execute(
            f"CREATE TABLE {store.partition_name(fixed_date)} PARTITION OF delivery "
            f"FOR VALUES FROM ('{fixed_date}') TO ('{fixed_date + timedelta(days=1)}')"
        )
        days = conn.execute(
            "SELECT inhrelid::regclass::text FROM pg_inherits "
            "WHERE inhparent = 'delivery'::regclass"
        ).fetchall()
        for table in ["subscriber", *(d[0] for d in days)]:
            conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    monkeypatch.setenv("DIGEST_DATABASE_URL", url)
    engine = db.make_engine(load_settings().database)
    yield Services(load_settings(), db.session_factory(engine), clock=lambda: FIXED_NOW), name
    engine.dispose()


def _analysed_rows(name: str) -> float:
    with psycopg.connect(PG_ADMIN, dbname=name) as conn:
        row = conn.execute("SELECT reltuples FROM pg_class WHERE relname = 'subscriber'").fetchone()
    return float(row[0]) if row else -1.0


def _forget_statistics(name: str) -> None:
    """The planner back to knowing nothing of the subscribers (as before any ANALYZE)."""
    with psycopg.connect(PG_ADMIN, dbname=name, autocommit=True) as conn:
        conn.execute("DELETE FROM pg_statistic WHERE starelid = 'subscriber'::regclass")
        conn.execute(
            "UPDATE pg_class SET reltuples = -1, relpages = 0 WHERE relname = 'subscriber'"
        )


def _readers_csv(path: Path, count: int) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["email", "name", "consent_source", "consent_at"])
        for n in range(count):
            out.writerow([f"reader{n}@example{n % 97}.ru", f"Читатель {n}", "form", FIXED_NOW])
    return path


def test_an_import_leaves_the_statistics_current(
    large: tuple[Services, str], tmp_path: Path
) -> None:
    services, name = large
    book = SubscriberBook(services.factory, double_opt_in=True)
    report = book.import_csv(_readers_csv(tmp_path / "readers.csv", READERS))
    assert (report.added, report.rejected) == (READERS, 0)
    assert _analysed_rows(name) >= READERS * 0.9  # the import analysed what it wrote


def test_the_first_send_after_a_bulk_load_enqueues_everyone_at_once(
    large: tuple[Services, str], fixed_date: date
) -> None:
    services, name = large
    demo.add_subscribers(services.factory, READERS, now=FIXED_NOW)
    _forget_statistics(name)  # the worst a planner can know: the tables as if empty
    schedule = services.schedule("daily")
    load_demo_articles(services.factory, schedule, fixed_date)
    edition = services.editions.build(schedule, fixed_date)
    assert services.lifecycle.start_sending(schedule, edition, force=True, old_ok=True) == READERS
    with services.factory() as session:  # again: nobody twice
        assert (
            store.enqueue_deliveries(session, edition.id, FIXED_NOW, schedule.audience(edition))
            == 0
        )


QUEUE, IN_FLIGHT = 10_000, 100


def test_a_heartbeat_reads_the_rows_in_flight_not_the_queue(
    large: tuple[Services, str], fixed_date: date
) -> None:
    """Every second each sender renews its claims, reads which of them were
    unsubscribed since and who else is sending: each of those statements reads the
    few rows this worker holds, never the edition's queue (at a million queued
    readers each once read the whole partition, 0.2 s a statement a second a worker,
    and the send ran at four fifths of its rate)."""
    services, _ = large
    demo.add_subscribers(services.factory, QUEUE, now=FIXED_NOW)
    schedule = services.schedule("daily")
    load_demo_articles(services.factory, schedule, fixed_date)
    edition = services.editions.build(schedule, fixed_date)
    services.lifecycle.start_sending(schedule, edition, force=True, old_ok=True)
    ledger = DeliveryStore(services.factory, edition.id, "here:1", lease=timedelta(seconds=60))
    claims, _ = ledger.claim(IN_FLIGHT, FIXED_NOW)
    assert len(claims) == IN_FLIGHT
    with services.factory() as session:
        engine = session.get_bind()
    with statements(engine, "delivery") as seen:
        ledger.heartbeat(FIXED_NOW)
    read = {sql: _delivery_rows_read(engine, sql, params) for sql, params in seen}
    assert any("claimed_until" in sql for sql in read), read  # the renewal was seen
    assert all(rows <= 2 * IN_FLIGHT for rows in read.values()), read


def _delivery_rows_read(engine: Any, sql: str, params: Any) -> int:
    """Rows of ``delivery``'s partitions the statement's plan read (returned or
    filtered out), run for real in a transaction rolled back."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0][0]["Plan"]
        raw.rollback()
    finally:
        raw.close()
    return _rows(plan)


def _rows(node: dict[str, Any]) -> int:
    own = 0
    if str(node.get("Relation Name", "")).startswith("delivery"):
        loops = int(node.get("Actual Loops", 1))
        own = (int(node.get("Actual Rows", 0)) + int(node.get("Rows Removed by Filter", 0))) * loops
    return own + sum(_rows(child) for child in node.get("Plans", ()))
