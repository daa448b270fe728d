"""`digest sources`: the site databases digest reads (issue 29), each with its last
sync, and `digest sources sync [NAME]` to read what changed now."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from digest.cli.app import EXIT_PARTIAL, console, err, errors, settings, sources_app, wire
from digest.cli.ops import print_ingest

if TYPE_CHECKING:
    from digest.sources.sync import SyncReport


def _age(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min" if minutes < 48 * 60 else f"{minutes // 1440} d"


@sources_app.callback(invoke_without_command=True)
def sources_list(ctx: typer.Context) -> None:
    """The site databases in sources/*.toml, each with its last sync, the rows it
    read and how far its articles lag behind now.

    Example: digest sources
    """
    if ctx.invoked_subcommand is not None:
        return
    with errors():
        cfg = settings()
        services = wire(cfg)
        lines = services.sources.overview()
    if not lines:
        console.print(f"no sources in {cfg.sources_dir} (see sources/site.toml.example)")
        return
    for line in lines:
        every = f"every {line.every} min" if line.every else "by hand and before builds"
        synced = (
            line.synced_at.astimezone(cfg.zone).strftime("%d.%m.%Y %H:%M")
            if line.synced_at
            else "never"
        )
        lag = _age(line.lag.total_seconds()) if line.lag is not None else "—"
        console.print(
            f"{line.name}: {line.preset}, {every}; last sync {synced}, "
            f"{line.rows} rows read; lag {lag}",
            highlight=False,
        )
        if line.error:
            err.print(f"  [red]last error[/] {escape(line.error)}", highlight=False)


@sources_app.command("sync")
def sources_sync(
    name: Annotated[
        str | None, typer.Argument(metavar="[NAME]", help="One source; all when left out.")
    ] = None,
) -> None:
    """Read what changed in the site's database now: articles, comments, sections,
    views. Bad rows are named and skipped; a source that fails leaves the others.

    Example: digest sources sync site
    """
    with errors():
        services = wire(settings())
        reports = services.sources.sync(name)
    failed, rejected = print_syncs(reports)
    if failed:
        raise typer.Exit(1)
    if rejected:
        raise typer.Exit(EXIT_PARTIAL)


def print_syncs(reports: list[SyncReport]) -> tuple[int, int]:
    """Each source's sync, one line (and its bad rows); (failed, rows rejected)."""
    failed = rejected = 0
    for report in reports:
        rows = ", ".join(f"{q} {n}" for q, n in report.rows.items()) or "nothing"
        if report.error:
            failed += 1
            err.print(f"[red]{report.source}: failed[/] {escape(report.error)}", highlight=False)
            continue
        console.print(
            f"{report.source}: read {rows} in {report.seconds:.1f} s; "
            f"views refreshed {report.views_changed}",
            highlight=False,
        )
        print_ingest(report.ingest)
        rejected += report.ingest.rejected
    return failed, rejected
