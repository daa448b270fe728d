"""Returned mail from a mailbox: every message of a Maildir or an mbox read by
``bounces.BounceReader`` and applied by ``ledger.apply_return``, one message and
one transaction at a time. A message is a stranger's (issue 24): whatever it
makes a parser do (a missing header, MIME nested thousands deep, a NUL byte the
database refuses), it is set aside with its reason and the rest go on; only the
database going away stops the intake."""

from __future__ import annotations

import email
import logging
import mailbox
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from digest.audience.subscribers import SubscriberBook
from digest.db import DatabaseError, Factory, is_unavailable, transaction
from digest.errors import DigestError
from digest.headers import clean_text
from digest.tokens import LinkSigner, unsubscribe_key
from digest.track.bounces import RECIPIENT_HEADERS, BounceReader, Unparseable
from digest.track.outcomes import SoftBouncePolicy
from digest.track.returns import apply_return

log = logging.getLogger(__name__)
PROCESSED_FOLDER = "processed"


@dataclass
class Source:
    """A Maildir or an mbox.

    Maildir: only unseen messages are read. An applied one moves to the
    ``.processed`` folder; one that could not be understood or attributed stays
    for a person to read, moved from ``new/`` to ``cur/`` with the ``S`` (seen)
    flag, as a mail client would, so a cron run does not report it again.
    mbox: read whole and left as it is (it may be appended to while we read);
    applying a report twice changes nothing more."""

    path: Path
    box: mailbox.Mailbox[Any] = field(init=False)

    def __post_init__(self) -> None:
        if self.path.is_dir():
            if not (self.path / "cur").is_dir() and not (self.path / "new").is_dir():
                raise DigestError(f"{self.path}: a folder but not a Maildir (no cur/ or new/)")
            self.box = mailbox.Maildir(self.path, factory=None, create=False)
        elif self.path.is_file():
            self.box = mailbox.mbox(self.path, create=False)
        else:
            raise DigestError(f"{self.path}: no such Maildir or mbox")

    @property
    def keeps_track(self) -> bool:
        return isinstance(self.box, mailbox.Maildir)

    def messages(self) -> Iterator[tuple[str, bytes]]:
        if not isinstance(self.box, mailbox.Maildir):
            for key in list(self.box.keys()):
                yield key, self.box.get_bytes(key)
            return
        # A Maildir's flags are in its file names ("KEY:2,FLAGS"): read from there,
        # never by parsing a stranger's message (which may be built to break it).
        for key, (sub, info) in sorted(self._files().items()):
            if sub == "cur" and "S" in info.partition(",")[2]:
                continue
            try:
                yield key, self.box.get_bytes(key)
            except KeyError:  # removed meanwhile by another reader
                continue

    def _files(self) -> dict[str, tuple[str, str]]:
        """Each message's key → its subfolder and its info (flags)."""
        assert isinstance(self.box, mailbox.Maildir)
        found = {}
        for sub in ("new", "cur"):
            for name in os.listdir(self.path / sub) if (self.path / sub).is_dir() else ():
                if not name.startswith("."):
                    key, _, info = name.partition(self.box.colon)
                    found[key] = (sub, info)
        return found

    def where(self, key: str) -> str:
        """The message's file, as a person would look for it."""
        if not isinstance(self.box, mailbox.Maildir):
            return f"{self.path} (message {key})"
        sub, info = self._files().get(key, ("new", ""))
        name = key + (self.box.colon + info if info else "")
        return f"{self.path}/{sub}/{name}"

    def keep(self, key: str) -> None:
        """Leave it in place, marked as seen (moved to cur/ with the S flag)."""
        if not isinstance(self.box, mailbox.Maildir):
            return
        sub, info = self._files()[key]
        flags = "".join(sorted(set(info.partition(",")[2]) | {"S"}))
        old = self.path / sub / (key + (self.box.colon + info if info else ""))
        os.replace(old, self.path / "cur" / f"{key}{self.box.colon}2,{flags}")

    def done(self, key: str) -> None:
        if not isinstance(self.box, mailbox.Maildir):
            return
        folder = (
            self.box.get_folder(PROCESSED_FOLDER)
            if PROCESSED_FOLDER in self.box.list_folders()
            else self.box.add_folder(PROCESSED_FOLDER)
        )
        folder.add(self.box.get_bytes(key))
        self.box.remove(key)


