"""`digest send`, `worker`, `pause`, `resume`, `cancel`, `retry`: sending and its levers."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from digest.cli.app import (
    DateOption,
    EditionArg,
    ForceOption,
    MetricsHostOption,
    MetricsPortOption,
    ScheduleArg,
    YesOption,
    app,
    asked,
    console,
    err,
    errors,
    expose_metrics,
    fail,
    find,
    options,
    settings,
    to_send,
    wire,
)
from digest.cli.editions import finish_exit, operator, print_report, status_of
from digest.errors import RelayUnavailable
from digest.kinds import DeliveryStatus

if TYPE_CHECKING:
    from digest.config.values import SmtpTarget
    from digest.models import Edition
    from digest.schedule.files import Schedule
    from digest.send import RunResult
    from digest.track.outcomes import Outcome
    from digest.wiring import Services

log = logging.getLogger("digest")


NoWaitOption = Annotated[
    bool,
    typer.Option(
        "--no-wait",
        help="Return after one pass; deferred messages are left to `digest worker` or a later run.",
    ),
]

EnqueueOnlyOption = Annotated[
    bool,
    typer.Option(
        "--enqueue-only",
        help="Freeze the edition and queue every delivery, send nothing: workers send it.",
    ),
]


@app.command()
def send(
    schedule_name: ScheduleArg = "daily",
    on: DateOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Compose every message, send none.")
    ] = False,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Send at most N messages this run.")
    ] = None,
    test_to: Annotated[
        str | None, typer.Option("--test-to", help="Send one test copy to EMAIL, untracked.")
    ] = None,
    no_wait: NoWaitOption = False,
    enqueue_only: EnqueueOnlyOption = False,
    force: ForceOption = False,
    yes: YesOption = False,
) -> None:
    """Build the edition (if needed) and send it to every active subscriber.

    Each subscriber gets one delivery row before anything is sent; running the
    command again sends only what is not sent yet. Deferred messages are retried
    on DIGEST_RETRY_SCHEDULE until every delivery is final or gives up
    (DIGEST_GIVE_UP_AFTER). Ctrl-C or SIGTERM stop cleanly: what is in flight
    finishes and is recorded. With PostgreSQL and `digest worker` processes
    running, use --enqueue-only and let the workers send. An edition older than
    its schedule's period asks first (--yes: go on; it says how many it reaches).
    SCHEDULE may name an edition made already: a special one by its label.

    Example: digest send daily --date 2026-11-25 --limit 100
    """
    with errors():
        cfg = settings()
        services = wire(cfg)
        schedule, edition = to_send(services, schedule_name, on)
        if dry_run:
            do_dry_run(services, schedule, edition, limit)
            return
        if enqueue_only:
            enqueue(services, schedule, edition, force=force, yes=yes)
            return
        cfg.require_relays()
        if test_to:
            do_test_send(services, schedule, edition, test_to)
            return
        if not force:  # refused before any relay is asked (start_sending holds the rule)
            services.lifecycle.check_approval(schedule, edition, force=False)
        result = asked(yes, lambda ok: deliver(
            services, schedule, edition, limit=limit, wait=not no_wait and limit is None,
            force=force, old_ok=ok,
        ))  # fmt: skip
        report = status_of(services, edition)
    print_report(report, schedule.zone)
    finish_exit(report, result)


def enqueue(
    services: Services, schedule: Schedule, edition: Edition, *, force: bool, yes: bool
) -> None:
    """`digest send --enqueue-only`: the deliveries queued, the workers send them."""
    added = asked(
        yes, lambda ok: services.lifecycle.start_sending(schedule, edition, force=force, old_ok=ok)
    )
    console.print(
        f"{edition.label}: {added} deliveries queued for the workers "
        "(`digest worker`); follow them with `digest status`"
    )


def do_dry_run(services: Services, schedule: Schedule, edition: Edition, limit: int | None) -> None:
    result = services.previews.dry_run(schedule, edition, limit)
    console.print(
        f"dry run of {edition.label} «{edition.subject}»: would send {result.messages} messages "
        f"({result.bytes / 1e6:.1f} MB) in {result.variants} variant(s); "
        f"{result.skipped} subscribers have nothing in their sections"
    )
    for problem in result.problems:
        err.print(f"[red]cannot compose[/] {escape(str(problem))}", highlight=False)


def do_test_send(services: Services, schedule: Schedule, edition: Edition, to: str) -> None:
    result = services.previews.send_test(schedule, edition, to)
    console.print(
        f"test copy of {edition.label} sent to {result.message.envelope_to}: "
        f"{result.code} {result.reply}"
    )
    if not result.ok:
        raise typer.Exit(1)


class RichProgress:
    """Final outcomes advance the bar; deferred messages wait beside it until a
    retry settles them (sent, failed or bounced)."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self.progress = progress
        self.task = task
        self.counts = {"sent": 0, "failed": 0}
        self.waiting: set[int] = set()
        # The sender processes' outcomes arrive on a thread of their own.
        self._lock = threading.Lock()

    def advance(self, outcome: Outcome) -> None:
        with self._lock:
            self._advance(outcome)

    def _advance(self, outcome: Outcome) -> None:
        if outcome.status is DeliveryStatus.DEFERRED:
            self.waiting.add(outcome.delivery_id)
            step = 0
        else:
            self.waiting.discard(outcome.delivery_id)
            self.counts["sent" if outcome.status is DeliveryStatus.SENT else "failed"] += 1
            step = 1
        speed = (
            self.progress.tasks[self.task].speed if self.task < len(self.progress.tasks) else None
        )
        rate = f"{speed:,.0f} msg/s" if speed else ""
        self.progress.update(
            self.task,
            advance=step,
            rate=rate,
            sent=self.counts["sent"],
            failed=self.counts["failed"],
            deferred=len(self.waiting),
        )


