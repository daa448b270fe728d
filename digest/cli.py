"""The ``digest`` command: thin wiring of the stages, Typer + Rich.

Exit codes: 0 done; 1 error (bad setting, unreachable relay, …); 2 wrong
usage; 3 done, but some records or messages did not make it (rejected
lines, failed or deferred deliveries).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import logging
import re
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from digest import __version__, db, demo, logs, queries
from digest.bounces import (
    BounceReader,
    ReturnsReport,
    Source,
    process_returns,
    process_unsubscribes,
)
from digest.capture import CaptureHandler, CaptureServer
from digest.config import Settings, load_settings
from digest.doctor import Check, run_checks
from digest.edition import Pipeline, WorkReport
from digest.errors import ConfigError, DigestError, EmptyEdition, RelayUnavailable
from digest.files import open_private, write_private
from digest.ingest import Ingester, IngestReport, read_source
from digest.lists import get_list, load_lists
from digest.models import DeliveryStatus, Edition, SubscriberStatus, utcnow
from digest.schedule import Schedule, load_schedules
from digest.scheduler import Fired, FireReport, Runner, catch_up, run_scheduler
from digest.send import (
    RunResult,
    SendRun,
    connector,
    probe_relays,
    reclaim_dead,
    run_async,
    run_stoppable,
    stop_on_signals,
    worker_name,
)
from digest.signing import keygen
from digest.subscribers import Row, SubscriberBook, write_export
from digest.tokens import LinkSigner
from digest.track import EditionReport, Outcome, SoftBouncePolicy, edition_report

EXIT_PARTIAL = 3
EXIT_USAGE = 2
console = Console()
err = Console(stderr=True)
log = logging.getLogger("digest")

app = typer.Typer(
    help="The daily email digest of «Новости ВПК»: ingest articles, build the edition, send it.",
    epilog="Exit status: 0 done; 1 error; 2 wrong usage; 3 done, but some records or "
    "messages did not make it.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
subscribers_app = typer.Typer(
    help="Subscribers: import, add, remove, show, list, export, forget.", no_args_is_help=True
)
app.add_typer(subscribers_app, name="subscribers")
dkim_app = typer.Typer(help="DKIM keys.", no_args_is_help=True)
app.add_typer(dkim_app, name="dkim")


@dataclass
class State:
    log_json: bool = False
    verbose: bool = False


state = State()


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def errors() -> Iterator[None]:
    """DigestErrors become a one-line message and exit status 1, at the edge only."""
    try:
        yield
    except DigestError as exc:
        fail(str(exc))


def settings() -> Settings:
    loaded = load_settings()
    level = "DEBUG" if state.verbose else loaded.log_level
    logs.setup(level, state.log_json, err)
    return loaded


def pipeline(cfg: Settings, *, upgrade: bool = False) -> Pipeline:
    engine = db.make_engine(cfg.database)
    if upgrade:
        db.upgrade(engine)
    else:
        db.check_schema(engine)
    return Pipeline(cfg, db.session_factory(engine), clock=utcnow)


def parse_date(value: str | None, schedule: Schedule) -> date:
    if value is None:
        return schedule.today(utcnow())
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"--date: {value!r} is not a date like 2026-11-25", 2)


@app.callback()
def main_options(
    log_json: Annotated[
        bool, typer.Option("--log-json", help="Log one JSON object per line.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug details.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    """Settings come from digest.toml (or $DIGEST_CONFIG) and DIGEST_* variables;
    see the README for every one."""
    if version:
        console.print(f"digest {__version__}")
        raise typer.Exit()
    state.log_json, state.verbose = log_json, verbose


ScheduleArg = Annotated[str, typer.Argument(metavar="SCHEDULE", help="A file in schedules/.")]
DateOption = Annotated[
    str | None, typer.Option("--date", help="Edition date, e.g. 2026-11-25 (default: today).")
]


# -- db ---------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create the schema, or bring it up to this version (Alembic migrations).
    The database is DIGEST_DATABASE_URL (SQLite or postgresql+psycopg://).

    Example: digest db upgrade
    """
    with errors():
        cfg = settings()
        before, after = db.upgrade(db.make_engine(cfg.database))
    if before == after:
        console.print(f"database is up to date (revision {after})")
    else:
        console.print(f"database upgraded: {before or 'empty'} → {after}")


# -- ingest -----------------------------------------------------------------------


@app.command()
def ingest(
    paths: Annotated[list[str], typer.Argument(help="JSON Lines files, RSS/Atom files or URLs.")],
) -> None:
    """Load articles and their comments.

    JSON Lines: one article per line with id, url, title, published_at (ISO 8601
    with offset) and optionally lead, section, views, rating, image_url, source,
    comments [{number, author, posted_at, body, votes}]. Re-loading an id updates
    the article and adds only new comments. RSS 2.0 and Atom are read with
    feedparser. A bad line is reported with its number; the rest is loaded; the
    exit status is 3 when anything was rejected.

    Example: digest ingest articles.jsonl https://vpk.example.ru/rss.xml
    """
    with errors():
        cfg = settings()
        pipe = pipeline(cfg)
        report = IngestReport()
        for path in paths:
            report.merge(Ingester(pipe.factory).load(read_source(path)))
    print_ingest(report)
    if report.rejected:
        raise typer.Exit(EXIT_PARTIAL)


def print_ingest(report: IngestReport) -> None:
    for problem in report.problems:
        err.print(f"[red]rejected[/] {problem}", highlight=False)
    for warning in report.warnings[:20]:
        err.print(f"[yellow]skipped comment[/] {warning}", highlight=False)
    if len(report.warnings) > 20:
        err.print(f"… and {len(report.warnings) - 20} more skipped comments")
    console.print(
        f"loaded {report.loaded}, updated {report.updated}, rejected {report.rejected}; "
        f"comments added {report.comments_added}, skipped {report.comments_rejected}"
    )


# -- preview ----------------------------------------------------------------------


