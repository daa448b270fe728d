"""`digest preview`, `status`, `editions` (and `editions rebuild`), `approve`, `special`."""

from __future__ import annotations

import getpass
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.markup import escape
from rich.table import Table

from digest.cli.app import (
    EXIT_PARTIAL,
    DateOption,
    EditionArg,
    ScheduleArg,
    app,
    build_or_say,
    checked_ref,
    console,
    errors,
    fail,
    find,
    parse_date,
    reports,
    settings,
    wire,
)
from digest.files import write_private

if TYPE_CHECKING:
    from digest.models import Edition
    from digest.send import RunResult
    from digest.track.reports import EditionReport
    from digest.wiring import Services


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
        services = wire(cfg)
        schedule = services.schedule(schedule_name)
        edition = build_or_say(services, schedule, parse_date(on, schedule))
        message = services.previews.preview(schedule, edition, subscriber)
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
    import email.policy  # here: every command loads this module, `digest status` too

    parsed = email.message_from_bytes(data, policy=email.policy.default)
    part = parsed.get_body(("html",) if fmt is Format.html else ("plain",))
    assert part is not None
    return str(part.get_content()).encode("utf-8")


def finish_exit(report: EditionReport, run: RunResult | None = None) -> None:
    """Exit 3 when messages did not make it: this run's failures and bounces (an
    earlier run's are not news: a re-run of a finished edition exits 0), and what
    is still deferred."""
    if run is not None:
        bad = run.failed + run.bounced
    else:
        bad = report.counts.get("failed", 0) + report.counts.get("bounced", 0)
    if bad + report.counts.get("deferred", 0):
        raise typer.Exit(EXIT_PARTIAL)


def status_of(services: Services, edition: Edition) -> EditionReport:
    report = services.reports.of(str(edition.id))
    assert report is not None  # the edition this command just sent
    return report


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
        book = reports(cfg)
        if edition_ref is None:
            found = book.recent()
        else:
            one = book.of(checked_ref(edition_ref))
            if one is None:
                fail(f"no edition {edition_ref!r} (give an id or schedule/date)")
            found = [one]
    if as_json:
        data: Any = [r.as_json() for r in found] if edition_ref is None else found[0].as_json()
        console.print_json(json.dumps(data, ensure_ascii=False))
        return
    if edition_ref is None:
        print_editions(found)
    else:
        print_report(found[0], cfg.zone)


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
            escape(r.subject),
            str(r.total),
            str(r.counts.get("sent", 0)),
            str(r.counts.get("failed", 0) + r.counts.get("bounced", 0)),
            str(r.pending),
        )
    console.print(table)


def print_report(r: EditionReport, zone: ZoneInfo) -> None:
    # A subject, a reply, a reason: text from outside is never read as Rich markup
    # (issue 25: "[/policy]" in a reply ended `digest status` with a MarkupError).
    from digest.track.reports import progress_words

    console.print(f"[bold]{r.label}[/] · {r.status} · «{escape(r.subject)}»", highlight=False)
    table = Table()
    table.add_column("state")
    table.add_column("deliveries", justify="right")
    for state_name, n in r.counts.items():
        if n:
            table.add_row(state_name, str(n))
    table.add_row("total", str(r.total), style="bold")
    console.print(table)
    rate, eta_text = progress_words(r)
    paused = " · PAUSED" if r.paused else ""
    paused += " (articles corrected)" if r.paused and r.pause_reason == "correction" else ""
    console.print(
        f"variants: {r.variants}; rate: {rate}; pending: {r.pending}; ETA: {eta_text}{paused}"
    )
    for what, when in (("next wave", r.next_wave), ("next retry", r.next_retry)):
        if when is not None:
            local = when.astimezone(zone)
            console.print(f"{what}: {local:%Y-%m-%d %H:%M:%S} ({zone.key})")
    print_holds(r, zone)
    if r.ambiguous:
        console.print(
            f"ambiguous: {r.ambiguous} (the line dropped after the end of data: retried with "
            "the same Message-ID, they may have arrived twice)"
        )
    if r.corrections:
        console.print(
            f"[bold]changed since it was rendered[/] (`digest editions rebuild {r.label}` "
            "sends the corrected text):"
        )
        for c in r.corrections:
            console.print(
                f"  {c.at.astimezone(zone):%H:%M} {c.describe()}", highlight=False, markup=False
            )
    for f in r.failures:
        reason = " ".join(str(p) for p in (f["code"], f["enhanced"], f["reply"]) if p)
        console.print(f"  {f['count']} × {f['status']} {reason}", highlight=False, markup=False)
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


