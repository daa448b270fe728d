"""`digest subscribers …`: import, add, remove, show, list, export, forget, invite, sunset."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from digest.cli.app import (
    EXIT_PARTIAL,
    console,
    err,
    errors,
    fail,
    progress,
    settings,
    subscribers_app,
    wire,
)
from digest.files import open_private
from digest.kinds import SubscriberStatus

if TYPE_CHECKING:
    from digest.audience.subscribers import SubscriberBook
    from digest.config import Settings

ListOption = Annotated[str, typer.Option("--list", help="A list of subscribers/lists.toml.")]


def book(cfg: Settings, list_name: str) -> SubscriberBook:
    return wire(cfg).support(list_name).book()


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
    from digest.audience.confirm import Invitations
    from digest.audience.lists import get_list
    from digest.send import run_async

    services = wire(cfg)
    mailing_list = get_list(cfg.subscribers_dir, list_name)
    subscribers = book(cfg, list_name)
    due = subscribers.to_invite(mailing_list.confirm_days, again, limit, only)
    invitations = services.tools.letter(Invitations, mailing_list)
    if dry_run:
        for s in due:
            console.print(f"would send to {s.email}: {invitations.link(s)}")
        console.print(f"{len(due)} confirmation mail(s) would go out (dry run)")
        return 0
    connection = services.tools.single_connection(
        f"{len(due)} confirmation mail(s) not sent; "
        "send them with `digest subscribers invite` once it is"
    )
    report = run_async(
        invitations.send(subscribers, due, connection, services.tools.signing_step())
    )
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
    with errors(), progress(f"import {path.name}") as tick:
        report = book(settings(), list_name).import_csv(path, tick)
    for problem in report.problems:
        err.print(f"[red]rejected[/] {problem}", highlight=False)
    if report.rejected > len(report.problems):
        err.print(f"[red]rejected[/] … and {report.rejected - len(report.problems)} more lines")
    for warning in report.warnings[:20]:
        err.print(f"[yellow]note[/] {warning}", highlight=False)
    console.print(
        f"added {report.added}, updated {report.updated}, duplicates merged {report.merged}, "
        f"kept unsubscribed/bounced/forgotten {report.kept_closed}, rejected {report.rejected}"
    )
    from digest.audience.lists import get_list

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


WAYS_BACK = (
    "A reader who left comes back by the goodbye page's undo or the site's subscription "
    "box (a fresh confirmation), or by an admin on the desk's Readers page, with a reason"
)


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
    from digest.audience.rows import Row

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
        fail(f"{row.email} unsubscribed, bounced or asked to be forgotten: not added. {WAYS_BACK}")
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
    from digest.audience.rows import write_export

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


@subscribers_app.command("sunset")
def subscribers_sunset(
    list_name: ListOption = "daily",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say who would be asked and paused; change nothing.")
    ] = False,
) -> None:
    """The sunset rule, by hand (`digest scheduler` runs it daily when
    DIGEST_SUNSET_AFTER is set): readers who were sent mail but clicked nothing
    for DIGEST_SUNSET_AFTER months get one «still reading?» letter; those who
    did not answer it within DIGEST_SUNSET_GRACE_DAYS are paused (not mailed;
    the letter's button brings them back). Refused unless the list counts
    clicks per reader and has done so for the whole period. Exit status 3 when
    some letters could not be sent.

    Example: digest subscribers sunset --dry-run
    """
    from digest.send import run_async

    with errors():
        services = wire(settings())
        report = run_async(services.sunset.run(list_name, dry_run=dry_run))
    for problem in report.failed:
        err.print(f"[red]not sent[/] {problem}", highlight=False)
    verb = ("would be asked", "would be paused") if dry_run else ("asked", "paused")
    for address in report.paused:
        console.print(f"{verb[1]}: {address}", highlight=False)
    console.print(
        f"{len(report.asked)} reader(s) {verb[0]} whether they still read, "
        f"{len(report.paused)} {verb[1]}, {len(report.failed)} letter(s) not sent",
        highlight=False,
    )
    if report.failed:
        raise typer.Exit(EXIT_PARTIAL)
