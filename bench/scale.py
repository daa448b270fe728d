"""Scaling figures for docs/SCALING.md: what one PostgreSQL sustains for many senders.

    python bench/scale.py --subscribers 20000
        1, 2 and 4 `digest worker --once` processes on one PostgreSQL edition, into
        Postfix's smtp-sink (messages/s, sending span); then the database alone:
        1, 2 and 4 processes that only claim deliveries in batches and write
        their outcomes (no SMTP), the ceiling of the coordination point.

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import multiprocessing
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.delivery import (  # noqa: E402
    DIGEST,
    PG_ADMIN,
    environment,
    reset,
    sending_span,
    wired,
)
from bench.send import DAY, find_sink, smtp_sink  # noqa: E402

COUNTS = (1, 2, 4)


def workers(url: str, args: argparse.Namespace) -> dict[int, float]:
    """msg/s of 1, 2, 4 workers sending one edition into smtp-sink."""
    rates = {}
    with tempfile.TemporaryDirectory(prefix="digest-scale-") as tmp, smtp_sink() as sink:
        env = environment(
            Path(tmp),
            DIGEST_DATABASE_URL=url,
            DIGEST_SMTP_URL=sink,
            DIGEST_SMTP_CONNECTIONS=str(args.connections),
        )
        services = wired(env, args.subscribers)
        schedule = services.schedule("daily")
        edition = services.editions.build(schedule, DAY)
        services.lifecycle.start_sending(schedule, edition)
        for count in COUNTS:
            reset(services, edition.id)
            procs = [
                subprocess.Popen(
                    [DIGEST, "worker", "--once"],
                    env=env,
                    cwd=tmp,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for _ in range(count)
            ]
            errors = [p.communicate()[1] for p in procs]
            if any(p.returncode for p in procs):
                sys.exit(f"a worker failed: {errors}")
            sent, seconds = sending_span(services, edition.id)
            rates[count] = sent / seconds
            print(
                f"{count} worker(s) sending: {sent} in {seconds:.1f} s = {rates[count]:,.0f} msg/s"
            )
    return rates


def claimer(
    url: str, edition_id: int, batch: int, out: multiprocessing.Queue[tuple[int, float, float]]
) -> None:
    """One process that claims and records until nothing is left: no SMTP at all."""
    from digest import db
    from digest.config import load_settings
    from digest.models import utcnow
    from digest.send.ledger import DeliveryStore
    from digest.send.workers import worker_name
    from digest.track.outcomes import Outcome

    cfg = load_settings().model_copy(update={"database_url": url})
    ledger = DeliveryStore(
        db.session_factory(db.make_engine(cfg.database)),
        edition_id,
        worker_name(),
        lease=timedelta(seconds=60),
    )
    done, started = 0, time.time()  # after the imports and the engine: the work alone
    while True:
        claims, _ = ledger.claim(batch, utcnow())
        if not claims:
            break
        now = utcnow()
        ledger.record(
            [
                Outcome.sent(
                    c.delivery_id, c.attempts + 1, now, 250, "2.0.0 ok", f"<{c.delivery_id}@b>"
                )
                for c in claims
            ]
        )
        done += len(claims)
    out.put((done, started, time.time()))


def claim_all(url: str, edition_id: int, processes: int, batch: int) -> tuple[int, float]:
    """``processes`` claimers until nothing is left: (deliveries, seconds from the
    first one's start of work to the last one's end)."""
    context = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[tuple[int, float, float]] = context.Queue()
    procs = [
        context.Process(target=claimer, args=(url, edition_id, batch, out))
        for _ in range(processes)
    ]
    for proc in procs:
        proc.start()
    reports = [out.get(timeout=3600) for _ in procs]
    for proc in procs:
        proc.join()
    done = sum(n for n, _, _ in reports)
    return done, max(e for _, _, e in reports) - min(s for _, s, _ in reports)


def claims(url: str, args: argparse.Namespace) -> dict[int, float]:
    """Deliveries claimed and recorded per second by 1, 2, 4 processes."""
    with tempfile.TemporaryDirectory(prefix="digest-claims-") as tmp:
        env = environment(Path(tmp), DIGEST_DATABASE_URL=url)
        services = wired(env, args.claims_subscribers)
        schedule = services.schedule("daily")
        edition = services.editions.build(schedule, DAY)
        services.lifecycle.start_sending(schedule, edition)
        rates = {}
        for count in COUNTS:
            reset(services, edition.id)
            done, span = claim_all(url, edition.id, count, args.batch)
            rates[count] = done / span
            print(
                f"{count} process(es) claiming and recording, batches of {args.batch}: "
                f"{done} in {span:.1f} s, {rates[count]:,.0f} deliveries/s"
            )
    return rates


@contextmanager
def database() -> Iterator[str]:
    """A PostgreSQL database of its own for one figure, dropped after."""
    name = f"digest_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=20000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--claims-subscribers", type=int, default=60000)
    args = parser.parse_args()
    print(f"scale run: {args.subscribers} subscribers on PostgreSQL, sink: {find_sink()}")
    with database() as url:
        sending = workers(url, args)
    print(f"workers 2/1: {sending[2] / sending[1]:.2f}×, 4/1: {sending[4] / sending[1]:.2f}×")
    with database() as url:
        alone = claims(url, args)
    print(f"database alone 2/1: {alone[2] / alone[1]:.2f}×, 4/1: {alone[4] / alone[1]:.2f}×")


if __name__ == "__main__":
    main()