PROGRESS_COLUMNS = (
    TextColumn("{task.description}"),
    BarColumn(),
    MofNCompleteColumn(),
    TextColumn(
        "sent {task.fields[sent]} · failed {task.fields[failed]} · to retry {task.fields[deferred]}"
    ),
    TextColumn("{task.fields[rate]}"),
    TimeElapsedColumn(),
    TimeRemainingColumn(),
)


def deliver(
    services: Services,
    schedule: Schedule,
    edition: Edition,
    *,
    limit: int | None = None,
    wait: bool = True,
    via: SmtpTarget | None = None,
    force: bool = False,
    old_ok: bool = False,
) -> RunResult:
    """The send service with a progress bar; a stop says why and how to go on."""
    result = services.sender.deliver(
        schedule, edition, limit=limit, wait=wait, watch=progress_bar, via=via, force=force,
        old_ok=old_ok,
    )  # fmt: skip
    explain_stop(services, edition, result)
    return result


@contextmanager
def progress_bar(label: str, total: int) -> Iterator[RichProgress]:
    # At a terminal only: in a pipe or a log the bar came out cut («100… 0:0…», issue
    # 28 §7); the send's summary line says it all there.
    quiet = options().log_json or not err.is_terminal
    with Progress(*PROGRESS_COLUMNS, console=err, transient=False, disable=quiet) as bar:
        task = bar.add_task(label, total=total, sent=0, failed=0, deferred=0, rate="")
        yield RichProgress(bar, task)


def explain_stop(services: Services, edition: Edition, result: RunResult) -> None:
    """A stopped send says why and how to go on; an outage is an error (exit 1)."""
    if result.aborted:
        raise RelayUnavailable(
            f"{result.aborted}; sent {result.sent} before stopping — every claim was handed "
            f"back: run `digest resume {edition.label}` to send the rest"
        )
    if result.stopped == "paused" and services.corrections.pending(edition):
        err.print(
            f"{edition.label} is paused: articles changed since it was approved "
            f"(`digest status {edition.label}` shows them); `digest editions rebuild "
            f"{edition.label}` sends the corrected text"
        )
    elif result.stopped == "paused":
        err.print(f"{edition.label} is paused; `digest resume {edition.label}` goes on")
    elif result.stopped == "cancelled":
        err.print(f"{edition.label} was cancelled; what was not sent is marked suppressed")
    elif result.stopped:
        err.print(
            f"stopped ({result.stopped}): sent {result.sent} this run; every outcome is "
            f"recorded. `digest resume {edition.label}` sends the rest."
        )
        raise typer.Exit(143 if "SIGTERM" in result.stopped else 130)


