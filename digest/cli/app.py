"""The ``digest`` command's Typer apps and what every command shares: settings,
the services, one-line errors and exit codes.

Exit codes: 0 done; 1 error (bad setting, unreachable relay, …); 2 wrong
usage; 3 done, but some records or messages did not make it (rejected
lines, failed or deferred deliveries).
"""

from __future__ import annotations

import gc
import logging
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from digest import __version__
from digest.errors import DigestError, EmptyEdition
from digest.kinds import utcnow

# A command imports what it uses when it runs: `digest --help` and `--version`
# answer without SQLAlchemy, Alembic or premailer (issue 26).
if TYPE_CHECKING:
    from digest.config import Settings
    from digest.db import Engine, Factory
    from digest.models import Edition
    from digest.schedule.files import Schedule
    from digest.track.reports import Reports
    from digest.wiring import Services

log = logging.getLogger("digest")

T = TypeVar("T")


EXIT_PARTIAL = 3

EXIT_USAGE = 2

console = Console()

err = Console(stderr=True)

app = typer.Typer(
    help="The daily email digest of «Новости ВПК»: ingest articles, build the edition, send it.",
    epilog="Exit status: 0 done; 1 error; 2 wrong usage; 3 done, but some records or "
    "messages did not make it.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    add_completion=False,
)

db_app = typer.Typer(
    help="The database schema: bring it up to date.\n\nExample: digest db upgrade",
    no_args_is_help=True,
)

app.add_typer(db_app, name="db")

subscribers_app = typer.Typer(
    help="Subscribers: import, add, remove, show, list, export, forget, invite."
    "\n\nExample: digest subscribers show ivan@example.ru",
    no_args_is_help=True,
)

app.add_typer(subscribers_app, name="subscribers")

editors_app = typer.Typer(
    help="The desk's accounts: add, remove, passwd, role, list.\n\nExample: digest editors list",
    no_args_is_help=True,
)

app.add_typer(editors_app, name="editors")

dkim_app = typer.Typer(
    help="DKIM keys: make a key pair and print its DNS record."
    "\n\nExample: digest dkim keygen --selector digest2026 --domain vpk.ru --out dkim.pem",
    no_args_is_help=True,
)

app.add_typer(dkim_app, name="dkim")

tokens_app = typer.Typer(
    help="The HTTP API's tokens: create, list, revoke.\n\n"
    "Example: digest tokens create site --scope subscribers:write",
    no_args_is_help=True,
)

app.add_typer(tokens_app, name="tokens")

sources_app = typer.Typer(
    help="The site databases digest reads: list them, sync now.\n\nExample: digest sources sync"
)

app.add_typer(sources_app, name="sources")


@dataclass
class State:
    log_json: bool = False
    verbose: bool = False


# The global options of this invocation, set once by the callback. A module value:
# Typer vendors its own click, whose current context the commands cannot reach.
_given = State()


def options() -> State:
    return _given


def fail(message: str, code: int = 1) -> NoReturn:
    # The message may quote a server or a file: never read as Rich markup.
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def errors() -> Iterator[None]:
    """DigestErrors become a one-line message and exit status 1, at the edge only."""
    try:
        yield
    except DigestError as exc:
        # DatabaseAway says 75 (EX_TEMPFAIL: run again later); the rest say 1.
        fail(str(exc), getattr(exc, "exit_code", 1))


Tick = Callable[[int, "int | None"], None]  # (done, total if known)


@contextmanager
def progress(label: str) -> Iterator[Tick]:
    """A bar on stderr while a long command works (issue 28 §7: an import of 20 000
    lines ran 37 s silent), at a terminal only: in a pipe or a log a bar is cut to
    «100… 0:0…», and the command's summary line says it all there."""
    if options().log_json or not err.is_terminal:
        yield lambda done, total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    columns = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress("{task.description}", *columns, console=err, transient=True) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def counted(items: Iterable[T], tick: Tick, every: int = 100) -> Iterator[T]:
    """``items``, ticking the bar every ``every`` of them."""
    done = 0
    for done, item in enumerate(items, 1):
        if done % every == 0:
            tick(done, None)
        yield item
    tick(done, done)


def settings() -> Settings:
    from digest import logs
    from digest.config import load_settings

    loaded = load_settings()
    given = options()
    level = "DEBUG" if given.verbose else loaded.log_level
    logs.setup(level, given.log_json, err)
    return loaded


def database(cfg: Settings, *, upgrade: bool = False) -> Factory:
    """The database's sessions, its schema checked (or brought up to date)."""
    from digest import db

    return db.session_factory(checked_engine(cfg, upgrade=upgrade))


def checked_engine(cfg: Settings, *, upgrade: bool = False) -> Engine:
    """The database's engine, its schema checked (or brought up to date)."""
    from digest import db

    engine = db.make_engine(cfg.database)
    if upgrade:
        db.upgrade(engine)
    else:
        db.check_schema(engine)
    return engine


