"""`digest schedules`, `run`, `scheduler`: the schedule files and their send times."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from digest.cli.app import (
    DateOption,
    ForceOption,
    MetricsHostOption,
    MetricsPortOption,
    ScheduleArg,
    YesOption,
    app,
    asked,
    console,
    errors,
    expose_metrics,
    find,
    parse_date,
    settings,
    wire,
)
from digest.cli.editions import finish_exit, print_report, status_of
from digest.cli.sending import deliver
from digest.kinds import utcnow

if TYPE_CHECKING:
    from digest.schedule.runner import FireReport

log = logging.getLogger("digest")


@app.command("schedules")
def schedules_cmd(
    count: Annotated[int, typer.Option(min=1, max=50, help="Next fire times to show.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Each schedule file: when it fires next (in its zone and UTC), its last edition
    and that edition's state. A malformed file is an error naming the file, the
    key and the reason.

    Example: digest schedules --json
    """
    with errors():
        services = wire(settings())
        rows = services.runner.overview(count, utcnow())
    if as_json:
        console.print_json(json.dumps(rows, ensure_ascii=False))
        return
    table = Table("schedule", "cron", "next (its zone)", "next (UTC)", "last edition", "state")
    for r in rows:
        first = r["next"][0] if r["next"] else {"local": "-", "utc": "-"}
        cron = r["cron"] + (" (reader's time)" if r["local_time"] else "")
        table.add_row(
            r["schedule"],
            cron,
            first["local"][:16].replace("T", " "),
            first["utc"][:16].replace("T", " "),
            r["last_edition"] or "-",
            r["last_status"] or "-",
        )
    console.print(table)


def print_fire(report: FireReport, as_json: bool, step: str = "") -> None:
    from digest.schedule.runner import Fired

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
    force: ForceOption = False,
    yes: YesOption = False,
) -> None:
    """Do by hand what the scheduler does at send time, through the same code.

    Without --date: the latest send time of the schedule, with its grace rule and
    approval hold. With --date: that edition, even if it was missed; a draft the
    schedule wants approved is held unless --force (logged). Then it sends (in
    this process, with a progress bar) unless --enqueue-only. Exit status 1 when
    the edition was missed or held.

    Example: digest run daily --date 2026-11-25
    """
    from digest.schedule.runner import Fired

    with errors():
        cfg = settings()
        services = wire(cfg)
        day = parse_date(on, services.schedule(schedule_name)) if on else None
        report = asked(
            yes,
            lambda ok: services.runner.fire(
                schedule_name, edition_date=day, force=force, old_ok=ok
            ),
        )
        print_fire(report, as_json)
        if report.outcome in (Fired.MISSED, Fired.HELD):
            raise typer.Exit(1)
        if report.outcome is not Fired.QUEUED or enqueue_only or report.edition_id is None:
            return
        cfg.require_relays("queued; `digest worker` sends once it is")
        schedule = services.schedule(schedule_name)
        edition = find(services, str(report.edition_id))
        result = deliver(  # says why it stopped; an old edition was asked about above
            services, schedule, edition, wait=not schedule.send.local_time, old_ok=True
        )
        final = status_of(services, edition)
    if not as_json:
        print_report(final, schedule.zone)
    finish_exit(final, result)


@app.command()
def scheduler(
    once: Annotated[
        bool,
        typer.Option(
            "--once", help="Catch up on every schedule, send what is due, then exit (for cron)."
        ),
    ] = False,
    enqueue_only: Annotated[
        bool,
        typer.Option("--enqueue-only", help="Only queue deliveries; `digest worker`s send them."),
    ] = False,
    metrics_port: MetricsPortOption = None,
    metrics_host: MetricsHostOption = "127.0.0.1",
) -> None:
    """Run the schedules: APScheduler with its jobs in the database, one send job
    and one prepare job per schedules/*.toml. At start it catches up: an edition
    whose send time passed less than the file's grace_minutes ago still goes,
    once; an older one is marked missed and not sent. Unless --enqueue-only the
    process also sends what is due, waves at readers' local times included.
    SIGTERM or Ctrl-C stop it cleanly. A malformed schedule file stops it at start.

    Example: digest scheduler --enqueue-only
    """
    from digest.schedule.files import load_schedules
    from digest.send import run_async, worker_name

    with errors():
        cfg = settings()
        services = wire(cfg)
        schedules = load_schedules(cfg.schedules_dir, cfg.timezone)
        if not enqueue_only:
            cfg.require_relays("say where to send (or run with --enqueue-only beside workers)")
        if once:
            for report in services.runner.catch_up(schedules):
                print_fire(report, False, "send ")
            for name in schedules:
                print_fire(services.runner.prepare(name), False, "prepare ")
            if not enqueue_only:
                # The cron line: what the send times queued goes now, as `worker --once`.
                services.sender.reclaim()
                work = run_async(services.sender.run_worker(worker_name(), once=True))
                console.print(work.summary())
            return
        name = worker_name()
        expose_metrics(services, metrics_port, metrics_host)
        log.info("scheduler %s started: %s", name, ", ".join(schedules))
        run_async(services.scheduling.run_until_signalled(name, enqueue_only))