@dataclass
class ReturnsReport:
    messages: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def set_aside(self, source: Source, key: str, where: str, what: str | None, why: str) -> None:
        """Left in place, marked seen (not read again), its reason said."""
        if what is not None:
            self.count(what)
            log.warning("returned mail set aside: %s: %s", where, why)
        else:
            log.warning("returned mail names no delivery of ours, not applied: %s", where)
        self.problems.append(f"{where}: {why}")
        source.keep(key)


def process_returns(
    factory: Factory,
    source: Source,
    reader: BounceReader,
    policy: SoftBouncePolicy,
    clock: Callable[[], datetime],
    tick: Callable[[int, int | None], None] = lambda done, total: None,
) -> ReturnsReport:
    """Read every message of ``source`` and apply what it says, one transaction per
    message: a bad one is counted, set aside with its reason, and the rest go on.
    ``tick`` hears how many were read (a terminal's progress bar)."""
    report = ReturnsReport()
    for key, data in source.messages():
        report.messages += 1
        if report.messages % 50 == 0:
            tick(report.messages, None)
        where = source.where(key)
        try:
            done = _apply(factory, reader, data, where, policy, clock)
        except Unparseable as exc:
            report.set_aside(source, key, where, "unparseable", str(exc))
            continue
        except DatabaseError as exc:
            if is_unavailable(exc):
                raise  # the database away: stop, the message stays unread for next time
            report.set_aside(source, key, where, "unreadable", f"the database refused it ({exc})")
            continue
        except Exception as exc:  # noqa: BLE001 - a stranger's message broke a parser
            why = f"could not be read ({type(exc).__name__}: {clean_text(str(exc), 200)})"
            report.set_aside(source, key, where, "unreadable", why)
            continue
        for what in done:
            report.count(what)
        if "unattributed" in done:
            # Counted, logged, never applied: no token of ours and no Message-ID of ours.
            why = "no VERP token or Message-ID of ours; not applied"
            report.set_aside(source, key, where, None, why)
            continue
        source.done(key)
    tick(report.messages, report.messages)
    return report


def _apply(
    factory: Factory,
    reader: BounceReader,
    data: bytes,
    where: str,
    policy: SoftBouncePolicy,
    clock: Callable[[], datetime],
) -> list[str]:
    findings = reader.read(data)
    evidence = _evidence(data, where)
    with transaction(factory) as session:
        return [
            apply_return(session, replace(f, report=evidence), clock(), policy) for f in findings
        ]


def _evidence(data: bytes, where: str) -> str:
    """The report as an admin would look for it: its file, its sender and date."""
    headers = email.message_from_bytes(_header_block(data, 8192))
    said = [f"{name}: {clean_text(str(headers[name]), 120)}" for name in ("From", "Date")
            if headers[name]]  # fmt: skip
    return "; ".join([where, *said])


def process_unsubscribes(
    source: Source, signers: list[LinkSigner], book: SubscriberBook, domain: str
) -> ReturnsReport:
    """Mail sent to ``unsubscribe+TOKEN@domain`` (the List-Unsubscribe mailto):
    a valid token unsubscribes its subscriber; anything else stays in place."""
    pattern = re.compile(rf"unsubscribe\+([A-Za-z0-9._-]+)@{re.escape(domain)}", re.I)
    report = ReturnsReport()
    for key, data in source.messages():
        report.messages += 1
        token_key = _unsubscribe_key(data, pattern, signers)
        if token_key is None:
            report.count("unreadable")
            report.problems.append(f"{source.path}/{key}: no valid unsubscribe+TOKEN address")
            continue
        book.unsubscribe_key(token_key, "mailto")
        report.count("unsubscribed")
        source.done(key)
    return report


def _unsubscribe_key(
    data: bytes, pattern: re.Pattern[str], signers: list[LinkSigner]
) -> str | None:
    # Only the header block: a stranger's body is never parsed here.
    msg = email.message_from_bytes(_header_block(data, 65536))
    for name in RECIPIENT_HEADERS:
        for value in msg.get_all(name) or []:
            match = pattern.search(str(value))
            if match:
                found = unsubscribe_key(signers, match.group(1))
                if found is not None:
                    return found
    return None


def _header_block(data: bytes, limit: int) -> bytes:
    return re.split(rb"\r?\n\r?\n", data[:limit], maxsplit=1)[0]