def wire(cfg: Settings, *, upgrade: bool = False) -> Services:
    """The services, wired once for this command; a send's extra sender processes
    run ``cli.senders.sender_main``."""
    from digest.cli.senders import sender_main
    from digest.wiring import Services

    if not gc.isenabled():  # off for the start-up (``digest.__main__``)
        # What the start-up made lives as long as the process: kept out of every
        # later pass of the collector, which a send or a server needs on.
        gc.freeze()
        gc.enable()
    return Services(cfg, database(cfg, upgrade=upgrade), utcnow, sender_entry=sender_main)


def reports(cfg: Settings) -> Reports:
    """The reports alone: `digest status` needs no renderer, signer or relay."""
    from digest.track.reports import Reports

    return Reports(checked_engine(cfg), utcnow)


def parse_date(value: str | None, schedule: Schedule) -> date:
    if value is None:
        return schedule.today(utcnow())
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"--date: {value!r} is not a date like 2026-11-25", 2)


def print_version(wanted: bool) -> None:
    # Eager: it answers before Typer asks for a command.
    if wanted:
        console.print(f"digest {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    log_json: Annotated[
        bool, typer.Option("--log-json", help="Log one JSON object per line.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug details.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Settings come from digest.toml (or $DIGEST_CONFIG) and DIGEST_* variables;
    see the README for every one."""
    global _given
    _given = State(log_json=log_json, verbose=verbose)


ScheduleArg = Annotated[str, typer.Argument(metavar="SCHEDULE", help="A file in schedules/.")]

DateOption = Annotated[
    str | None, typer.Option("--date", help="Edition date, e.g. 2026-11-25 (default: today).")
]


def build_or_say(services: Services, schedule: Schedule, on: date) -> Edition:
    try:
        return services.editions.build(schedule, on)
    except EmptyEdition as exc:
        console.print(f"nothing to send: {exc}")
        raise typer.Exit(0) from None


def to_send(services: Services, name: str, on: str | None) -> tuple[Schedule, Edition]:
    """`digest send SCHEDULE [--date D]` builds the day's edition; `digest send
    daily/2026-12-03/special-1` names one already made (a special edition)."""
    if "/" not in name:
        schedule = services.schedule(name)
        return schedule, build_or_say(services, schedule, parse_date(on, schedule))
    edition = find(services, name)
    return services.schedule(edition.schedule), edition


ForceOption = Annotated[
    bool, typer.Option("--force", help="Send a draft the schedule wants approved (logged).")
]

YesOption = Annotated[
    bool,
    typer.Option(
        "--yes",
        "-y",
        help="Send an edition older than its schedule's period (it says how many it reaches).",
    ),
]


def asked(yes: bool, act: Callable[[bool], T]) -> T:
    """The old-edition rule at the door (issue 28 §1): ``act(old_ok)`` goes on with
    --yes, or when a person at a terminal says yes to how many readers it reaches;
    otherwise the refusal, with that count, is the error."""
    from digest.errors import OldEdition

    try:
        return act(yes)
    except OldEdition as exc:
        if not (sys.stdin.isatty() and err.is_terminal):
            raise OldEdition(f"{exc}; --yes sends it anyway", exc.readers) from None
        if not typer.confirm(f"{exc}. Send it anyway?", err=True):
            raise typer.Exit(1) from None
        return act(True)


EditionArg = Annotated[str, typer.Argument(metavar="EDITION", help="An id or schedule/date.")]

MetricsPortOption = Annotated[
    int | None,
    typer.Option(
        "--metrics-port",
        min=0,
        max=65535,
        help="Serve Prometheus metrics on http://HOST:PORT/metrics (DIGEST_METRICS_ALLOW applies).",
    ),
]
MetricsHostOption = Annotated[
    str, typer.Option("--metrics-host", help="Where --metrics-port listens.")
]


def expose_metrics(services: Services, port: int | None, host: str) -> None:
    """A worker's or scheduler's own /metrics (they are processes of their own)."""
    if port is not None:
        from digest.observe.serve import serve_metrics

        serve_metrics(
            host, port, services.settings.metrics_networks(), services.factory, services.clock
        )


EDITION_LABEL = re.compile(r"[A-Za-z0-9_-]{1,64}/\d{4}-\d{2}-\d{2}(/special-\d{1,4})?")


def checked_ref(ref: str) -> str:
    """An edition reference as typed: an id or schedule/date, else bad usage (2)."""
    from digest.kinds import row_id

    if row_id(ref) is None and not EDITION_LABEL.fullmatch(ref):
        fail(f"{ref[:40]!r} is not an edition: give an id or schedule/date", EXIT_USAGE)
    return ref


def find(services: Services, ref: str) -> Edition:
    found = services.reports.edition(checked_ref(ref))
    if found is None:
        fail(f"no edition {ref!r} (give an id or schedule/date)")
    return found
