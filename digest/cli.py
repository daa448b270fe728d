"""The ``digest`` command: thin wiring of the stages, Typer + Rich.

Exit codes: 0 done; 1 error (bad setting, unreachable relay, …); 2 wrong
usage; 3 done, but some records or messages did not make it (rejected
lines, failed or deferred deliveries).
"""

from __future__ import annotations

import email
import email.policy
import json
import logging
import secrets
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

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
from digest.capture import CaptureHandler, CaptureServer
from digest.config import Settings, SmtpTarget, load_settings, parse_smtp_url
from digest.edition import Pipeline
from digest.errors import DigestError, EmptyEdition, RelayUnavailable
from digest.ingest import Ingester, IngestReport, read_source
from digest.models import DeliveryStatus, Edition, utcnow
from digest.schedule import Schedule
from digest.send import RunResult, SmtpConnection, probe, run_async, worker_name
from digest.track import EditionReport, Outcome, edition_report

EXIT_PARTIAL = 3
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
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)
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
) -> None:
    """Build the edition (if needed) and send it to every active subscriber.

    Each subscriber gets one delivery row before anything is sent; running the
    command again sends only what is not sent yet. The relay is DIGEST_SMTP_URL
    with DIGEST_SMTP_CONNECTIONS connections. An empty window sends nothing.

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
        target = cfg.smtp
        if target is None:
            fail("DIGEST_SMTP_URL is not set: say where to send (smtp://host:port)")
        if test_to:
            do_test_send(pipe, schedule, edition, target, test_to)
            return
        deliver(pipe, schedule, edition, target, limit=limit)
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


def connector(cfg: Settings, target: SmtpTarget) -> Callable[[], SmtpConnection]:
    """New connections to the relay, all with the settings' timeout and TLS context."""
    tls = cfg.tls_context()
    return lambda: SmtpConnection(target, cfg.smtp_timeout, tls)


def do_test_send(
    pipe: Pipeline, schedule: Schedule, edition: Edition, target: SmtpTarget, to: str
) -> None:
    message = pipe.preview(schedule, edition, to, subject_prefix="[Тест] ")

    async def one() -> tuple[int, str]:
        connection = connector(pipe.settings, target)()
        try:
            return await connection.send(message)
        finally:
            await connection.close()

    code, reply = run_async(one())
    console.print(f"test copy of {edition.label} sent to {message.envelope_to}: {code} {reply}")


class RichProgress:
    """Sent/failed/deferred counts and the rate on a Rich progress bar."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self.progress = progress
        self.task = task
        self.counts = {"sent": 0, "failed": 0, "deferred": 0}

    def advance(self, outcome: Outcome) -> None:
        key = outcome.status.value if outcome.status.value in self.counts else "failed"
        self.counts[key] += 1
        speed = (
            self.progress.tasks[self.task].speed if self.task < len(self.progress.tasks) else None
        )
        rate = f"{speed:,.0f} msg/s" if speed else ""
        c = self.counts
        self.progress.update(
            self.task,
            advance=1,
            rate=rate,
            sent=c["sent"],
            failed=c["failed"],
            deferred=c["deferred"],
        )


def deliver(
    pipe: Pipeline,
    schedule: Schedule,
    edition: Edition,
    target: SmtpTarget,
    *,
    limit: int | None = None,
) -> RunResult:
    """Enqueue and send one pass, with a progress bar. Infrastructure faults raise."""
    connect = connector(pipe.settings, target)
    run_async(probe(connect()))
    added = pipe.start_sending(schedule, edition)
    with pipe.factory() as session:
        counts = queries.delivery_counts(session, edition.id)
    due = (
        counts.get(DeliveryStatus.QUEUED, 0)
        + counts.get(DeliveryStatus.DEFERRED, 0)
        + counts.get(DeliveryStatus.SENDING, 0)
    )
    total = min(due, limit) if limit else due
    log.info(
        "sending %s to %s: %d new deliveries, %d due",
        edition.label,
        target,
        added,
        due,
        extra={"edition": edition.id},
    )
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "sent {task.fields[sent]} · failed {task.fields[failed]}"
            " · deferred {task.fields[deferred]}"
        ),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=False, disable=state.log_json) as bar:
        task = bar.add_task(edition.label, total=total, sent=0, failed=0, deferred=0, rate="")
        run = pipe.send_run(
            schedule,
            edition,
            connect,
            worker=worker_name(),
            limit=limit,
            progress=RichProgress(bar, task),
        )
        try:
            result = run_async(run.run())
        except KeyboardInterrupt:
            # The run has written every outcome it had and handed back its claims.
            pipe.finish(edition)
            err.print(
                f"interrupted: sent {run.result.sent} this run; every outcome is recorded. "
                "Run the same command again to send the rest."
            )
            raise typer.Exit(130) from None
    pipe.finish(edition)
    if result.aborted:
        raise RelayUnavailable(
            f"{target}: {result.aborted}; sent {result.sent} before stopping — run the same "
            "command again to send the rest"
        )
    log.info(
        "pass over %s done: %d sent, %d deferred, %d failed, %d suppressed",
        edition.label,
        result.sent,
        result.deferred,
        result.failed,
        result.suppressed,
        extra={"edition": edition.id},
    )
    return result


def finish_exit(report: EditionReport) -> None:
    bad = (
        report.counts.get("failed", 0)
        + report.counts.get("deferred", 0)
        + report.counts.get("bounced", 0)
    )
    if bad:
        raise typer.Exit(EXIT_PARTIAL)


# -- status -----------------------------------------------------------------------


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
                found = queries.find_edition(session, edition_ref)
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
    console.print(f"variants: {r.variants}; rate: {rate}; pending: {r.pending}")
    for f in r.failures:
        console.print(
            f"  {f['count']} × {f['status']} {f['code'] or ''} {f['reply']}", highlight=False
        )


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
    cfg.secret_key_file.parent.mkdir(parents=True, exist_ok=True)
    cfg.secret_key_file.write_text(secrets.token_urlsafe(32) + "\n", encoding="utf-8")
    cfg.secret_key_file.chmod(0o600)
    return True


def demo_send(pipe: Pipeline, schedule: Schedule, edition: Edition) -> EditionReport:
    cfg = pipe.settings
    if cfg.smtp is not None:
        console.print(f"sending through {cfg.smtp}")
        deliver(pipe, schedule, edition, cfg.smtp)
        return status_of(pipe, edition)
    outbox = cfg.var_dir / "outbox"
    with CaptureServer(CaptureHandler(outbox)) as server:
        console.print(
            f"sending through the capture server at {server.url}; messages go to {outbox}/"
        )
        deliver(pipe, schedule, edition, parse_smtp_url(server.url))
    console.print(f"the capture server received {len(server.messages)} messages in this run")
    return status_of(pipe, edition)


def main() -> None:
    app()
