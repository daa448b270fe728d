"""`digest status` answers through a plain connection (issue 31): the report it
prints is the desk's, read with SQLAlchemy's core alone, so the command loads no
ORM and no mapped table (they were a third of its start-up, 0.93–1.03 s at a
million deliveries while two workers held the cores). The collector, off for a
command's start-up, is back on in a command that wires its services."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from typing import Any

from digest import demo
from digest.capture import CaptureServer
from digest.wiring import Services
from tests.support.common import FIXED_NOW
from tests.support.demo_data import load_demo_articles
from tests.support.mail import READERS, send
from tests.support.smtp import ScriptedHandler


def _command(services: Services, argv: list[str]) -> tuple[str, dict[str, Any]]:
    """``digest ARGV`` in a fresh process, as the console script runs it: (what it
    printed, the modules it had loaded and whether the collector was on at exit)."""
    probe = (
        "import atexit, gc, json, sys\n"
        "atexit.register(lambda: print(json.dumps({'modules': sorted(sys.modules),"
        " 'gc': gc.isenabled()}), file=sys.stderr))\n"
        f"sys.argv = {['digest', *argv]!r}\n"
        "from digest.__main__ import main\n"
        "main()\n"
    )
    env = {**os.environ, "DIGEST_DATABASE_URL": services.settings.database}
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode in (0, 3), done.stderr
    return done.stdout, json.loads(done.stderr.strip().splitlines()[-1])


def test_status_prints_the_desks_report_without_loading_the_orm(
    services: Services, fixed_date: date, smtp_server: CaptureServer
) -> None:
    schedule = services.schedule("daily")
    handler = smtp_server.handler
    assert isinstance(handler, ScriptedHandler)
    handler.rules = {demo.reader_address(3): "550 5.1.1 user unknown"}
    load_demo_articles(services.factory, schedule, fixed_date)
    demo.add_subscribers(services.factory, READERS, now=FIXED_NOW)
    edition = services.editions.build(schedule, fixed_date)
    send(services, schedule, edition, smtp_server)
    with services.factory() as session:  # what the desk shows, through its session
        from digest.track.reports import edition_report

        desk = edition_report(session, edition).as_json()

    printed, process = _command(services, ["status", edition.label, "--json"])

    report = json.loads(printed)
    for key in ("label", "status", "counts", "total", "failures", "variants", "corrections"):
        assert report[key] == desk[key], key
    assert report["counts"]["sent"] == READERS - 1 and report["counts"]["bounced"] == 1
    assert report["failures"][0]["enhanced"] == "5.1.1"
    loaded = set(process["modules"])
    assert "digest.store.reading" in loaded  # the probe read the report
    heavy = {"sqlalchemy.orm", "digest.models.tables", "digest.store.claims"} & loaded
    assert not heavy, sorted(heavy)
    assert process["gc"] is False  # a short read: the collector stayed off


def test_a_command_that_wires_its_services_runs_with_the_collector_on(
    services: Services,
) -> None:
    _, process = _command(services, ["editors", "list"])

    assert "digest.wiring" in process["modules"]  # the command wired its services
    assert process["gc"] is True