class Format(StrEnum):
    html = "html"
    text = "text"
    eml = "eml"


@app.command()
def preview(
    schedule_name: ScheduleArg = "daily",
    on: DateOption = None,
    subscriber: Annotated[
        str | None, typer.Option(help="Show it as this subscriber gets it.")
    ] = None,
    fmt: Annotated[
        Format, typer.Option("--format", help="html, text or the whole eml.")
    ] = Format.html,
    out: Annotated[Path | None, typer.Option(help="Write here (default: var/preview/…).")] = None,
) -> None:
    """Show exactly what would be sent: the stored edition (a draft is refreshed
    first), composed for one subscriber (or a sample reader), decoded.

    Example: digest preview daily --date 2026-11-25 --format text --out -
    """
    with errors():
        cfg = settings()
        pipe = pipeline(cfg)
        schedule = pipe.schedule(schedule_name)
        edition = build_or_say(pipe, schedule, parse_date(on, schedule))
        message = pipe.preview(schedule, edition, subscriber)
    content = decoded(message.data, fmt)
    if out is not None and str(out) == "-":
        sys.stdout.buffer.write(content)
        return
    target = (
        out or cfg.var_dir / "preview" / f"{edition.schedule}-{edition.edition_date}.{fmt.value}"
    )
    write_private(target, content)  # a real reader's links: for the operator's eyes only
    console.print(f"{edition.label} ({edition.status}) for {message.envelope_to}: {target}")


def decoded(data: bytes, fmt: Format) -> bytes:
    """The part a reader sees, decoded from the very bytes that would be sent."""
    if fmt is Format.eml:
        return data
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    part = parsed.get_body(("html",) if fmt is Format.html else ("plain",))
    assert part is not None
    return str(part.get_content()).encode("utf-8")


def build_or_say(pipe: Pipeline, schedule: Schedule, on: date) -> Edition:
    try:
        return pipe.build(schedule, on)
    except EmptyEdition as exc:
        console.print(f"nothing to send: {exc}")
        raise typer.Exit(0) from None


# -- send -------------------------------------------------------------------------


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
) -> None:
    """Build the edition (if needed) and send it to every active subscriber.

    Each subscriber gets one delivery row before anything is sent; running the
    command again sends only what is not sent yet. Deferred messages are retried
    on DIGEST_RETRY_SCHEDULE until every delivery is final or gives up
    (DIGEST_GIVE_UP_AFTER). Ctrl-C or SIGTERM stop cleanly: what is in flight
    finishes and is recorded. With PostgreSQL and `digest worker` processes
    running, use --enqueue-only and let the workers send.

    Example: digest send daily --date 2026-11-25 --limit 100
    """
    with errors():
        cfg = settings()
        pipe = pipeline(cfg)
        schedule = pipe.schedule(schedule_name)
        edition = build_or_say(pipe, schedule, parse_date(on, schedule))
        if dry_run:
            do_dry_run(pipe, schedule, edition, limit)
            return
        if enqueue_only:
            added = pipe.start_sending(schedule, edition)
            console.print(
                f"{edition.label}: {added} deliveries queued for the workers "
                "(`digest worker`); follow them with `digest status`"
            )
            return
        if not cfg.relays:
            fail("DIGEST_SMTP_URL is not set: say where to send (smtp://host:port)")
        if test_to:
            do_test_send(pipe, schedule, edition, test_to)
            return
        deliver(pipe, schedule, edition, limit=limit, wait=not no_wait and limit is None)
        report = status_of(pipe, edition)
    print_report(report)
    finish_exit(report)


def do_dry_run(pipe: Pipeline, schedule: Schedule, edition: Edition, limit: int | None) -> None:
    result = pipe.dry_run(schedule, edition, limit)
    console.print(
        f"dry run of {edition.label} «{edition.subject}»: would send {result.messages} messages "
        f"({result.bytes / 1e6:.1f} MB) in {result.variants} variant(s); "
        f"{result.skipped} subscribers have nothing in their sections"
    )
    for problem in result.problems:
        err.print(f"[red]cannot compose[/] {problem}", highlight=False)


def do_test_send(pipe: Pipeline, schedule: Schedule, edition: Edition, to: str) -> None:
    result = pipe.send_test(schedule, edition, to)
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

    def advance(self, outcome: Outcome) -> None:
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
    pipe: Pipeline,
    schedule: Schedule,
    edition: Edition,
    *,
    limit: int | None = None,
    wait: bool = True,
) -> RunResult:
    """Enqueue and send, with a progress bar; with ``wait``, until every delivery
    is final. Infrastructure faults raise; a signal stops cleanly."""
    connect = connector(pipe.settings)
    relays = pipe.relay_pool()
    run_async(probe_relays(relays, connect))
    reclaimed = reclaim_dead(pipe.factory, utcnow())
    if reclaimed:
        log.info("took back %d deliveries claimed by processes that died", reclaimed)
    added = pipe.start_sending(schedule, edition)
    with pipe.factory() as session:
        counts = queries.delivery_counts(session, edition.id)
    due = sum(counts.get(s, 0) for s in DeliveryStatus if not s.final)
    total = min(due, limit) if limit else due
    log.info(
        "sending %s through %s: %d new deliveries, %d to send",
        edition.label,
        ", ".join(str(r.target) for r in relays.relays),
        added,
        due,
        extra={"edition": edition.id},
    )
    with Progress(*PROGRESS_COLUMNS, console=err, transient=False, disable=state.log_json) as bar:
        task = bar.add_task(edition.label, total=total, sent=0, failed=0, deferred=0, rate="")
        run = pipe.send_run(
            schedule,
            edition,
            connect,
            worker=worker_name(),
            relays=relays,
            limit=limit,
            wait=wait,
            progress=RichProgress(bar, task),
        )
        result = run_async(run_stoppable(run))
    pipe.finish(edition)
    log.info(
        "send of %s: %d sent, %d failed, %d bounced, %d suppressed; %d deferrals on the way",
        edition.label,
        result.sent,
        result.failed,
        result.bounced,
        result.suppressed,
        result.deferred,
        extra={"edition": edition.id},
    )
    explain_stop(edition, result)
    return result


