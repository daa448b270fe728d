"""``digest doctor``: every part a send needs, checked, one line each.

Each check returns ``Check(name, ok, detail)``; nothing here changes state
(the SMTP check says EHLO, STARTTLS and AUTH as the URL asks, then QUIT; the
DKIM check signs and verifies a sample message locally, without DNS).
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime, timedelta

import dkim

from digest import db, store
from digest.audience.lists import load_lists
from digest.compose import Placeholders
from digest.config import Settings, SmtpTarget
from digest.config.values import is_https
from digest.dkim import Signer, dkim_keys
from digest.errors import DigestError
from digest.models import Clock, utcnow
from digest.observe import health
from digest.observe.health import Check, guard
from digest.render import ArticleView, EditionView, Renderer
from digest.schedule.files import load_schedules
from digest.send import SmtpConnection, connector
from digest.sources.files import load_sources
from digest.sources.overview import check as check_source
from digest.team import auth as deskauth


def run_checks(cfg: Settings, smtp: bool = True, clock: Clock = utcnow) -> list[Check]:
    checks: list[Check] = [_config(cfg)]
    checks.extend(_health(cfg, clock()))
    checks.append(guard("lists", lambda: _lists(cfg)))
    if cfg.sunset_after:
        checks.append(guard("sunset", lambda: _sunset(cfg)))
    if cfg.keep_deliveries:
        checks.append(_retention(cfg))
    checks.append(guard("schedules", lambda: _schedules(cfg)))
    checks.append(guard("templates", lambda: _templates(cfg, clock())))
    checks.append(guard("desk", lambda: _desk(cfg)))
    if smtp:
        if not cfg.relays:
            checks.append(Check("smtp", False, "DIGEST_SMTP_URL is not set"))
        for target in cfg.relays:
            checks.append(guard(f"smtp {target}", lambda t=target: _smtp(cfg, t)))  # type: ignore[misc]
    checks.append(guard("dkim", lambda: _dkim(cfg)))
    checks.extend(_sources(cfg, clock()))
    return checks


def _sources(cfg: Settings, now: datetime) -> list[Check]:
    """Each site database source (issue 29): reachable, read-only, timed, its columns."""
    try:
        found = load_sources(cfg.sources_dir)
    except DigestError as exc:
        return [Check("sources", False, str(exc))]
    return [guard(f"source {name}", lambda s=s: check_source(s, now)) for name, s in found.items()]  # type: ignore[misc]


def _config(cfg: Settings) -> Check:
    problems = []
    try:
        cfg.link_key()
    except DigestError as exc:
        problems.append(str(exc))
    if problems:
        return Check("config", False, "; ".join(problems))
    if not is_https(cfg.base_url):
        return Check(
            "config",
            True,
            f"DIGEST_BASE_URL {cfg.base_url} is not https: no one-click unsubscribe",
            warning=True,
        )
    return Check("config", True, f"from {cfg.sender.addr_spec}, links at {cfg.base_url}")


def _health(cfg: Settings, now: datetime) -> list[Check]:
    """What `/healthz` checks (the database, the scheduler's heartbeat), here on an
    engine of their own; with the database up, PostgreSQL's vacuum too."""
    try:
        engine = db.make_engine(cfg.database)
    except DigestError as exc:
        return [Check("database", False, str(exc))]
    try:
        factory = db.session_factory(engine)
        checks = health.health(factory, now)
        up = all(c.ok for c in checks if c.name == "database")
        if up and engine.dialect.name == "postgresql":
            checks.append(guard("vacuum", lambda: _vacuum(factory)))
        return checks
    finally:
        engine.dispose()


def _vacuum(factory: db.Factory) -> Check:
    """On PostgreSQL, whether autovacuum will clear a send's dead rows while it
    sends: every delivery is written twice, and without it a million-reader send
    carries two million dead rows and slows by a quarter as it goes
    (docs/SCALING.md). A warning: the send works, slower."""
    with factory() as session:
        said = store.vacuum_settings(session)
    off = sorted(name for name, value in said.items() if value != "on")
    if off:
        detail = (
            f"PostgreSQL's {' and '.join(off)} is off: a send's dead rows stay until a "
            "VACUUM (a million-reader send slows by a quarter as it goes); turn it on "
            "in postgresql.conf"
        )
        return Check("vacuum", True, detail, warning=True)
    return Check("vacuum", True, "autovacuum on: each day's partition is vacuumed as it is sent")


def _lists(cfg: Settings) -> Check:
    lists = load_lists(cfg.subscribers_dir)
    return Check("lists", True, ", ".join(sorted(lists)) or "none")


def _sunset(cfg: Settings) -> Check:
    """DIGEST_SUNSET_AFTER on a list that cannot tell readers' clicks apart would
    call every reader silent: the rule refuses to run there, and doctor says so."""
    schedules = load_schedules(cfg.schedules_dir, cfg.timezone)
    lists = load_lists(cfg.subscribers_dir)
    blind = sorted(
        {s.list for s in schedules.values() if s.list in lists}
        - {k for k, v in lists.items() if v.clicks_per_reader}
    )
    if blind:
        return Check(
            "sunset",
            False,
            f"DIGEST_SUNSET_AFTER={cfg.sunset_after} but list(s) {', '.join(blind)} do not count "
            "clicks per reader (track_clicks, individual_tracking): the rule will not run",
        )
    return Check(
        "sunset",
        True,
        f"readers silent {cfg.sunset_after} month(s) are asked, paused "
        f"{cfg.sunset_grace_days} days later",
    )


def _retention(cfg: Settings) -> Check:
    """A nightly prune shorter than the soft-bounce rule's days is refused each night."""
    if cfg.keep_deliveries < cfg.soft_bounce_days:
        return Check(
            "retention",
            False,
            f"DIGEST_KEEP_DELIVERIES={cfg.keep_deliveries} is shorter than "
            f"DIGEST_SOFT_BOUNCE_DAYS ({cfg.soft_bounce_days}): the nightly prune will not run",
        )
    return Check(
        "retention", True, f"delivery rows kept {cfg.keep_deliveries} days, then summaries"
    )


def _schedules(cfg: Settings) -> Check:
    schedules = load_schedules(cfg.schedules_dir, cfg.timezone)
    lists = load_lists(cfg.subscribers_dir)
    unknown = [f"{n}: list {s.list!r}" for n, s in schedules.items() if s.list not in lists]
    if unknown:
        return Check("schedules", False, "no such list for " + "; ".join(unknown))
    return Check("schedules", True, ", ".join(sorted(schedules)) or "none")


def _templates(cfg: Settings, now: datetime) -> Check:
    # Rendering is all this checks: a throw-away stem, no key needed.
    renderer = Renderer(cfg.templates_dir, Placeholders(secrets.token_bytes(32)))
    schedules = load_schedules(cfg.schedules_dir, cfg.timezone)
    sizes = []
    for name in sorted({s.mail.template for s in schedules.values()}):
        rendered = renderer.render(sample_view(cfg, now), name)
        sizes.append(f"{name} {len(rendered.html.encode()) // 1024} KB")
    for letter in ("confirm", "reengage"):  # the one-button letters of every list
        page = {"list_name": "—", "days": 7, "subject": letter, "site_url": cfg.site_url}
        renderer.render_page(letter, {**page, "site_name": cfg.site_name})
    return Check("templates", True, "render: " + ", ".join(sizes))


def sample_view(cfg: Settings, now: datetime) -> EditionView:
    """A one-article edition: enough to see every template render."""
    article = ArticleView(
        id=1,
        title="Проверка шаблона",
        url=cfg.site_url,
        lead="Проверочный анонс.",
        section="news",
        section_title="Новости",
        section_position=1,
        published_at=now,
        views=1,
        image_url=None,
        image_caption=None,
        discussed=False,
        comments_in_window=0,
        comments_total=0,
        top_comment=None,
    )
    return EditionView(
        site_name=cfg.site_name,
        site_url=cfg.site_url,
        list_name="doctor",
        list_description="",
        edition_date=now.astimezone(cfg.zone).date(),
        window_days=1,
        subject="doctor",
        preheader="doctor",
        lead=article,
        day=[],
        discussed=[],
        zone=cfg.zone,
        intro=None,
    )


def _desk(cfg: Settings) -> Check:
    engine = db.make_engine(cfg.database)
    try:
        with db.session_factory(engine)() as session:
            accounts = store.editors(session)
            failures = store.failed_logins_since(session, utcnow() - timedelta(days=1))
    finally:
        engine.dispose()
    from_env = sorted(cfg.editor_accounts())
    if not accounts and not from_env:
        return Check(
            "desk", True, "closed: no account (`digest editors add NAME --admin`)", warning=True
        )
    if accounts:
        names = ", ".join(f"{a.name} ({a.role})" for a in accounts)
        ignored = "; DIGEST_EDITORS is not read any more: remove it" if from_env else ""
    else:
        names = f"{', '.join(from_env)} (from DIGEST_EDITORS, kept at the desk's first use)"
        ignored = ""
    throttle = (
        f"wrong passwords throttled per name and address ({deskauth.FREE} free, then "
        f"2, 4, 8 … s; locked {deskauth.LOCK.seconds // 60} min after {deskauth.LOCK_AFTER})"
    )
    return Check(
        "desk",
        True,
        f"accounts: {names}{ignored}; {throttle}; {failures} failed login(s) in 24 h",
        warning=failures >= deskauth.LOCK_AFTER or bool(ignored),
    )


def _smtp(cfg: Settings, target: SmtpTarget) -> Check:
    connection = connector(cfg.smtp)(target)
    return asyncio.run(_smtp_talk(connection, str(target)))


async def _smtp_talk(connection: SmtpConnection, label: str) -> Check:
    await connection.open()
    try:
        said = ["EHLO ok"]
        if connection.target.starttls or connection.target.implicit_tls:
            said.append("TLS ok")
        if connection.target.username:
            said.append("AUTH ok")
        if "size" in connection.extensions:
            said.append(f"SIZE {connection.extensions['size'] or '?'}")
        if connection.line is not None:
            said.append("PIPELINING used")
        return Check(f"smtp {label}", True, ", ".join(said))
    finally:
        await connection.close()


def _dkim(cfg: Settings) -> Check:
    keys = dkim_keys(cfg.dkim)
    if not keys:
        return Check("dkim", True, "not signing (DIGEST_DKIM_KEY_FILE unset: the MTA signs)")
    sample = (
        f"From: {cfg.sender.addr_spec}\r\nTo: doctor@example.org\r\nSubject: doctor\r\n"
        "Date: Wed, 25 Nov 2026 07:00:00 +0300\r\nMessage-ID: <doctor@example.org>\r\n"
        "\r\nbody\r\n"
    ).encode("ascii")
    records = {f"{k.selector}._domainkey.{k.domain}.": k.dns_record().encode() for k in keys}
    signed = Signer(keys).sign(sample)
    # Each signature in turn (dkimpy verifies the one at index ``idx``).
    for idx, key in enumerate(keys):
        if not dkim.DKIM(signed).verify(
            idx, dnsfunc=lambda name, **_kw: records.get(name.decode())
        ):
            return Check(
                "dkim", False, f"{key.type} key {key.selector}: a signature does not verify"
            )
    names = ", ".join(f"{k.type} as {k.selector}._domainkey.{k.domain}" for k in keys)
    return Check("dkim", True, f"signs: {names}")
