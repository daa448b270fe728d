"""`digest demo`: everything set up and one edition sent, on a fresh clone; and
`digest dev-relay`, a relay to try the rest with (issue 28 §7)."""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING, Annotated

import typer

from digest.cli.app import (
    DateOption,
    app,
    build_or_say,
    console,
    errors,
    fail,
    parse_date,
    settings,
    wire,
)
from digest.cli.editions import Format, decoded, finish_exit, print_report, status_of
from digest.cli.ops import print_ingest
from digest.cli.sending import deliver
from digest.cli.sources import print_syncs

if TYPE_CHECKING:
    from datetime import date

    from digest.models import Edition
    from digest.schedule.files import Schedule
    from digest.track.reports import EditionReport
    from digest.wiring import Services


@app.command("demo")
def demo_cmd(
    subscribers: Annotated[int, typer.Option(min=0, help="How many demo subscribers.")] = 1000,
    on: DateOption = None,
    no_send: Annotated[
        bool, typer.Option("--no-send", help="Load the data and subscribers, then stop.")
    ] = False,
    site: Annotated[
        bool,
        typer.Option(
            "--site",
            help="Read the articles from a WordPress-layout database (DIGEST_SITE_DATABASE_URL, "
            "or a private MariaDB under var/site-db) through a source, as a real site's.",
        ),
    ] = False,
) -> None:
    """Set everything up and send today's daily digest to the demo subscribers.

    Creates the database, loads the seed-based articles and comments, adds N
    subscribers, and sends the edition through a local SMTP capture server
    (each message saved in var/outbox/) — or through DIGEST_SMTP_URL when it is
    set. Running it again does not send the same edition twice.

    Example: digest demo --subscribers 1000
    """
    from digest.demo import service

    with errors():
        cfg = settings()
        made = service.ensure_key(cfg)
        services = wire(cfg, upgrade=True)
        schedule = services.schedule("daily")
        on_date = parse_date(on, schedule)
        if site:
            _site_demo(services, schedule, on_date)
        loaded = service.load_demo(
            services.factory, services.clock, schedule, on_date, subscribers, articles=not site
        )
        if not site:
            console.print(f"demo data for {on_date} (window {schedule.describe_window(on_date)}):")
            print_ingest(loaded.report)
        console.print(f"subscribers: {loaded.readers} demo readers ({loaded.new_readers} new)")
        if made:
            console.print(f"made a signing key for the demo: {cfg.secret_key_file}")
        if no_send:
            return
        edition = build_or_say(services, schedule, on_date)
        page = cfg.var_dir / "preview" / f"{edition.schedule}-{edition.edition_date}.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_bytes(decoded(services.previews.preview(schedule, edition).data, Format.html))
        report_ = demo_send(services, schedule, edition)
    print_report(report_, schedule.zone)
    console.print(f"preview: {page.resolve()}")
    finish_exit(report_)


def _site_demo(services: Services, schedule: Schedule, on_date: date) -> None:
    """The demo's articles into the site's database, then one sync from it."""
    import os

    from digest.demo import data, site

    cfg = services.settings
    url = os.environ.get("DIGEST_SITE_DATABASE_URL")
    if not url:
        url = site.LocalMariaDB(cfg.var_dir / "site-db", 3407).start("site")
        os.environ["DIGEST_SITE_DATABASE_URL"] = url
        console.print(f"a private MariaDB for the demo's site: {url}", highlight=False)
    records = data.build(schedule, on_date).records
    posts = site.load_site(url, str(cfg.site_url), records, services.clock())
    console.print(f"the site's database holds {posts} posts for {on_date} (WordPress layout)")
    source = cfg.sources_dir / "site.toml"
    if not source.exists():
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(site.SOURCE_FILE, encoding="utf-8")
        console.print(f"wrote {source}")
    print_syncs(services.sources.sync())


def demo_send(services: Services, schedule: Schedule, edition: Edition) -> EditionReport:
    from digest.demo import service

    cfg = services.settings
    # The demo's readers are made for its date (--date shows any day): not asked.
    if cfg.relays:
        console.print(f"sending through {', '.join(str(r) for r in cfg.relays)}")
        deliver(services, schedule, edition, old_ok=True)
        return status_of(services, edition)
    with service.capture_outbox(cfg) as outbox:
        console.print(
            f"sending through the capture server at {outbox.relay}; messages go to {outbox.folder}/"
        )
        deliver(services, schedule, edition, via=outbox.relay, old_ok=True)
    console.print(f"the capture server received {outbox.received} messages in this run")
    return status_of(services, edition)


@app.command("dev-relay")
def dev_relay(
    port: Annotated[int, typer.Option(min=1, max=65535, help="The port on 127.0.0.1.")] = 2525,
) -> None:
    """A relay to try digest with: it takes every message on 127.0.0.1 and saves it
    in var/outbox/, delivering nothing. In another terminal, point
    DIGEST_SMTP_URL at it: `send --test-to`, `digest doctor` and real sends work.
    Ctrl-C stops it.

    Example: digest dev-relay --port 2525
    """
    from digest.capture import CaptureHandler, CaptureServer

    with errors():
        folder = settings().var_dir / "outbox"
        # Loopback only: never a relay anyone else could use. Messages are counted,
        # not kept in memory: it may run all day.
        server = CaptureServer(CaptureHandler(folder, keep=False), port=port)
    try:
        server.start()
    except (OSError, RuntimeError) as exc:
        fail(f"cannot listen on 127.0.0.1:{port}: {exc}")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    console.print(f"capture relay at {server.url}: every message is saved in {folder}/")
    console.print(f"in another terminal: export DIGEST_SMTP_URL={server.url}", highlight=False)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    console.print(f"stopped; {server.handler.taken} message(s) received")
