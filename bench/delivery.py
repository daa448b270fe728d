"""Delivery benchmarks: a send through a faulty relay, greylisting, the global rate.

    python bench/delivery.py --faults --subscribers 5000
        20 % temporary failures, 5 % permanent, 2 % dropped connections (aiosmtpd
        fault server from tests/faults.py); prints delivered %, duplicates,
        retries and time, with DIGEST_RETRY_SCHEDULE=1,2,4.
    python bench/delivery.py --greylist --subscribers 5000
        the same send twice in one run: plain, then with 20 % of the recipients
        greylisted once at RCPT (451 4.7.1) and DIGEST_GREYLIST_DELAY=2; prints
        the first pass's rate against the plain run's, the retry wave, and the
        total time (MAIL-RULES 23: greylisting defers one reader, never a domain).
    python bench/delivery.py --outage 30 --subscribers 2000
        a provider down for 30 s (every RCPT for mail.example.ru answered
        `421 4.7.0 Try again later, closing connection` from its first attempt),
        the default settings: prints when the last reader of that domain and of
        the others arrived, against the outage's length and the same send with
        no outage (issue 25: it was 603 s for a 30 s outage).
    (workers on PostgreSQL: bench/scale.py)

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.send import DAY, setup  # noqa: E402
from digest.capture import CaptureServer  # noqa: E402
from digest.send import RunResult, SmtpConnection, Timeouts, run_async  # noqa: E402
from digest.wiring import Services  # noqa: E402
from tests.support.faults import GREYLIST, FaultHandler, OutageHandler, mixed_faults  # noqa: E402

DIGEST = str(Path(sys.executable).parent / "digest")
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def environment(workdir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(
        {
            "DIGEST_VAR_DIR": str(workdir),
            "DIGEST_DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
            "DIGEST_SECRET_KEY": "bench-secret-key-0123456789abcdef",
            "DIGEST_CONFIG": str(workdir / "none.toml"),
            "DIGEST_LOG_LEVEL": "WARNING",
        }
    )
    env.update(extra)
    (workdir / "none.toml").write_text("")
    return env


def wired(env: dict[str, str], subscribers: int) -> Services:
    """bench/send.py's set-up, with this run's extra settings in the environment."""
    os.environ.update(env)
    return setup(
        Path(env["DIGEST_VAR_DIR"]),
        subscribers,
        env["DIGEST_DATABASE_URL"],
        int(env.get("DIGEST_SMTP_CONNECTIONS", "8")),
    )


def readers(services: Services) -> list[str]:
    from sqlalchemy import select

    from digest.models import Subscriber

    with services.factory() as session:
        return list(session.scalars(select(Subscriber.email).order_by(Subscriber.id)))


def send_waiting(services: Services, handler: FaultHandler) -> tuple[RunResult, float, float]:
    """Today's edition through the fault server, retries awaited: (result, the
    loop time it started, seconds until every delivery was final)."""
    schedule = services.schedule("daily")
    edition = services.editions.build(schedule, DAY)
    with CaptureServer(handler) as server:
        cfg = services.settings.model_copy(update={"smtp_url": server.url})
        services = Services(cfg, services.factory, services.clock)
        started = time.monotonic()
        services.lifecycle.start_sending(schedule, edition)
        run = services.sender.send_run(
            schedule,
            edition,
            lambda t: SmtpConnection(t, Timeouts(10, 10, 10)),
            worker="bench",
            wait=True,
        )
        result = run_async(run.run())
        services.lifecycle.finish(edition)
        return result, started, time.monotonic() - started


def faults(args: argparse.Namespace) -> None:
    print(
        f"faults run: {args.subscribers} subscribers, {args.temporary:.0%} temporary, "
        f"{args.rate_limited:.0%} rate limits, {args.permanent:.0%} permanent, "
        f"{args.dropped:.0%} dropped connections; DIGEST_RETRY_SCHEDULE=1,2,4"
    )
    with tempfile.TemporaryDirectory(prefix="digest-faults-") as tmp:
        env = environment(
            Path(tmp),
            DIGEST_RETRY_SCHEDULE="1,2,4",
            DIGEST_RETRY_JITTER="0.2",
            DIGEST_DOMAIN_PAUSE="1",
            DIGEST_SMTP_CONNECTIONS=str(args.connections),
        )
        services = wired(env, args.subscribers)
        logging.getLogger("digest").setLevel(logging.ERROR)  # pauses are counted below
        handler = FaultHandler()
        expected = mixed_faults(
            readers(services),
            handler,
            temporary=args.temporary,
            permanent=args.permanent,
            dropped=args.dropped,
            rate_limited=args.rate_limited,
        )
        result, _, elapsed = send_waiting(services, handler)
    received = Counter(m.rcpt_to[0] for m in handler.messages)
    deliverable = [r for r, end in expected.items() if end == "sent"]
    delivered = sum(1 for r in deliverable if received[r])
    duplicates = sum(n - 1 for n in received.values())
    retries = sum(n - 1 for n in handler.attempts.values())
    print(
        f"delivered: {delivered}/{len(deliverable)} deliverable "
        f"({delivered / len(deliverable):.1%})"
    )
    print(
        f"failed for good: {result.failed} failed + {result.bounced} bounced (expected "
        f"{len(expected) - len(deliverable)})"
    )
    print(f"duplicates: {duplicates}")
    print(f"retries (SMTP attempts beyond the first): {retries}")
    pauses = sum(d.pauses for d in result.domains.values())
    held = sum(d.deferred for d in result.domains.values())
    print(f"domain pauses (failed cohorts): {pauses}; messages held back: {held}")
    print(f"time: {elapsed:.1f} s to every delivery final")


def outage_send(args: argparse.Namespace, seconds: float) -> dict[str, float]:
    """One send of ``args.subscribers`` with mail.example.ru down for ``seconds``."""
    domain = "mail.example.ru"
    with tempfile.TemporaryDirectory(prefix="digest-outage-") as tmp:
        env = environment(Path(tmp), DIGEST_SMTP_CONNECTIONS=str(args.connections))
        services = wired(env, args.subscribers)
        handler = OutageHandler(domain, seconds)
        arrived: dict[str, float] = {}
        accept = handler.verdict

        def stamp(envelope: object) -> str | None:
            arrived[envelope.rcpt_tos[0]] = time.monotonic()  # type: ignore[attr-defined]
            return accept(envelope)

        handler.verdict = stamp  # type: ignore[method-assign]
        result, started, total = send_waiting(services, handler)
    at = {r: t - started for r, t in arrived.items()}
    own = [t for r, t in at.items() if r.endswith("@" + domain)]
    rest = [t for r, t in at.items() if not r.endswith("@" + domain)]
    return {
        "readers": len(at),
        "domain_readers": len(own),
        "domain_last": max(own),
        "others_last": max(rest),
        "refused": len(handler.refused),
        "total": total,
        "probes": sum(d.probes for d in result.domains.values()),
        "duplicates": len(handler.messages) - len(at),
    }


def outage(args: argparse.Namespace) -> None:
    print(
        f"provider outage run: {args.subscribers} subscribers over five domains; "
        f"mail.example.ru answers 421 4.7.0 for {args.outage:g} s; default settings "
        "(DIGEST_DOMAIN_PAUSE 5 s, doubling while probes fail)"
    )
    plain = outage_send(args, 0.0)
    down = outage_send(args, args.outage)
    for name, r in (("no outage", plain), (f"{args.outage:g} s outage", down)):
        print(
            f"{name:>14}: {r['readers']:.0f} readers, {r['duplicates']:.0f} twice; last of "
            f"mail.example.ru ({r['domain_readers']:.0f}) at {r['domain_last']:.1f} s, last of "
            f"the others at {r['others_last']:.1f} s; {r['refused']:.0f} refusals, "
            f"{r['probes']:.0f} probes"
        )
    print(
        f"time to the domain's last reader / outage length: {down['domain_last']:.1f} / "
        f"{args.outage:g} s = {down['domain_last'] / args.outage:.2f}×; "
        f"other domains: {down['others_last'] / plain['others_last']:.2f}× the plain send"
    )


def greylist_send(args: argparse.Namespace, share: float) -> dict[str, float]:
    """One send of ``args.subscribers`` with ``share`` of them greylisted once."""
    with tempfile.TemporaryDirectory(prefix="digest-greylist-") as tmp:
        env = environment(
            Path(tmp),
            DIGEST_GREYLIST_DELAY="2",
            DIGEST_RETRY_SCHEDULE="2,4,8",
            DIGEST_RETRY_JITTER="0.1",
            DIGEST_SMTP_CONNECTIONS=str(args.connections),
        )
        services = wired(env, args.subscribers)
        handler = FaultHandler()
        emails = readers(services)
        greylisted = set(random.Random(11).sample(emails, round(len(emails) * share)))
        for rcpt in greylisted:
            handler.script(rcpt, [GREYLIST])
        result, started, total = send_waiting(services, handler)
    received = Counter(m.rcpt_to[0] for m in handler.messages)
    first_tries = sorted(times[0] for times in handler.seen.values())
    first_pass = first_tries[-1] - started
    return {
        "delivered": sum(1 for e in emails if received[e] == 1),
        "duplicates": sum(n - 1 for n in received.values()),
        "subscribers": len(emails),
        "greylisted": len(greylisted),
        "first_pass": first_pass,
        "first_rate": len(first_tries) / first_pass,
        "retry_wave": started + total - first_tries[-1],
        "total": total,
        "pauses": sum(d.pauses for d in result.domains.values()),
        "slowed": sum(d.slowed for d in result.domains.values()),
    }


def greylist(args: argparse.Namespace) -> None:
    print(
        f"greylisting run: {args.subscribers} subscribers, 20 % greylisted once at RCPT "
        "(451 4.7.1), DIGEST_GREYLIST_DELAY=2, against the same send without it"
    )
    plain = greylist_send(args, 0.0)
    grey = greylist_send(args, 0.20)
    for name, r in (("plain", plain), ("greylisted", grey)):
        print(
            f"{name:>10}: delivered {r['delivered']:.0f}/{r['subscribers']:.0f}, duplicates "
            f"{r['duplicates']:.0f}; first pass {r['first_pass']:.1f} s at "
            f"{r['first_rate']:,.0f} msg/s; retry wave {r['retry_wave']:.1f} s; total "
            f"{r['total']:.1f} s; domains paused {r['pauses']:.0f}, slowed {r['slowed']:.0f}"
        )
    print(
        f"first-pass rate, greylisted / plain: {grey['first_rate'] / plain['first_rate']:.2f}×; "
        f"total = first pass + retry wave: {grey['first_pass']:.1f} + "
        f"{grey['retry_wave']:.1f} = {grey['total']:.1f} s"
    )


def rate(args: argparse.Namespace) -> None:
    """DIGEST_SMTP_RATE as the relay sees it: messages in every 10-second window."""
    print(f"rate run: {args.subscribers} subscribers at DIGEST_SMTP_RATE={args.rate:g}")
    with tempfile.TemporaryDirectory(prefix="digest-rate-") as tmp:
        env = environment(Path(tmp), DIGEST_SMTP_RATE=str(args.rate), DIGEST_SMTP_CONNECTIONS="8")
        services = wired(env, args.subscribers)
        schedule = services.schedule("daily")
        edition = services.editions.build(schedule, DAY)
        handler = FaultHandler()
        arrivals: list[float] = []
        accept = handler.verdict

        def stamp(envelope: object) -> str | None:
            arrivals.append(time.monotonic())
            return accept(envelope)

        handler.verdict = stamp  # type: ignore[method-assign]
        with CaptureServer(handler) as server:
            cfg = services.settings.model_copy(update={"smtp_url": server.url})
            services = Services(cfg, services.factory, services.clock)
            services.lifecycle.start_sending(schedule, edition)
            run = services.sender.send_run(
                schedule, edition, lambda t: SmtpConnection(t, 10), worker="bench"
            )
            run_async(run.run())
    arrivals.sort()
    expected = 10 * args.rate
    counts = []
    start = arrivals[0]
    while start + 10 <= arrivals[-1]:
        counts.append(sum(1 for t in arrivals if start <= t < start + 10))
        start += 0.1
    worst = max(abs(c - expected) for c in counts) / expected
    print(
        f"{len(counts)} windows of 10 s: {min(counts)}–{max(counts)} messages "
        f"(target {expected:.0f}); worst deviation {worst:.1%}"
    )


def reset(services: Services, edition_id: int) -> None:
    from sqlalchemy import update

    from digest.models import Delivery, DeliveryStatus, Edition, EditionStatus

    with services.factory() as session, session.begin():
        session.execute(
            update(Delivery)
            .where(Delivery.edition_id == edition_id)
            .values(status=DeliveryStatus.QUEUED, sent_at=None, attempts=0, first_attempt_at=None)
        )
        session.execute(
            update(Edition).where(Edition.id == edition_id).values(status=EditionStatus.SENDING)
        )


def sending_span(services: Services, edition_id: int) -> tuple[int, float]:
    """Messages sent and the seconds from the first to the last (process start-up excluded)."""
    from sqlalchemy import func, select

    from digest.models import Delivery, DeliveryStatus

    with services.factory() as session:
        first, last, count = session.execute(
            select(func.min(Delivery.sent_at), func.max(Delivery.sent_at), func.count()).where(
                Delivery.edition_id == edition_id, Delivery.status == DeliveryStatus.SENT
            )
        ).one()
    assert isinstance(first, datetime) and isinstance(last, datetime)
    return int(count), max((last - first).total_seconds(), 1e-3)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--faults", action="store_true")
    parser.add_argument("--greylist", action="store_true")
    parser.add_argument("--rate", type=float, help="measure DIGEST_SMTP_RATE=R at the relay")
    parser.add_argument("--outage", type=float, help="a provider down for S seconds")
    parser.add_argument("--subscribers", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--temporary", type=float, default=0.20, help="share of 451/452 replies")
    parser.add_argument("--rate-limited", type=float, default=0.01, help="share of 421 4.7.0")
    parser.add_argument("--permanent", type=float, default=0.05, help="share of 5xx replies")
    parser.add_argument("--dropped", type=float, default=0.02, help="share of dropped lines")
    args = parser.parse_args()
    if args.faults:
        faults(args)
    if args.rate:
        rate(args)
    if args.greylist:
        greylist(args)
    if args.outage:
        outage(args)
    if not (args.faults or args.rate or args.greylist or args.outage):
        parser.error("say --faults, --greylist, --outage S and/or --rate R")


if __name__ == "__main__":
    main()