@app.command()
def worker(
    once: Annotated[bool, typer.Option("--once", help="Send what is due now, then exit.")] = False,
    metrics_port: MetricsPortOption = None,
    metrics_host: MetricsHostOption = "127.0.0.1",
) -> None:
    """Send every edition that is being sent, sharing the work with other workers.

    Run as many as you like, on one machine or many, against one PostgreSQL
    database (DIGEST_DATABASE_URL): they claim deliveries in batches with FOR
    UPDATE SKIP LOCKED, so no message is sent twice. Without --once it runs until
    stopped (SIGTERM or Ctrl-C finish what is in flight first). On SQLite run one.

    Example: digest worker --once
    """
    from digest.send import run_async, worker_name
    from digest.send.process import yield_cpu

    with errors():
        cfg = settings()
        yield_cpu(cfg.send_nice)
        services = wire(cfg)
        cfg.require_relays()
        name = worker_name()
        expose_metrics(services, metrics_port, metrics_host)
        log.info("worker %s started%s", name, " (once)" if once else "")
        services.sender.reclaim()
        report = run_async(services.sender.run_worker(name, once))
    console.print(f"worker {name}: {report.summary()}")
    if report.aborted:
        fail(f"{report.aborted}; claims handed back, start the worker again")


@app.command()
def pause(edition_ref: EditionArg) -> None:
    """Pause a send: running senders and workers stop claiming within seconds and
    finish what is in flight. `digest resume` goes on.

    Example: digest pause daily/2026-11-25
    """
    with errors():
        services = wire(settings())
        edition = find(services, edition_ref)
        services.lifecycle.pause(edition)
    console.print(f"{edition.label} paused; `digest resume {edition.label}` goes on")


@app.command()
def resume(
    edition_ref: EditionArg,
    no_wait: NoWaitOption = False,
    enqueue_only: EnqueueOnlyOption = False,
    as_approved: Annotated[
        bool,
        typer.Option(
            "--as-approved",
            help="Paused for a correction: send the rest as approved, not taking it in.",
        ),
    ] = False,
    yes: YesOption = False,
) -> None:
    """Resume a paused, stopped or crashed send and send what is left here (or,
    with --enqueue-only, leave it to the workers). Claims of a dead sender on this
    machine come back at once; others' when their lease ends. An edition older
    than its schedule's period asks first (--yes: go on).

    Example: digest resume daily/2026-11-25
    """
    with errors():
        cfg = settings()
        services = wire(cfg)
        edition = find(services, edition_ref)
        if as_approved:
            for passed in services.corrections.pass_by(edition, operator()):
                err.print(f"not taken in: {passed.describe()}", highlight=False, markup=False)
        asked(yes, lambda ok: services.lifecycle.resume(edition, old_ok=ok))
        if enqueue_only:
            console.print(f"{edition.label} resumed; the workers send it")
            return
        cfg.require_relays()
        schedule = services.schedule(edition.schedule)
        result = deliver(services, schedule, edition, wait=not no_wait, old_ok=True)  # asked
        report = status_of(services, edition)
    print_report(report, schedule.zone)
    finish_exit(report, result)


@app.command()
def cancel(edition_ref: EditionArg) -> None:
    """Cancel an edition for good: senders stop within seconds, and every message
    not yet sent is marked suppressed.

    Example: digest cancel daily/2026-11-25
    """
    with errors():
        services = wire(settings())
        edition = find(services, edition_ref)
        now, held = services.lifecycle.cancel(edition)
    if not held:
        console.print(f"{edition.label} cancelled: {now} queued message(s) will not be sent")
        return
    # Issue 28 §7: "0 messages will not be sent", then 146 were: say the whole of it.
    console.print(
        f"{edition.label} cancelled: {now} queued message(s) will not be sent, and a running "
        f"send holds {held} more: it stops within a second, and those it has not sent by "
        f"then are not sent either (`digest status {edition.label}` counts them)"
    )


@app.command()
def retry(
    edition_ref: EditionArg,
    failed: Annotated[
        bool, typer.Option("--failed", help="Also failed ones (never bounced addresses).")
    ] = False,
    yes: YesOption = False,
) -> None:
    """Queue deferred deliveries (and with --failed, failed ones) to go now, with a
    fresh give-up clock. A running send or worker picks them up; otherwise run
    `digest resume EDITION`. An edition older than its schedule's period asks
    first (--yes: go on).

    Example: digest retry daily/2026-11-25 --failed
    """
    with errors():
        services = wire(settings())
        edition = find(services, edition_ref)
        n = asked(yes, lambda ok: services.lifecycle.retry(edition, failed=failed, old_ok=ok))
    console.print(f"{edition.label}: {n} deliveries queued again")