def explain_stop(edition: Edition, result: RunResult) -> None:
    """A stopped send says why and how to go on; an outage is an error (exit 1)."""
    if result.aborted:
        raise RelayUnavailable(
            f"{result.aborted}; sent {result.sent} before stopping — every claim was handed "
            f"back: run `digest resume {edition.label}` to send the rest"
        )
    if result.stopped == "paused":
        err.print(f"{edition.label} is paused; `digest resume {edition.label}` goes on")
    elif result.stopped == "cancelled":
        err.print(f"{edition.label} was cancelled; what was not sent is marked suppressed")
    elif result.stopped:
        err.print(
            f"stopped ({result.stopped}): sent {result.sent} this run; every outcome is "
            f"recorded. `digest resume {edition.label}` sends the rest."
        )
        raise typer.Exit(143 if "SIGTERM" in result.stopped else 130)


def finish_exit(report: EditionReport) -> None:
    bad = (
        report.counts.get("failed", 0)
        + report.counts.get("deferred", 0)
        + report.counts.get("bounced", 0)
    )
    if bad:
        raise typer.Exit(EXIT_PARTIAL)


# -- workers and levers -------------------------------------------------------------


@app.command()
def worker(
    once: Annotated[bool, typer.Option("--once", help="Send what is due now, then exit.")] = False,
) -> None:
    """Send every edition that is being sent, sharing the work with other workers.

    Run as many as you like, on one machine or many, against one PostgreSQL
    database (DIGEST_DATABASE_URL): they claim deliveries in batches with FOR
    UPDATE SKIP LOCKED, so no message is sent twice. Without --once it runs until
    stopped (SIGTERM or Ctrl-C finish what is in flight first). On SQLite run one.

    Example: digest worker --once
    """
    with errors():
        cfg = settings()
        pipe = pipeline(cfg)
        if not cfg.relays:
            fail("DIGEST_SMTP_URL is not set: say where to send (smtp://host:port)")
        name = worker_name()
        log.info("worker %s started%s", name, " (once)" if once else "")
        reclaimed = reclaim_dead(pipe.factory, utcnow())
        if reclaimed:
            log.info("took back %d deliveries claimed by processes that died", reclaimed)
        report = run_async(work(pipe, name, once))
    console.print(
        f"worker {name}: sent {report.sent}, deferred {report.deferred}, failed "
        f"{report.failed}, bounced {report.bounced} in {len(report.editions)} edition(s)"
    )
    if report.aborted:
        fail(f"{report.aborted}; claims handed back, start the worker again")


