"""The checks `/healthz` answers with and `digest doctor` starts with: the database
answers at the code's schema, and a scheduler that runs is beating."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from digest import db, store
from digest.config.values import masked_url
from digest.db import DatabaseError, Engine, Factory
from digest.errors import DatabaseAway, DigestError

HEARTBEAT_EVERY = 30.0  # seconds between a scheduler's beats
STALE_AFTER = 3 * HEARTBEAT_EVERY + 10  # three beats missed: it is gone


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    warning: bool = False  # works, but worth a look

    def as_json(self) -> dict[str, object]:
        return {"check": self.name, "ok": self.ok, "warning": self.warning, "detail": self.detail}


def guard(name: str, check: Callable[[], Check]) -> Check:
    """A check that raises is a failed check with the reason, never a traceback."""
    try:
        return check()
    except (DigestError, OSError, DatabaseError, ValueError) as exc:
        return Check(name, False, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def database(engine: Engine) -> Check:
    try:
        db.check_schema(engine)
    except DatabaseAway as exc:  # issue 18: say it plainly, the page is 503 meanwhile
        return Check("database", False, f"down: {exc}")
    revision = db.current_revision(engine)
    shown = masked_url(engine.url.render_as_string(hide_password=False))
    return Check("database", True, f"{shown} at revision {revision}")


def scheduler(factory: Factory, now: datetime) -> Check:
    """The newest scheduler beat is fresh; none at all is fine (cron, or no scheduler)."""
    with factory() as session:
        beats = store.heartbeats(session, "scheduler")
    if not beats:
        return Check("scheduler", True, "none running (cron or `digest run` instead)")
    name, at = max(beats.items(), key=lambda item: item[1])
    age = (now - at).total_seconds()
    if age > STALE_AFTER:
        return Check("scheduler", False, f"{name} last beat {age:.0f} s ago: it is not running")
    return Check("scheduler", True, f"{name} beat {age:.0f} s ago")


def health(factory: Factory, now: datetime) -> list[Check]:
    """What `/healthz` answers: a failed one makes it 503."""
    engine = db.engine_of(factory)
    checks = [guard("database", lambda: database(engine))]
    if checks[0].ok:
        checks.append(guard("scheduler", lambda: scheduler(factory, now)))
    return checks