def print_holds(r: EditionReport, zone: ZoneInfo) -> None:
    """Each held domain: since and until when, what waits, the reply that decided it."""
    for h in r.holds:
        since = f"since {h['since'].astimezone(zone):%H:%M:%S} " if h["since"] else ""
        console.print(
            f"held: {h['domain']} {since}until {h['until'].astimezone(zone):%H:%M:%S} "
            f"({zone.key}), {h['waiting']} waiting: {h['reason']}",
            highlight=False,
            markup=False,
        )


editions_app = typer.Typer(
    invoke_without_command=True,
    rich_markup_mode=None,
)
app.add_typer(editions_app, name="editions")


@editions_app.callback()
def editions(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """The editions, newest first, with their state and delivery counts; `digest
    editions rebuild EDITION` takes in the site's corrections.

    Example: digest editions --json
    """
    if ctx.invoked_subcommand is not None:
        return
    with errors():
        found = reports(settings()).recent(limit)
    if as_json:
        console.print_json(json.dumps([r.as_json() for r in found], ensure_ascii=False))
    else:
        print_editions(found)


@editions_app.command()
def rebuild(edition_ref: EditionArg) -> None:
    """Render an edition again from its articles as they are now (the site corrected
    a headline or withdrew an article). Messages not yet sent take the new text
    with their Message-IDs unchanged; sent ones stay recorded with the old. A send
    paused for the correction goes on (the workers, or `digest resume`, send it).

    Example: digest editions rebuild daily/2026-11-25
    """
    with errors():
        services = wire(settings())
        edition = find(services, edition_ref)
        done = services.corrections.rebuild(edition, operator())
    for revision in done.revisions:
        console.print(f"  {revision.describe()}", highlight=False, markup=False)
    console.print(
        f"{done.label} rebuilt: {done.variants} variant(s), {done.repointed} message(s) "
        f"not yet sent take the new text" + ("; the paused send may go on" if done.resumed else ""),
        highlight=False,
    )


def operator() -> str:
    """Who ops are in the change log: the login that ran the command."""
    try:
        return f"cli:{getpass.getuser()}"[:100]
    except (KeyError, OSError):
        return "cli"


@app.command()
def approve(
    edition_ref: EditionArg,
    undo: Annotated[bool, typer.Option("--undo", help="Take the approval back.")] = False,
) -> None:
    """Approve a draft (or, with --undo, take it back until sending starts).

    Example: digest approve weekly/2026-11-30
    """
    with errors():
        services = wire(settings())
        edition = find(services, edition_ref)
        status_now = services.lifecycle.approve(edition, approved=not undo)
    console.print(f"{edition.label}: {status_now}")


@app.command()
def special(
    schedule_name: Annotated[
        str, typer.Argument(metavar="SCHEDULE", help="Its list, look and zone: a schedules/ file.")
    ] = "daily",
    article: Annotated[
        list[int] | None,
        typer.Option("--article", "-a", help="An article id; the first one leads. Repeat."),
    ] = None,
    subject: Annotated[str, typer.Option(help="The letter's subject.")] = "",
    intro: Annotated[str, typer.Option(help="A line above the articles.")] = "",
    section: Annotated[
        str | None, typer.Option(help="Only the readers of this section (default: every reader).")
    ] = None,
) -> None:
    """Make a special edition from chosen articles (breaking news): a draft for
    every reader of the schedule's list, whatever their frequency, or only a
    section's. It leaves only approved, however its schedule is set: look at it
    (`digest preview`, the desk), `digest approve` it, then `digest send` it by
    its label, e.g. daily/2026-12-03/special-1.

    Example: digest special daily -a 812 -a 815 --subject "Срочно: испытания завершены"
    """
    from digest.edition.special import SpecialOrder

    with errors():
        services = wire(settings())
        order = SpecialOrder(schedule_name, tuple(article or ()), subject, intro, section)
        edition = services.specials.make(order, getpass.getuser())
    who = f"readers of section {section}" if section else "every reader of the list"
    console.print(
        f"{edition.label}: draft of «{edition.custom_subject}» for {who}, "
        f"{len(edition.items)} article(s); `digest approve {edition.label}`, then "
        f"`digest send {edition.label}`",
        highlight=False,
    )