class Stopper:
    """A signal stops the loop and the send run in progress (cleanly: in-flight
    messages finish and are recorded)."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.current: list[SendRun] = []

    def on_signal(self, reason: str) -> None:
        self.stop.set()
        for run in self.current:
            run.stop(reason)

    def on_run(self, run: SendRun | None) -> None:
        self.current[:] = [run] if run is not None else []


async def work(pipe: Pipeline, name: str, once: bool) -> WorkReport:
    stopper = Stopper()
    with stop_on_signals(stopper.on_signal):
        return await pipe.work(
            connector(pipe.settings),
            worker=name,
            once=once,
            stop=stopper.stop,
            on_run=stopper.on_run,
        )


EditionArg = Annotated[str, typer.Argument(metavar="EDITION", help="An id or schedule/date.")]


EDITION_LABEL = re.compile(r"[A-Za-z0-9_-]{1,64}/\d{4}-\d{2}-\d{2}")


def checked_ref(ref: str) -> str:
    """An edition reference as typed: an id or schedule/date, else bad usage (2)."""
    if queries.row_id(ref) is None and not EDITION_LABEL.fullmatch(ref):
        fail(f"{ref[:40]!r} is not an edition: give an id or schedule/date", EXIT_USAGE)
    return ref


def find(pipe: Pipeline, ref: str) -> Edition:
    with pipe.factory() as session:
        found = queries.find_edition(session, checked_ref(ref))
    if found is None:
        fail(f"no edition {ref!r} (give an id or schedule/date)")
    return found


@app.command()
def pause(edition_ref: EditionArg) -> None:
    """Pause a send: running senders and workers stop claiming within seconds and
    finish what is in flight. `digest resume` goes on.

    Example: digest pause daily/2026-11-25
    """
    with errors():
        pipe = pipeline(settings())
        edition = find(pipe, edition_ref)
        pipe.pause(edition)
    console.print(f"{edition.label} paused; `digest resume {edition.label}` goes on")


@app.command()
def resume(
    edition_ref: EditionArg,
    no_wait: NoWaitOption = False,
    enqueue_only: EnqueueOnlyOption = False,
) -> None:
    """Resume a paused, stopped or crashed send and send what is left here (or,
    with --enqueue-only, leave it to the workers). Claims of a dead sender on this
    machine come back at once; others' when their lease ends.

    Example: digest resume daily/2026-11-25
    """
    with errors():
        cfg = settings()
        pipe = pipeline(cfg)
        edition = find(pipe, edition_ref)
        pipe.resume(edition)
        if enqueue_only:
            console.print(f"{edition.label} resumed; the workers send it")
            return
        if not cfg.relays:
            fail("DIGEST_SMTP_URL is not set: say where to send (smtp://host:port)")
        schedule = pipe.schedule(edition.schedule)
        deliver(pipe, schedule, edition, wait=not no_wait)
        report = status_of(pipe, edition)
    print_report(report)
    finish_exit(report)


@app.command()
def cancel(edition_ref: EditionArg) -> None:
    """Cancel an edition for good: senders stop within seconds, and every message
    not yet sent is marked suppressed.

    Example: digest cancel daily/2026-11-25
    """
    with errors():
        pipe = pipeline(settings())
        edition = find(pipe, edition_ref)
        n = pipe.cancel(edition)
    console.print(f"{edition.label} cancelled; {n} messages will not be sent")


@app.command()
def retry(
    edition_ref: EditionArg,
    failed: Annotated[
        bool, typer.Option("--failed", help="Also failed ones (never bounced addresses).")
    ] = False,
) -> None:
    """Queue deferred deliveries (and with --failed, failed ones) to go now, with a
    fresh give-up clock. A running send or worker picks them up; otherwise run
    `digest resume EDITION`.

    Example: digest retry daily/2026-11-25 --failed
    """
    with errors():
        pipe = pipeline(settings())
        edition = find(pipe, edition_ref)
        n = pipe.retry(edition, failed=failed)
    console.print(f"{edition.label}: {n} deliveries queued again")


# -- subscribers ------------------------------------------------------------------


ListOption = Annotated[str, typer.Option("--list", help="A list of subscribers/lists.toml.")]


def book(cfg: Settings, list_name: str) -> SubscriberBook:
    pipe = pipeline(cfg)
    mailing_list = get_list(cfg.subscribers_dir, list_name)
    return SubscriberBook(pipe.factory, mailing_list.double_opt_in, mailing_list.default_sections)


def send_invitations(
    cfg: Settings,
    list_name: str,
    *,
    again: bool,
    dry_run: bool,
    limit: int | None,
    only: str | None = None,
) -> int:
    """Confirmation mail to pending subscribers; returns how many could not be sent."""
    pipe = pipeline(cfg)
    mailing_list = get_list(cfg.subscribers_dir, list_name)
    subscribers = book(cfg, list_name)
    due = subscribers.to_invite(mailing_list.confirm_days, again, limit, only)
    invitations = pipe.invitations(mailing_list)
    if dry_run:
        for s in due:
            console.print(f"would send to {s.email}: {invitations.link(s.token_key)}")
        console.print(f"{len(due)} confirmation mail(s) would go out (dry run)")
        return 0
    if not cfg.relays:
        raise ConfigError(
            f"DIGEST_SMTP_URL is not set: {len(due)} confirmation mail(s) not sent; "
            "send them with `digest subscribers invite` once it is"
        )
    connection = connector(cfg)(cfg.relays[0])
    report = run_async(invitations.send(subscribers, due, connection, pipe.signing_step()))
    for problem in report.failed:
        err.print(f"[red]not sent[/] {problem}", highlight=False)
    console.print(
        f"confirmation mail sent to {len(report.sent)}, failed {len(report.failed)}; "
        f"links work for {mailing_list.confirm_days} days"
    )
    return len(report.failed)


@subscribers_app.command("invite")
def subscribers_invite(
    list_name: ListOption = "daily",
    again: Annotated[
        bool, typer.Option("--again", help="Also those whose confirmation link expired.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List who would get one; send nothing.")
    ] = False,
    limit: Annotated[int | None, typer.Option(help="At most N mails this run.")] = None,
) -> None:
    """Send the double opt-in confirmation mail to pending subscribers who have
    not had one (with --again, also to those whose link expired). Each mail
    carries a signed link to /confirm/TOKEN on DIGEST_BASE_URL that works for
    the list's confirm_days; opening it makes the subscriber active. Nobody
    gets a second mail while their link still works. Exit status 3 when some
    could not be sent.

    Example: digest subscribers invite --dry-run
    """
    with errors():
        failed = send_invitations(settings(), list_name, again=again, dry_run=dry_run, limit=limit)
    if failed:
        raise typer.Exit(EXIT_PARTIAL)


@subscribers_app.command("import")
def subscribers_import(
    path: Annotated[Path, typer.Argument(help="A CSV file with a header row.")],
    list_name: ListOption = "daily",
) -> None:
    """Import subscribers from CSV: columns email (required), name, sections,
    timezone, locale, consent_source, consent_at. Every address is validated
    (no DNS) and normalised; duplicates merge (the later line wins); an address
    that unsubscribed, bounced, complained or was forgotten is never made active
    again. On a double opt-in list a row with consent_at is active, one without
    waits as pending for its confirmation. Bad lines are reported with their
    number; the rest is imported; the exit status is 3 when any was rejected.

    Example: digest subscribers import readers.csv
    """
    with errors():
        report = book(settings(), list_name).import_csv(path)
    for problem in report.problems:
        err.print(f"[red]rejected[/] {problem}", highlight=False)
    for warning in report.warnings[:20]:
        err.print(f"[yellow]note[/] {warning}", highlight=False)
    console.print(
        f"added {report.added}, updated {report.updated}, duplicates merged {report.merged}, "
        f"kept unsubscribed/bounced/forgotten {report.kept_closed}, rejected {report.rejected}"
    )
    with errors():
        cfg = settings()
        days = get_list(cfg.subscribers_dir, list_name).confirm_days
        waiting = len(book(cfg, list_name).to_invite(days, again=False))
    if waiting:
        console.print(
            f"{waiting} pending subscriber(s) have no confirmation mail yet: "
            "send it with `digest subscribers invite`"
        )
    if report.rejected:
        raise typer.Exit(EXIT_PARTIAL)


@subscribers_app.command("add")
def subscribers_add(
    email_: Annotated[str, typer.Argument(metavar="EMAIL")],
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    sections: Annotated[str | None, typer.Option(help="Section slugs, comma-separated.")] = None,
    consent_source: Annotated[
        str | None, typer.Option(help="Where consent was given (form, event…).")
    ] = None,
    consent_at: Annotated[
        str | None,
        typer.Option(help="When consent was given (ISO 8601 with offset): skips double opt-in."),
    ] = None,
    mail_format: Annotated[
        str | None, typer.Option("--format", help="html (default) or text.")
    ] = None,
    invite: Annotated[
        bool,
        typer.Option(help="On a double opt-in list, send the confirmation mail at once."),
    ] = True,
    list_name: ListOption = "daily",
) -> None:
    """Add one subscriber (or update their name, sections and format). On a
    double opt-in list a new address is pending and gets its confirmation mail
    now (--no-invite: later, with `digest subscribers invite`); --consent-at
    records consent given elsewhere and makes it active at once.

    Example: digest subscribers add ivan@example.ru --name "Иван" --sections армия,флот
    """
    with errors():
        cfg = settings()
        row = Row.parse(
            {
                "email": email_,
                "name": name,
                "sections": sections,
                "consent_source": consent_source,
                "consent_at": consent_at,
                "format": mail_format,
            }
        )
        outcome = book(cfg, list_name).add(row)
    if outcome == "closed":
        fail(f"{row.email} unsubscribed, bounced or asked to be forgotten: not added")
    status = (book(cfg, list_name).show(row.email) or {}).get("status")
    console.print(f"{row.email}: {outcome}, {status}")
    if status == "pending" and invite and not cfg.relays:
        err.print(
            "[yellow]note[/] DIGEST_SMTP_URL is not set: send the confirmation mail later "
            "with `digest subscribers invite`"
        )
    elif status == "pending" and invite:
        with errors():
            failed = send_invitations(
                cfg, list_name, again=False, dry_run=False, limit=None, only=row.email
            )
        if failed:
            raise typer.Exit(1)


@subscribers_app.command("remove")
def subscribers_remove(email_: Annotated[str, typer.Argument(metavar="EMAIL")]) -> None:
    """Unsubscribe an address (the record stays, so it is never mailed again).

    Example: digest subscribers remove ivan@example.ru
    """
    with errors():
        done = book(settings(), "daily").remove(email_)
    console.print(f"{email_}: {'unsubscribed' if done else 'not an active subscriber'}")


@subscribers_app.command("show")
def subscribers_show(
    email_: Annotated[str, typer.Argument(metavar="EMAIL")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """One subscriber: status, sections, consent.

    Example: digest subscribers show ivan@example.ru --json
    """
    with errors():
        found = book(settings(), "daily").show(email_)
    if found is None:
        fail(f"no subscriber {email_}")
    if as_json:
        console.print_json(json.dumps(found, ensure_ascii=False))
        return
    for key, value in found.items():
        console.print(f"{key}: {value if value is not None else ''}", highlight=False)


@subscribers_app.command("list")
def subscribers_list(
    status_: Annotated[
        SubscriberStatus | None, typer.Option("--status", help="Only this status.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Every subscriber (or those of one status).

    Example: digest subscribers list --status active --json
    """
    with errors():
        rows = list(book(settings(), "daily").listing(status_))
    if as_json:
        console.print_json(json.dumps(rows, ensure_ascii=False))
        return
    table = Table("email", "name", "status", "sections")
    for r in rows:
        table.add_row(r["email"], r["name"] or "", r["status"], r["sections"] or "all")
    console.print(table)


