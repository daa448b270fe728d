"""`/healthz` and `/metrics` over HTTP (uvicorn on 127.0.0.1), on both databases:
the checks `digest doctor` shares, the counters a real send moves, the networks
DIGEST_METRICS_ALLOW lets in."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from digest import db, demo, store
from digest.capture import CaptureServer
from digest.db import transaction
from digest.doctor import run_checks
from digest.errors import DigestError
from digest.observe.health import STALE_AFTER
from digest.observe.health import database as database_check
from digest.web.app import WebContext, create_app
from digest.wiring import Services
from tests.support.common import FIXED_NOW
from tests.support.demo_data import load_demo_articles
from tests.support.serving import serving
from tests.support.smtp import ScriptedHandler, send_through
from tests.support.web import fetch

READERS = 12


@pytest.fixture
def served(services: Services) -> Iterator[tuple[Services, str]]:
    """The web app, with this machine a listed network: /healthz says what it found."""
    cfg = services.settings.model_copy(update={"metrics_allow": "127.0.0.1, ::1"})
    app = create_app(WebContext(cfg, services.factory, services.clock))
    with serving(app) as base:
        yield services, base


def sample(body: str, name: str, **labels: str) -> float:
    """One sample of the exposition (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in body.splitlines():
        if line.startswith("#"):
            continue
        metric, _, value = line.rpartition(" ")
        found = re.fullmatch(r"([a-zA-Z_:]+)(?:\{(.*)\})?", metric)
        if found and found.group(1) == name:
            given = ",".join(sorted(p for p in (found.group(2) or "").split(",") if p))
            if given == want:
                return float(value)
    return 0.0


def beat(services: Services, age: float) -> None:
    with transaction(services.factory) as session:
        store.beat(session, "scheduler:host:1", "scheduler", FIXED_NOW - timedelta(seconds=age))


def test_healthz_is_ok_and_names_a_scheduler_that_stopped_beating(
    served: tuple[Services, str],
) -> None:
    services, base = served
    status, _, body = fetch(f"{base}/healthz")
    data = json.loads(body)
    assert status == 200 and data["status"] == "ok" and data["failing"] == []
    assert [c["check"] for c in data["checks"]] == ["database", "scheduler"]
    beat(services, 5)
    assert fetch(f"{base}/healthz")[0] == 200
    beat(services, STALE_AFTER + 60)
    status, _, body = fetch(f"{base}/healthz")
    data = json.loads(body)
    assert status == 503 and data["failing"] == ["scheduler"]
    assert "last beat" in data["checks"][1]["detail"]


def test_healthz_names_a_database_the_code_does_not_match(
    services: Services, tmp_path: Path
) -> None:
    """An empty database (nobody ran `digest db upgrade`): 503, "database"."""
    empty = tmp_path / "empty.sqlite3"
    create_engine(f"sqlite:///{empty}").dispose()
    engine = db.make_engine(f"sqlite:///{empty}")
    cfg = services.settings.model_copy(update={"metrics_allow": "127.0.0.1"})
    context = WebContext(cfg, db.session_factory(engine), services.clock)
    with serving(create_app(context)) as base:
        status, _, body = fetch(f"{base}/healthz")
    engine.dispose()
    data = json.loads(body)
    assert status == 503 and data["failing"] == ["database"]
    assert "digest db upgrade" in data["checks"][0]["detail"]


def test_metrics_move_by_what_a_real_send_did(
    served: tuple[Services, str], smtp_server: CaptureServer, fixed_date: date
) -> None:
    services, base = served
    schedule = services.schedule("daily")
    load_demo_articles(services.factory, schedule, fixed_date)
    demo.add_subscribers(services.factory, READERS, now=FIXED_NOW)
    handler = smtp_server.handler
    assert isinstance(handler, ScriptedHandler)
    handler.rules["reader00001@example.com"] = "451 4.7.1 greylisted, try later"
    handler.rules["reader00006@example.com"] = "550 5.1.1 no such user"
    edition = services.editions.build(schedule, fixed_date)
    services.lifecycle.start_sending(schedule, edition)

    status, _, before = fetch(f"{base}/metrics")
    assert status == 200 and sample(before, "digest_queue_depth", state="due") == READERS
    send_through(services, edition, smtp_server.url)
    _, _, after = fetch(f"{base}/metrics")

    def moved(outcome: str, domain: str = "example.com") -> float:
        labels = {"kind": "daily", "domain": domain, "outcome": outcome}
        return sample(after, "digest_messages_total", **labels) - sample(
            before, "digest_messages_total", **labels
        )

    sent_com = sum(1 for m in smtp_server.messages if m.rcpt_to[0].endswith("@example.com"))
    assert moved("sent") == sent_com
    assert moved("deferred") == 1 and moved("bounced") == 1
    total = sum(
        sample(after, "digest_messages_total", kind="daily", domain=d, outcome="sent")
        - sample(before, "digest_messages_total", kind="daily", domain=d, outcome="sent")
        for d in {m.rcpt_to[0].rpartition("@")[2] for m in smtp_server.messages}
    )
    assert total == len(smtp_server.messages) == READERS - 2
    assert sample(after, "digest_queue_depth", state="due") == 0
    assert sample(after, "digest_queue_depth", state="deferred") == 1
    assert sample(after, "digest_render_seconds_count") >= 1
    assert "# TYPE digest_send_rate gauge" in after


@pytest.mark.parametrize("allow, expected", [("10.0.0.0/8", 403), ("127.0.0.1, ::1", 200)])
def test_metrics_answer_only_the_listed_networks_and_healthz_tells_them_more(
    services: Services, allow: str, expected: int
) -> None:
    cfg = services.settings.model_copy(update={"metrics_allow": allow})
    with serving(create_app(WebContext(cfg, services.factory, services.clock))) as base:
        assert fetch(f"{base}/metrics")[0] == expected
        status, _, body = fetch(f"{base}/healthz")
        assert fetch(f"{base}/archive/")[0] == 200  # the rest of the site is everyone's
    assert status == 200  # a load balancer anywhere may ask
    checks = json.loads(body)["checks"]
    assert all(("detail" in c) is (expected == 200) for c in checks), checks


@pytest.mark.parametrize("allow", ["", "10.0.0.0/8"])
def test_healthz_tells_a_stranger_ok_or_fail_and_nothing_else(
    services: Services, database_url: str, allow: str
) -> None:
    """Issue 24 §5: it named the database URL (a ?password= in clear), the SQLite
    path, the scheduler's host and pid, to anyone."""
    url = f"{database_url}?password=hunter2-secret" if "postgresql" in database_url else ""
    engine = db.make_engine(url or database_url)
    beat(services, 5)
    cfg = services.settings.model_copy(update={"metrics_allow": allow})
    with serving(create_app(WebContext(cfg, db.session_factory(engine), services.clock))) as base:
        status, _, body = fetch(f"{base}/healthz")
    engine.dispose()
    assert status == 200
    assert json.loads(body) == {
        "status": "ok",
        "failing": [],
        "checks": [{"check": "database", "ok": True}, {"check": "scheduler", "ok": True}],
    }


def test_doctor_masks_every_credential_in_a_database_url(postgres_url: str) -> None:
    from digest.config.values import masked_url

    url = f"{postgres_url.replace('postgres@', 'postgres:pw-in-netloc@')}?password=pw-in-query"
    engine = db.make_engine(url)
    db.upgrade(engine)
    detail = database_check(engine).detail
    engine.dispose()
    assert "pw-in" not in detail and "***" in detail, detail
    assert masked_url("postgresql://u:p@h/d?sslpassword=s&sslmode=require") == (
        "postgresql://u:***@h/d?sslpassword=***&sslmode=require"
    )
    # A SQLite path keeps its slashes: «sqlite:/var/…» named another file (/var).
    for path in ("sqlite:///var/digest.sqlite3", "sqlite:////srv/digest/db.sqlite3"):
        assert masked_url(path) == path
    with pytest.raises(DigestError) as failed:
        db.make_engine("postgresql+psycopg://u:pw-in-netloc@h:notaport/d?password=pw-in-query")
    assert "pw-in" not in str(failed.value), failed.value


def test_doctor_and_healthz_share_the_scheduler_check(services: Services) -> None:
    beat(services, STALE_AFTER + 60)
    checks = {c.name: c for c in run_checks(services.settings, smtp=False, clock=services.clock)}
    assert not checks["scheduler"].ok and "last beat" in checks["scheduler"].detail
    with services.factory() as session:
        session.execute(text("DELETE FROM heartbeat"))
        session.commit()
    checks = {c.name: c for c in run_checks(services.settings, smtp=False, clock=services.clock)}
    assert checks["scheduler"].ok


def test_the_doctor_names_a_broken_template_and_goes_on(services: Services, tmp_path: Path) -> None:
    """Issue 28 §7: a word plural() does not know made `digest doctor` die with a
    bare KeyError. The check fails with the file and the line; the others run."""
    folder = tmp_path / "templates"
    shutil.copytree(services.settings.templates_dir, folder)
    html = folder / "digest.html.j2"
    lines = html.read_text(encoding="utf-8").splitlines(keepends=True)
    lines.insert(29, '{{ 5 | plural("раздел") }}\n')
    html.write_text("".join(lines), encoding="utf-8")
    cfg = services.settings.model_copy(update={"templates_dir": folder})
    checks = {c.name: c for c in run_checks(cfg, smtp=False, clock=services.clock)}
    assert not checks["templates"].ok
    assert "digest.html.j2, line 30: plural: no forms for «раздел»" in checks["templates"].detail
    assert checks["dkim"].ok and checks["schedules"].ok  # the ones after it ran


def test_the_doctor_warns_when_postgresql_will_not_vacuum_a_send(services: Services) -> None:
    """Every delivery is written twice: a day's partition counts on autovacuum to
    clear a send's dead rows as it sends (issue 31: without it a million-reader send
    slowed by a quarter as it went). The doctor reads the server's own settings and
    warns when either is off; SQLite has no such check."""
    checks = {c.name: c for c in run_checks(services.settings, smtp=False, clock=services.clock)}
    if services.settings.database_url.startswith("sqlite"):
        assert "vacuum" not in checks
        return
    with services.factory() as session:  # asked apart from the check's own query
        rows = session.execute(text("SELECT name, setting FROM pg_settings")).all()
    off = sorted(
        name for name, value in rows if name in ("autovacuum", "track_counts") and value != "on"
    )
    vacuum = checks["vacuum"]
    assert vacuum.ok and vacuum.warning == bool(off), vacuum
    for name in off:
        assert name in vacuum.detail and "is off" in vacuum.detail, vacuum
    if not off:
        assert vacuum.detail.startswith("autovacuum on"), vacuum
