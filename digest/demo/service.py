"""`digest demo` as a service: a key for the demo, the schema, the data and the
readers, and the send through a local capture server when no relay is set."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from digest.capture import CaptureHandler, CaptureServer
from digest.config import Settings, SmtpTarget, parse_smtp_url
from digest.db import Factory
from digest.demo.data import add_subscribers, build, load
from digest.files import write_private
from digest.ingest import IngestReport
from digest.models import Clock, utcnow
from digest.schedule.files import Schedule


def ensure_key(cfg: Settings) -> bool:
    """A link key for the demo in var/ when none is set: True when one was made."""
    if cfg.secret_key is not None or cfg.secret_key_file.is_file():
        return False
    key = secrets.token_urlsafe(32) + "\n"
    write_private(cfg.secret_key_file, key.encode("ascii"), exclusive=True)
    return True


@dataclass(frozen=True)
class Loaded:
    report: IngestReport
    readers: int
    new_readers: int


def load_demo(
    factory: Factory,
    clock: Clock,
    schedule: Schedule,
    on: date,
    readers: int,
    articles: bool = True,
) -> Loaded:
    """The seed-based articles of ``on``'s window (unless a site's database gives
    them) and ``readers`` demo readers."""
    report = load(factory, build(schedule, on), clock) if articles else IngestReport()
    total, added = add_subscribers(factory, readers, now=utcnow())
    return Loaded(report, total, added)


@dataclass(frozen=True)
class Outbox:
    folder: Path
    relay: SmtpTarget
    server: CaptureServer

    @property
    def received(self) -> int:
        return len(self.server.messages)


@contextlib.contextmanager
def capture_outbox(cfg: Settings) -> Iterator[Outbox]:
    """A capture server on 127.0.0.1 that saves each message in var/outbox/."""
    folder = cfg.var_dir / "outbox"
    with CaptureServer(CaptureHandler(folder)) as server:
        yield Outbox(folder, parse_smtp_url(server.url), server)
