"""The path a large site walks (issue 31 §3), on PostgreSQL, each step a real
`digest` command timed from exec to exit with its own peak RSS:

    python bench/million.py --readers 1000000 [--send | --mark-sent | --database-alone]
                            [--baseline 10000]

1. `digest subscribers import` of a CSV of N readers (rows/s);
2. `digest send daily --enqueue-only` on the freshly imported list (the edition
   built, a delivery for each reader);
3. `digest status` and the desk's delivery page (its service, in process), each
   timed at N deliveries; with ``--send``, `digest worker` processes (the
   machine's cores) send the edition into Postfix's `smtp-sink`, beside
   `smtp-source` into the same sink in the same run, and status and the page are
   timed again while it sends;
4. a second edition the next day (the delivery table holds 2N rows): the same;
5. the database's size, and the delivery table's per million deliveries;
6. with ``--send``, `bench/send.py`'s figure for 20 000 readers into the same
   sink (one sender process and as many as workers, the same connections a
   process), on SQLite and on the same PostgreSQL, beside each edition's steady
   rate: issue 31's "within 10 %".

With ``--database-alone`` (no SMTP), as many processes as workers claim each
edition's deliveries and record them sent, batch after batch, as a send does
(`bench/scale.py`'s claimers): what the coordination point costs a delivery at
N readers beside the baseline's, with the table holding N, then 2N rows.

The same walk at ``--baseline`` readers runs first: each process's peak RSS is
printed beside its figure there (issue 31's target: ≤ 1.3×). Figures are
printed, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import os
import statistics
import subprocess  # nosec B404: the commands under measurement, fixed arguments
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
from sqlalchemy import event

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import measured  # noqa: E402
from bench.delivery import DIGEST, PG_ADMIN, environment, sending_span  # noqa: E402
from bench.scale import claim_all, database  # noqa: E402
from bench.send import DAY, fresh_send, smtp_sink, smtp_source  # noqa: E402
from digest import db, demo, store  # noqa: E402
from digest.config import load_settings  # noqa: E402
from digest.models import utcnow  # noqa: E402
from digest.wiring import Services  # noqa: E402


@dataclass
class Step:
    name: str
    seconds: float
    rss_mb: float
    rows: int = 0

    def line(self, baseline: Step | None) -> str:
        rate = f", {self.rows / self.seconds:,.0f}/s" if self.rows else ""
        ratio = f" ({self.rss_mb / baseline.rss_mb:.2f}× of the baseline's)" if baseline else ""
        return f"{self.name}: {self.seconds:.2f} s{rate}; peak RSS {self.rss_mb:.0f} MB{ratio}"


def run(name: str, argv: list[str], env: dict[str, str], rows: int = 0) -> Step:
    """One `digest` command from exec to exit, with its own peak RSS."""
    # Its output to a file: a pipe nobody reads until the exit stops a command
    # that writes more than the pipe holds (an import's rejected lines).
    with tempfile.TemporaryFile() as err:
        seconds, rss, code = measured.outcome(measured.start([DIGEST, *argv], env, err))
        if code not in (0, 3):
            err.seek(0)
            sys.exit(f"{' '.join(argv)} failed ({code}): {err.read().decode()[-2000:]}")
    return Step(name, seconds, rss, rows)


def write_csv(path: Path, readers: int) -> None:
    consent = datetime(2026, 11, 1, 9, 0, tzinfo=UTC).isoformat()
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["email", "name", "consent_source", "consent_at"])
        for n in range(readers):
            out.writerow(
                [f"reader{n:07d}@mail{n % 500}.example.ru", f"Читатель {n}", "site", consent]
            )


def timed(call: object, *args: object) -> float:
    started = time.perf_counter()
    call(*args)  # type: ignore[operator]
    return time.perf_counter() - started


def send(env: dict[str, str], workers: int, during: Callable[[], None]) -> tuple[float, float]:
    """`digest worker --once` × ``workers`` until the edition is sent; ``during``
    is called once the send is under way. (seconds, the workers' peak RSS in MB)."""
    started = time.perf_counter()
    argv = [DIGEST, "worker", "--once"]
    procs = [measured.start(argv, env, subprocess.DEVNULL) for _ in range(workers)]
    time.sleep(10)
    during()
    rss = max(measured.outcome(proc)[1] for proc in procs)
    return time.perf_counter() - started, rss


def edition_id(services: Services, label: str) -> int:
    with services.factory() as session:
        edition = store.find_edition(session, label)
    assert edition is not None  # nosec B101: the bench made it
    return edition.id


def look(
    services: Services, env: dict[str, str], label: str, edition: int, when: str, times: int = 5
) -> None:
    """`digest status` (the command), its report's queries and the desk's delivery
    page (in process), each timed ``times`` times a second apart: one figure is
    the luck of the scheduler while the workers hold the cores. The report's
    slowest statement is named when it takes more than a tenth of a second."""
    command, page, report = [], [], []
    slow: list[tuple[float, str]] = []
    for _ in range(times):
        command.append(run("status", ["status", label], env).seconds)
        page.append(timed(services.desk.delivery, edition))
        with statements(services) as seen:
            report.append(timed(services.reports.of, label))
        slow.append(max(seen, default=(0.0, "")))
        time.sleep(1)
    print(
        f"{label} {when}: `digest status` {spread(command)} (its report's queries "
        f"{spread(report)}, the rest is the command's start-up); the desk's delivery page "
        f"{spread(page)}"
    )
    seconds, sql = max(slow)
    if seconds > 0.1:
        print(f"  the report's slowest statement: {seconds:.2f} s {sql}")


@contextlib.contextmanager
def statements(services: Services) -> Iterator[list[tuple[float, str]]]:
    """Each statement the services' engine runs meanwhile: (seconds, its SQL's start)."""
    engine = services.factory.kw["bind"]
    seen: list[tuple[float, str]] = []
    started: list[float] = []

    def before(*_: object) -> None:
        started.append(time.perf_counter())

    def after(_conn: object, _cursor: object, sql: str, *_: object) -> None:
        seen.append((time.perf_counter() - started.pop(), " ".join(sql.split())[:160]))

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)