@subscribers_app.command("export")
def subscribers_export(
    email_: Annotated[str, typer.Argument(metavar="EMAIL")],
    out: Annotated[Path | None, typer.Option(help="Write the CSV here (default: stdout).")] = None,
) -> None:
    """Everything held about one subscriber as CSV: the record, every delivery,
    every event (152-FZ and GDPR access requests).

    Example: digest subscribers export ivan@example.ru --out ivan.csv
    """
    with errors():
        rows = book(settings(), "daily").export(email_)
    if not rows:
        fail(f"no subscriber {email_}")
    if out is not None and str(out) == "-":
        out = None  # "-" is standard output, as for `preview`
    try:
        handle = open_private(out) if out else sys.stdout
    except OSError as exc:
        fail(f"{out}: {exc.strerror}")
    write_export(rows, handle)
    if out:
        handle.close()
        console.print(f"{len(rows)} rows about {email_}: {out}")


@subscribers_app.command("forget")
def subscribers_forget(email_: Annotated[str, typer.Argument(metavar="EMAIL")]) -> None:
    """Erase a subscriber's personal data (record, deliveries) and keep only a
    hash of the address, so it is never mailed or imported again.

    Example: digest subscribers forget ivan@example.ru
    """
    with errors():
        erased = book(settings(), "daily").forget(email_)
    console.print(f"{email_}: {'erased' if erased else 'not found'}; its hash is kept to refuse it")


# -- dkim -------------------------------------------------------------------------


class KeyKind(StrEnum):
    rsa = "rsa"
    ed25519 = "ed25519"


@dkim_app.command("keygen")
def dkim_keygen(
    selector: Annotated[str, typer.Option(help="The selector (s=), e.g. digest2026.")],
    domain: Annotated[str, typer.Option(help="The signing domain (d=), e.g. vpk.ru.")],
    out: Annotated[Path, typer.Option(help="Where to write the private key (mode 0600).")],
    key_type: Annotated[
        KeyKind, typer.Option("--type", help="rsa (2048 bits) or ed25519 (RFC 8463).")
    ] = KeyKind.rsa,
) -> None:
    """Make a DKIM key and print the DNS TXT record to publish at
    SELECTOR._domainkey.DOMAIN. An RSA key goes in DIGEST_DKIM_KEY_FILE (with
    DIGEST_DKIM_SELECTOR and DIGEST_DKIM_DOMAIN); an Ed25519 one, for a second
    signature beside it, in DIGEST_DKIM_ED25519_KEY_FILE (with
    DIGEST_DKIM_ED25519_SELECTOR). An existing file is never overwritten.

    Example: digest dkim keygen --selector digest2026 --domain vpk.ru --out /etc/digest/dkim.pem
    """
    if out.exists():
        fail(f"{out} exists; choose another path (a key in use must not be replaced silently)")
    try:
        record = keygen(out, selector, domain, kind=key_type.value)
    except OSError as exc:
        fail(f"{out}: {exc.strerror}")
    console.print(f"private key: {out} (keep it secret; mode 0600)")
    console.print(f"publish this TXT record at {selector}._domainkey.{domain}:")
    console.print(record, highlight=False, soft_wrap=True)


