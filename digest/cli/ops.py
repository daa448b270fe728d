"""`digest db upgrade` and `db prune`, `ingest`, `doctor`, `serve`, `inbound`, `bounces`, `dkim`."""

from __future__ import annotations

import json
import logging
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from digest.cli.app import (
    EXIT_PARTIAL,
    app,
    console,
    counted,
    db_app,
    dkim_app,
    err,
    errors,
    fail,
    progress,
    settings,
    wire,
)
from digest.errors import DigestError
from digest.kinds import utcnow

if TYPE_CHECKING:
    from digest.ingest import IngestReport

log = logging.getLogger("digest")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create the schema, or bring it up to this version (Alembic migrations).
    The database is DIGEST_DATABASE_URL (SQLite or postgresql+psycopg://).

    Example: digest db upgrade
    """
    from digest import db

    with errors():
        cfg = settings()
        before, after = db.upgrade(db.make_engine(cfg.database))
    if before == after:
        console.print(f"database is up to date (revision {after})")
    else:
        console.print(f"database upgraded: {before or 'empty'} → {after}")


def keep_days(value: str) -> int:
    """``30d`` or ``30``: days."""
    text = value.strip().lower().removesuffix("d")
    if not text.isdigit() or int(text) < 1:
        raise typer.BadParameter(f"{value!r} is not a number of days like 30d")
    return int(text)


@db_app.command("prune")
def db_prune(
    keep: Annotated[
        str, typer.Option(help="Keep delivery rows of the editions of the last N days (30d).")
    ] = "30d",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would go, remove nothing.")
    ] = False,
) -> None:
    """Remove the delivery rows of editions older than --keep whose send is over,
    after writing each one's counts, failures and minutes into a summary kept for
    ever (`digest status`, the desk and the API read it). On PostgreSQL a day
    whose editions are all over loses its partition whole. Fewer days than
    DIGEST_SOFT_BOUNCE_DAYS is refused: the soft-bounce rule reads them.

    Example: digest db prune --keep 30d
    """
    days = keep_days(keep)
    with errors():
        report = wire(settings()).retention.prune(days, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for label, rows in report.editions:
        console.print(f"{label}: {verb} {rows} delivery rows; its summary is kept", highlight=False)
    if report.days:
        dropped = ", ".join(str(d) for d in report.days)
        console.print(f"delivery partitions dropped whole: {dropped}", highlight=False)
    console.print(
        f"editions before {report.before}: {len(report.editions)}, {verb} {report.rows} rows",
        highlight=False,
    )


@app.command()
def ingest(
    paths: Annotated[list[str], typer.Argument(help="JSON Lines files, RSS/Atom files or URLs.")],
) -> None:
    """Load articles and their comments.

    JSON Lines: one article per line with id, url, title, published_at (ISO 8601
    with offset) and optionally lead, section, views, rating, image_url, source,
    comments [{number, author, posted_at, body, votes}], withdrawn. Re-loading an id
    updates the article and adds only new comments; a changed title, lead or URL is
    a correction, and {"id": …, "withdrawn": true} withdraws an article (an article
    missing from a file is not withdrawn). RSS 2.0 and Atom are read with
    feedparser. A bad line is reported with its number; the rest is loaded; the
    exit status is 3 when anything was rejected.

    Example: digest ingest articles.jsonl https://vpk.example.ru/rss.xml
    """
    from digest.ingest import Ingester, IngestReport, read_source

    with errors():
        cfg = settings()
        services = wire(cfg)
        report = IngestReport()
        for path in paths:
            with progress(f"ingest {path}") as tick:
                records = counted(read_source(path), tick)
                report.merge(Ingester(services.factory, clock=services.clock).load(records))
    print_ingest(report)
    if report.rejected:
        raise typer.Exit(EXIT_PARTIAL)


def print_ingest(report: IngestReport) -> None:
    for problem in report.problems:
        err.print(f"[red]rejected[/] {escape(str(problem))}", highlight=False)
    for warning in report.warnings[:20]:
        err.print(f"[yellow]skipped[/] {escape(str(warning))}", highlight=False)
    if len(report.warnings) > 20:
        err.print(f"… and {len(report.warnings) - 20} more skipped")
    corrected = (
        f" ({report.corrected} corrected, {report.withdrawn} withdrawn)"
        if report.corrected or report.withdrawn
        else ""
    )
    console.print(
        f"loaded {report.loaded}, updated {report.updated}{corrected}, rejected "
        f"{report.rejected}; comments added {report.comments_added}, skipped "
        f"{report.comments_rejected}"
    )


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
    from digest.dkim import keygen

    if out.exists():
        fail(f"{out} exists; choose another path (a key in use must not be replaced silently)")
    try:
        record = keygen(out, selector, domain, kind=key_type.value)
    except OSError as exc:
        fail(f"{out}: {exc.strerror}")
    console.print(f"private key: {out} (keep it secret; mode 0600)")
    console.print(f"publish this TXT record at {selector}._domainkey.{domain}:")
    console.print(record, highlight=False, soft_wrap=True)


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

    from digest.web import server
    from digest.web.app import WebContext, create_app

    with errors():
        cfg = settings()
        services = wire(cfg)
        cfg.link_key()  # a missing key is an error now, not on the first request
        web = create_app(WebContext(cfg, services.factory))
        if not services.accounts.listing():  # seeds DIGEST_EDITORS into an empty table
            log.warning("the editors' desk is closed: `digest editors add NAME --admin`")
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
    from digest.audience.lists import load_lists
    from digest.audience.subscribers import reader_book
    from digest.track.intake import Source, process_unsubscribes

    with errors():
        cfg = settings()
        services = wire(cfg)
        signers = services.tools.keyring().for_lists(load_lists(cfg.subscribers_dir))
        report = process_unsubscribes(
            Source(path),
            signers,
            reader_book(services.factory, services.clock),
            cfg.sender.domain,
        )
    for problem in report.problems[:20]:
        err.print(f"[yellow]left in place[/] {escape(problem)}", highlight=False)
    summary = ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items())) or "nothing"
    console.print(f"{path}: {report.messages} messages: {summary}")
    if report.counts.get("unreadable"):
        raise typer.Exit(EXIT_PARTIAL)


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
    from digest.track.bounces import BounceReader
    from digest.track.intake import ReturnsReport, Source, process_returns
    from digest.track.outcomes import SoftBouncePolicy

    with errors(), progress(f"bounces {path.name}") as tick:
        cfg = settings()
        services = wire(cfg)
        reader = BounceReader(services.tools.keyring().verp(), cfg.return_path)
        policy = SoftBouncePolicy(cfg.retry.soft_bounce_limit, cfg.retry.soft_bounce_days)
        report: ReturnsReport = process_returns(
            services.factory, Source(path), reader, policy, utcnow, tick
        )
    for problem in report.problems[:20]:
        err.print(f"[yellow]left in place[/] {escape(problem)}", highlight=False)
    summary = ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items())) or "nothing"
    console.print(f"{path}: {report.messages} messages: {summary}")
    if report.problems:
        raise typer.Exit(EXIT_PARTIAL)


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
    from digest.doctor import run_checks
    from digest.observe.health import Check

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
            console.print(f"{mark} {c.name}: {escape(c.detail)}", highlight=False)
    if not all(c.ok for c in checks):
        raise typer.Exit(1)