def spread(seconds: list[float]) -> str:
    """The median, and the range when there is more than one."""
    middle = f"{statistics.median(seconds):.2f} s"
    if len(seconds) == 1:
        return middle
    return f"{middle} (median; {min(seconds):.2f}–{max(seconds):.2f})"


def walk(
    url: str, readers: int, args: argparse.Namespace, sink: str | None, rates: list[float]
) -> dict[str, Step]:
    """The walk at ``readers``; each send's steady rate appended to ``rates``."""
    print(f"\n— {readers:,} readers on PostgreSQL —")
    steps: dict[str, Step] = {}
    with tempfile.TemporaryDirectory(prefix="digest-million-") as tmp:
        folder = Path(tmp)
        env = environment(folder, DIGEST_DATABASE_URL=url)
        if sink:
            # bench/send.py's connections a process, so its figure is a like for like
            env.update(DIGEST_SMTP_URL=sink, DIGEST_SMTP_CONNECTIONS=str(args.connections))
        run("db upgrade", ["db", "upgrade"], env)
        os.environ.update(env)
        services = Services(load_settings(), db.session_factory(db.make_engine(url)), clock=utcnow)
        with services.factory() as session:  # a send's pace at a million depends on it
            said = store.vacuum_settings(session)
        print("PostgreSQL: " + ", ".join(f"{name} {value}" for name, value in said.items()))
        schedule = services.schedule("daily")
        csv_path = folder / "readers.csv"
        write_csv(csv_path, readers)
        steps["import"] = run("import", ["subscribers", "import", str(csv_path)], env, readers)
        for n, day in enumerate((DAY, DAY + timedelta(days=1)), start=1):
            demo.load(services.factory, demo.build(schedule, day))
            label = f"daily/{day.isoformat()}"
            argv = ["send", "daily", "--date", day.isoformat(), "--enqueue-only", "--yes"]
            steps[f"enqueue {n}"] = run(f"enqueue edition {n}", argv, env, readers)
            steps[f"status {n}"] = run(f"digest status {label}", ["status", label], env)
            edition = edition_id(services, label)
            look(services, env, label, edition, "queued")
            if args.database_alone and not sink:
                rates.append(claimed(url, label, edition, args.workers))
                look(services, env, label, edition, "claimed and recorded")
            if args.mark_sent and not sink:
                mark_sent(url, label)
                look(services, env, label, edition, "marked sent")
            if sink:
                during = functools.partial(look, services, env, label, edition, "sending")
                seconds, rss = send(env, args.workers, during)
                steps[f"send {n}"] = Step(f"send edition {n}", seconds, rss, readers)
                look(services, env, label, edition, "sent")
                sent, span = sending_span(services, edition)
                rates.append(sent / span)
                writes = _row_writes(url, day) / max(sent, 1)
                print(
                    f"{label}: {sent:,} sent, steady rate {sent / span:,.0f} msg/s; "
                    f"{writes:.2f} row writes a delivery (claim, renewals, outcome)"
                )
        steps["size"] = Step("database", 0, 0, _sizes(url, readers))
    return steps


def compare(sink: str, args: argparse.Namespace, steady: list[float]) -> None:
    """Issue 31's yardstick, measured in the same run into the same sink:
    `bench/send.py --subscribers 20000`, one sender process and as many as the
    workers, on SQLite (its default) and on the walk's PostgreSQL; ``steady``
    holds the baseline walk's rates first when there was one, the large walk's
    last two."""
    large = steady[-2:]
    for database_name in ("SQLite", "PostgreSQL"):
        for senders in sorted({1, args.workers}):
            with database() if database_name == "PostgreSQL" else contextlib.nullcontext() as url:
                given = argparse.Namespace(database_url=url, connections=args.connections)
                extra = {"DIGEST_SENDERS": str(senders)}
                yardstick = fresh_send(given, sink, extra, 20_000).rate
            print(
                f"bench/send.py's figure for 20,000 on {database_name}, {senders} sender "
                f"process(es) of {args.connections} connections, same sink: {yardstick:,.0f} "
                f"msg/s; the workers' steady rate at {args.readers:,}: "
                + ", ".join(f"{rate:,.0f} msg/s ({rate / yardstick:.0%})" for rate in large)
                + " (issue 31's target: within 10 %)"
            )
    if len(steady) == 4:
        print(
            f"the workers' steady rate at {args.baseline:,} in this run: "
            + ", ".join(f"{rate:,.0f} msg/s" for rate in steady[:2])
            + f"; at {args.readers:,}: "
            + ", ".join(f"{b / a:.0%} of it" for a, b in zip(steady[:2], large, strict=True))
        )