# -- web ----------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Run the web app (Starlette under uvicorn): unsubscribe (/u/TOKEN, RFC 8058
    one-click), preferences (/p/TOKEN), double opt-in (/confirm/TOKEN), tracked
    clicks and opens when a list asks for them, the public archive (/archive/)
    and the editors' desk (/desk/, accounts from DIGEST_EDITORS or
    DIGEST_EDITOR_PASSWORD). Links in mail start with DIGEST_BASE_URL, so put
    this behind that URL (https).

    Example: digest serve --host 127.0.0.1 --port 8000
    """
    import uvicorn

    from digest import server
    from digest.web import WebContext, create_app

    with errors():
        cfg = settings()
        pipe = pipeline(cfg)
        cfg.signing_key()  # a missing key is an error now, not on the first request
        web = create_app(WebContext(cfg, pipe.factory))
        if not cfg.editor_accounts():
            log.warning("the editors' desk is closed: set DIGEST_EDITORS or DIGEST_EDITOR_PASSWORD")
    uvicorn.Server(server.config(web, host, port, cfg.log_level)).run()


@app.command()
def inbound(
    path: Annotated[Path, typer.Argument(help="A Maildir folder or an mbox file.")],
) -> None:
    """Process mailto unsubscribes (List-Unsubscribe: <mailto:unsubscribe+TOKEN@…>)
    from a Maildir or mbox: each signed token unsubscribes its subscriber; the
    message moves to .processed. Anything else is counted and left in place
    (exit status 3).

    Example: digest inbound /var/mail/unsubscribe/Maildir
    """
    with errors():
        cfg = settings()
        pipe = pipeline(cfg)
        signers = [LinkSigner(cfg.signing_key(), key) for key in load_lists(cfg.subscribers_dir)]
        report = process_unsubscribes(
            Source(path),
            signers,
            SubscriberBook(pipe.factory, double_opt_in=True),
            cfg.sender.domain,
        )
    for problem in report.problems[:20]:
        err.print(f"[yellow]left in place[/] {problem}", highlight=False)
    summary = ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items())) or "nothing"
    console.print(f"{path}: {report.messages} messages: {summary}")
    if report.counts.get("unreadable"):
        raise typer.Exit(EXIT_PARTIAL)


# -- bounces ----------------------------------------------------------------------


@app.command()
def bounces(
    path: Annotated[Path, typer.Argument(help="A Maildir folder or an mbox file.")],
) -> None:
    """Read returned mail: DSNs (RFC 3464), complaints (ARF) and other bounce
    formats. A report reaches a subscriber only through its VERP return path or a
    Message-ID of ours, never through the recipient it names. A hard bounce or an
    abuse complaint suppresses the address; the delivery records the code and
    reply. Applied Maildir messages move to its .processed folder; those that
    cannot be understood or attributed stay, marked seen (not read again). Exit
    status 3 when some were.

    Example: digest bounces /var/mail/bounces/Maildir
    """
    with errors():
        cfg = settings()
        pipe = pipeline(cfg)
        reader = BounceReader(LinkSigner(cfg.signing_key(), "verp"), cfg.return_path)
        policy = SoftBouncePolicy(cfg.soft_bounce_limit, cfg.soft_bounce_days)
        report: ReturnsReport = process_returns(pipe.factory, Source(path), reader, policy, utcnow)
    for problem in report.problems[:20]:
        err.print(f"[yellow]left in place[/] {problem}", highlight=False)
    summary = ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items())) or "nothing"
    console.print(f"{path}: {report.messages} messages: {summary}")
    if report.problems:
        raise typer.Exit(EXIT_PARTIAL)


def status_of(pipe: Pipeline, edition: Edition) -> EditionReport:
    with pipe.factory() as session:
        current = session.get(Edition, edition.id)
        assert current is not None
        return edition_report(session, current)


@app.command()
def status(
    edition_ref: Annotated[
        str | None, typer.Argument(metavar="EDITION", help="An id or schedule/date.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Delivery status: one edition in detail, or the recent editions.

    Example: digest status daily/2026-11-25 --json
    """
    with errors():
        cfg = settings()
        pipe = pipeline(cfg)
        with pipe.factory() as session:
            if edition_ref is None:
                reports = [edition_report(session, e) for e in queries.recent_editions(session)]
            else:
                found = queries.find_edition(session, checked_ref(edition_ref))
                if found is None:
                    fail(f"no edition {edition_ref!r} (give an id or schedule/date)")
                reports = [edition_report(session, found)]
    if as_json:
        data: Any = [r.as_json() for r in reports] if edition_ref is None else reports[0].as_json()
        console.print_json(json.dumps(data, ensure_ascii=False))
        return
    if edition_ref is None:
        print_editions(reports)
    else:
        print_report(reports[0])


def print_editions(reports: list[EditionReport]) -> None:
    if not reports:
        console.print("no editions yet")
        return
    table = Table("id", "edition", "status", "subject", "deliveries", "sent", "failed", "pending")
    for r in reports:
        table.add_row(
            str(r.id),
            r.label,
            r.status,
            r.subject,
            str(r.total),
            str(r.counts.get("sent", 0)),
            str(r.counts.get("failed", 0) + r.counts.get("bounced", 0)),
            str(r.pending),
        )
    console.print(table)


def duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def print_report(r: EditionReport) -> None:
    console.print(f"[bold]{r.label}[/] · {r.status} · «{r.subject}»", highlight=False)
    table = Table()
    table.add_column("state")
    table.add_column("deliveries", justify="right")
    for state_name, n in r.counts.items():
        if n:
            table.add_row(state_name, str(n))
    table.add_row("total", str(r.total), style="bold")
    console.print(table)
    rate = f"{r.rate:.0f} messages/s" if r.rate else "n/a"
    eta = r.eta_seconds
    eta_text = "n/a" if eta is None else "done" if not r.pending else duration(eta)
    paused = " · PAUSED" if r.paused else ""
    console.print(
        f"variants: {r.variants}; rate: {rate}; pending: {r.pending}; ETA: {eta_text}{paused}"
    )
    if r.next_retry is not None:
        when = r.next_retry.astimezone(ZoneInfo("Europe/Moscow"))
        console.print(f"next retry: {when:%Y-%m-%d %H:%M:%S} Moscow time")
    for f in r.failures:
        reason = " ".join(str(p) for p in (f["code"], f["enhanced"], f["reply"]) if p)
        console.print(f"  {f['count']} × {f['status']} {reason}", highlight=False)
    if r.more_failures:
        console.print(
            f"  … and {r.more_failures} more reason(s), {r.more_failures_count} message(s)",
            highlight=False,
        )
    e = r.engagement
    if e.get("opens") or e.get("clicks"):
        readers = (
            f" by {e['readers_opened']} / {e['readers_clicked']} readers"
            if e.get("readers_opened") or e.get("readers_clicked")
            else ""
        )
        console.print(
            f"opens ≈ {e['opens']} (approximate: mail clients fetch or block images), "
            f"clicks {e['clicks']}{readers}"
        )


# -- schedules and the scheduler ---------------------------------------------------

MOSCOW = ZoneInfo("Europe/Moscow")


def schedule_rows(pipe: Pipeline, count: int) -> list[dict[str, Any]]:
    schedules = load_schedules(pipe.settings.schedules_dir, pipe.settings.timezone)
    runner = Runner(pipe)
    now = utcnow()
    rows = []
    for name, schedule in schedules.items():
        with pipe.factory() as session:
            last = queries.last_edition(session, name)
        nxt = [
            runner.send_time(schedule, schedule.today(t)) or t
            for t in schedule.next_fires(now, count)
        ]
        rows.append(
            {
                "schedule": name,
                "title": schedule.title,
                "cron": schedule.cron,
                "timezone": schedule.timezone,
                "local_time": schedule.send.local_time,
                "approval": schedule.send.approval,
                "grace_minutes": schedule.send.grace_minutes,
                "next": [
                    {"moscow": t.astimezone(MOSCOW).isoformat(), "utc": t.isoformat()} for t in nxt
                ],
                "last_edition": last.label if last else None,
                "last_status": str(last.status) if last else None,
            }
        )
    return rows


@app.command("schedules")
def schedules_cmd(
    count: Annotated[int, typer.Option(min=1, max=50, help="Next fire times to show.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Each schedule file: when it fires next (Moscow and UTC), its last edition
    and that edition's state. A malformed file is an error naming the file, the
    key and the reason.

    Example: digest schedules --json
    """
    with errors():
        pipe = pipeline(settings())
        rows = schedule_rows(pipe, count)
    if as_json:
        console.print_json(json.dumps(rows, ensure_ascii=False))
        return
    table = Table("schedule", "cron", "next (Moscow)", "next (UTC)", "last edition", "state")
    for r in rows:
        first = r["next"][0] if r["next"] else {"moscow": "-", "utc": "-"}
        cron = r["cron"] + (" (reader's time)" if r["local_time"] else "")
        table.add_row(
            r["schedule"],
            cron,
            first["moscow"][:16].replace("T", " "),
            first["utc"][:16].replace("T", " "),
            r["last_edition"] or "-",
            r["last_status"] or "-",
        )
    console.print(table)


def print_fire(report: FireReport, as_json: bool, step: str = "") -> None:
    if as_json:
        console.print_json(json.dumps(report.as_json(), ensure_ascii=False))
        return
    what = f"{report.schedule}/{report.edition_date}" if report.edition_date else report.schedule
    extra = f" · {report.deliveries} deliveries" if report.outcome is Fired.QUEUED else ""
    note = f" — {report.note}" if report.note else ""
    console.print(f"{step}{what}: {report.outcome}{extra}{note}", highlight=False)


@app.command()
def run(
    schedule_name: ScheduleArg,
    on: DateOption = None,
    enqueue_only: Annotated[
        bool, typer.Option("--enqueue-only", help="Queue the deliveries; workers send them.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Do by hand what the scheduler does at send time, through the same code.

    Without --date: the latest send time of the schedule, with its grace rule and
    approval hold. With --date: that edition, even if it was missed or is not
    approved. Then it sends (in this process, with a progress bar) unless
    --enqueue-only. Exit status 1 when the edition was missed or held.

    Example: digest run daily --date 2026-11-25
    """
    with errors():
        cfg = settings()
        pipe = pipeline(cfg)
        day = date.fromisoformat(on) if on else None
        report = Runner(pipe).fire(schedule_name, edition_date=day)
        print_fire(report, as_json)
        if report.outcome in (Fired.MISSED, Fired.HELD):
            raise typer.Exit(1)
        if report.outcome is not Fired.QUEUED or enqueue_only or report.edition_id is None:
            return
        if not cfg.relays:
            fail("DIGEST_SMTP_URL is not set: queued; `digest worker` sends once it is")
        schedule = pipe.schedule(schedule_name)
        edition = find(pipe, str(report.edition_id))
        result = deliver(pipe, schedule, edition, wait=not schedule.send.local_time)
        explain_stop(edition, result)
        final = status_of(pipe, edition)
    if not as_json:
        print_report(final)
    finish_exit(final)


@app.command()
def editions(
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """The editions, newest first, with their state and delivery counts.

    Example: digest editions --json
    """
    with errors():
        pipe = pipeline(settings())
        with pipe.factory() as session:
            reports = [edition_report(session, e) for e in queries.recent_editions(session, limit)]
    if as_json:
        console.print_json(json.dumps([r.as_json() for r in reports], ensure_ascii=False))
    else:
        print_editions(reports)


@app.command()
def approve(
    edition_ref: EditionArg,
    undo: Annotated[bool, typer.Option("--undo", help="Take the approval back.")] = False,
) -> None:
    """Approve a draft (or, with --undo, take it back until sending starts).

    Example: digest approve weekly/2026-11-30
    """
    with errors():
        pipe = pipeline(settings())
        edition = find(pipe, edition_ref)
        status_now = pipe.approve(edition, approved=not undo)
    console.print(f"{edition.label}: {status_now}")


@app.command()
def scheduler(
    once: Annotated[
        bool, typer.Option("--once", help="Catch up on every schedule once, then exit.")
    ] = False,
    enqueue_only: Annotated[
        bool,
        typer.Option("--enqueue-only", help="Only queue deliveries; `digest worker`s send them."),
    ] = False,
) -> None:
    """Run the schedules: APScheduler with its jobs in the database, one send job
    and one prepare job per schedules/*.toml. At start it catches up: an edition
    whose send time passed less than the file's grace_minutes ago still goes,
    once; an older one is marked missed and not sent. Unless --enqueue-only the
    process also sends what is due, waves at readers' local times included.
    SIGTERM or Ctrl-C stop it cleanly. A malformed schedule file stops it at start.

    Example: digest scheduler --enqueue-only
    """
    with errors():
        cfg = settings()
        pipe = pipeline(cfg)
        schedules = load_schedules(cfg.schedules_dir, cfg.timezone)
        if once:
            for report in catch_up(pipe, schedules):
                print_fire(report, False, "send ")
            for name in schedules:
                print_fire(Runner(pipe).prepare(name), False, "prepare ")
            return
        if not enqueue_only and not cfg.relays:
            fail("DIGEST_SMTP_URL is not set (or run with --enqueue-only beside workers)")
        name = worker_name()
        log.info("scheduler %s started: %s", name, ", ".join(schedules))
        run_async(schedule_loop(pipe, name, enqueue_only))


async def schedule_loop(pipe: Pipeline, name: str, enqueue_only: bool) -> None:
    stopper = Stopper()

    async def send(until: asyncio.Event) -> None:
        await pipe.work(
            connector(pipe.settings), worker=name, once=False, stop=until, on_run=stopper.on_run
        )

    with stop_on_signals(stopper.on_signal):
        await run_scheduler(pipe, stopper.stop, send=None if enqueue_only else send)


@app.command()
def doctor(
    no_smtp: Annotated[bool, typer.Option("--no-smtp", help="Skip the relay check.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Check everything a send needs and print what is wrong, one line each:
    configuration, database and migrations, lists, schedules, templates (they
    render), every SMTP relay (EHLO, STARTTLS and AUTH as its URL asks) and the
    DKIM key (readable, signs, verifies). Exit status 1 when any check failed.

    Example: digest doctor
    """
    try:
        cfg = settings()
    except DigestError as exc:
        checks = [Check("config", False, str(exc))]
    else:
        checks = run_checks(cfg, smtp=not no_smtp)
    if as_json:
        console.print_json(json.dumps([c.as_json() for c in checks], ensure_ascii=False))
    else:
        for c in checks:
            mark = (
                "[green]ok[/]  "
                if c.ok and not c.warning
                else "[yellow]warn[/]"
                if c.ok
                else "[red]FAIL[/]"
            )
            console.print(f"{mark} {c.name}: {c.detail}", highlight=False)
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


# -- demo -------------------------------------------------------------------------


@app.command("demo")
def demo_cmd(
    subscribers: Annotated[int, typer.Option(min=0, help="How many demo subscribers.")] = 1000,
    on: DateOption = None,
    no_send: Annotated[
        bool, typer.Option("--no-send", help="Load the data and subscribers, then stop.")
    ] = False,
) -> None:
    """Set everything up and send today's daily digest to the demo subscribers.

    Creates the database, loads the seed-based articles and comments, adds N
    subscribers, and sends the edition through a local SMTP capture server
    (each message saved in var/outbox/) — or through DIGEST_SMTP_URL when it is
    set. Running it again does not send the same edition twice.

    Example: digest demo --subscribers 1000
    """
    with errors():
        cfg = settings()
        made = ensure_demo_key(cfg)
        pipe = pipeline(cfg, upgrade=True)
        schedule = pipe.schedule("daily")
        on_date = parse_date(on, schedule)
        data = demo.build(schedule, on_date)
        report = demo.load(pipe.factory, data)
        total, added = demo.add_subscribers(pipe.factory, subscribers, now=utcnow())
        console.print(f"demo data for {on_date} (window {schedule.describe_window(on_date)}):")
        print_ingest(report)
        console.print(f"subscribers: {total} demo readers ({added} new)")
        if made:
            console.print(f"made a signing key for the demo: {cfg.secret_key_file}")
        if no_send:
            return
        edition = build_or_say(pipe, schedule, on_date)
        page = cfg.var_dir / "preview" / f"{edition.schedule}-{edition.edition_date}.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_bytes(decoded(pipe.preview(schedule, edition).data, Format.html))
        report_ = demo_send(pipe, schedule, edition)
    print_report(report_)
    console.print(f"preview: {page.resolve()}")
    finish_exit(report_)


def ensure_demo_key(cfg: Settings) -> bool:
    if cfg.secret_key is not None or cfg.secret_key_file.is_file():
        return False
    key = secrets.token_urlsafe(32) + "\n"
    write_private(cfg.secret_key_file, key.encode("ascii"), exclusive=True)
    return True


def demo_send(pipe: Pipeline, schedule: Schedule, edition: Edition) -> EditionReport:
    cfg = pipe.settings
    if cfg.relays:
        console.print(f"sending through {', '.join(str(r) for r in cfg.relays)}")
        deliver(pipe, schedule, edition)
        return status_of(pipe, edition)
    outbox = cfg.var_dir / "outbox"
    with CaptureServer(CaptureHandler(outbox)) as server:
        console.print(
            f"sending through the capture server at {server.url}; messages go to {outbox}/"
        )
        with_capture = Pipeline(
            cfg.model_copy(update={"smtp_url": server.url}), pipe.factory, pipe.clock
        )
        deliver(with_capture, schedule, edition)
    console.print(f"the capture server received {len(server.messages)} messages in this run")
    return status_of(pipe, edition)


def main() -> None:
    app()