def claimed(url: str, label: str, edition: int, processes: int, batch: int = 500) -> float:
    """Deliveries claimed and recorded a second by ``processes`` claimers, no SMTP."""
    done, span = claim_all(url, edition, processes, batch)
    print(
        f"{label}: {processes} processes claimed and recorded {done:,} deliveries in "
        f"{span:.1f} s, {done / span:,.0f} a second (no SMTP)"
    )
    return done / span


def mark_sent(url: str, label: str) -> None:
    """Without ``--send``: every delivery of the edition marked sent, one a
    second's fraction apart over 23 minutes (a million's send here), so the pages
    of a sent edition are timed in minutes, not the send's hour."""
    name = url.rsplit("/", 1)[1]
    schedule, day = label.split("/")
    with psycopg.connect(PG_ADMIN, dbname=name) as conn:
        edition = conn.execute(
            "SELECT id FROM edition WHERE schedule = %s AND edition_date = %s", (schedule, day)
        ).fetchone()[0]  # type: ignore[index]
        conn.execute(
            "UPDATE delivery SET status = 'sent', attempts = 1, smtp_code = 250, "
            "sent_at = now() - (id %% 1400) * interval '1 second', updated_at = now(), "
            "first_attempt_at = now() - interval '24 minutes', "
            "message_id = '<' || id || '.bench@vpk.example.ru>' WHERE edition_id = %s",
            (edition,),
        )
        conn.execute(
            "UPDATE edition SET status = 'sent', sent_at = now() WHERE id = %s", (edition,)
        )
    with psycopg.connect(PG_ADMIN, dbname=name, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE delivery")  # as autovacuum leaves it after a send


def _row_writes(url: str, day: date) -> int:
    """Row versions the day's partition was written (each a dead row until vacuum):
    its enqueue's inserts are not counted, its updates are."""
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, dbname=name) as conn:
        row = conn.execute(
            "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = %s",
            (store.partition_name(day),),
        ).fetchone()
    return int(row[0]) if row else 0


def _sizes(url: str, readers: int) -> int:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN) as conn:
        total = conn.execute("SELECT pg_database_size(%s)", (name,)).fetchone()[0]  # type: ignore[index]
    with psycopg.connect(PG_ADMIN, dbname=name) as conn:
        deliveries = conn.execute(
            # A partitioned table is its partitions' sum (the parent itself holds nothing).
            "SELECT (SELECT sum(pg_total_relation_size(relid)) "
            "FROM pg_partition_tree('delivery')), (SELECT count(*) FROM delivery)"
        ).fetchone()
    size, rows = deliveries  # type: ignore[misc]
    per_million = size / max(rows, 1) * 1_000_000 / 2**20
    print(
        f"database {total / 2**20:,.0f} MB; delivery {size / 2**20:,.0f} MB for {rows:,} rows "
        f"= {per_million:,.0f} MB per million deliveries"
    )
    return int(total)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--readers", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=int, default=10_000)
    parser.add_argument("--send", action="store_true", help="send each edition into smtp-sink")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--connections", type=int, default=16, help="a process (bench/send.py's)")
    parser.add_argument(
        "--mark-sent",
        action="store_true",
        help="without --send: mark each edition sent in one UPDATE, then time its pages",
    )
    parser.add_argument(
        "--database-alone",
        action="store_true",
        help="without --send: claim and record each edition's deliveries, no SMTP",
    )
    args = parser.parse_args()
    sizes = [args.baseline, args.readers] if args.baseline else [args.readers]
    results: list[dict[str, Step]] = []
    rates: list[float] = []
    with smtp_sink() if args.send else contextlib.nullcontext() as sink:
        if sink:
            ceiling = smtp_source(sink, 60 * 1024, 20_000, 16)
            print(f"smtp-source into the same sink, 16 sessions: {ceiling:,.0f} msg/s")
        for readers in sizes:
            with database() as url:
                results.append(walk(url, readers, args, sink, rates))
        if sink:
            compare(sink, args, rates)
    if args.database_alone and len(rates) == 4:
        print(
            f"claimed and recorded at {args.readers:,}, beside {args.baseline:,}: "
            + ", ".join(f"{b / a:.0%}" for a, b in zip(rates[:2], rates[2:], strict=True))
            + " (edition 1, edition 2)"
        )
    base = results[0] if len(results) == 2 else {}
    print(f"\n— {args.readers:,} readers, each step (beside {args.baseline:,}) —")
    for key, step in results[-1].items():
        if key != "size":
            print(step.line(base.get(key)))


if __name__ == "__main__":
    main()
