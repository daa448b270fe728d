"""Reader care: what the desk's admins look up and do when a reader writes ("I do
not get the digest", "delete my data"). Every action is written to the audit
log with who and when; the reader is named there by the hash of the address,
so the log outlives a `forget`. The confirmation mail is sent here for the
subscription box too."""

from __future__ import annotations

import io
import logging
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from digest import store
from digest.audience.confirm import Invitations
from digest.audience.importer import ImportReport
from digest.audience.lists import MailingList, get_list
from digest.audience.rows import address_hash, describe, write_export
from digest.audience.subscribers import SubscriberBook
from digest.db import transaction
from digest.errors import DigestError
from digest.kinds import state_word
from digest.models import EventKind, Subscriber, SubscriberStatus

if TYPE_CHECKING:
    from digest.audience.wayback import WayBack
    from digest.db import Factory
    from digest.models import Clock
    from digest.toolkit import Toolkit

log = logging.getLogger(__name__)
SEARCH_LIMIT = 50
SHOWN_DELIVERIES = 20


class NoReader(DigestError):
    """No reader has that id (any more)."""


@dataclass(frozen=True)
class ReaderRow:
    id: int
    email: str
    name: str | None
    status: str
    created_at: datetime


@dataclass
class ReaderFile:
    """One reader as the Readers page shows them."""

    id: int
    email: str
    facts: dict[str, Any]
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    returns: list[dict[str, Any]] = field(default_factory=list)  # bounces and complaints
    audit: list[dict[str, Any]] = field(default_factory=list)


class Support:
    """``Services.support(list)``: reader care for one list's readers."""

    def __init__(
        self,
        factory: Factory,
        clock: Clock,
        tools: Toolkit,
        wayback: WayBack,
        list_name: str = "daily",
    ) -> None:
        self.factory = factory
        self.clock = clock
        self.tools = tools
        self.wayback = wayback
        self.list_name = list_name

    def mailing_list(self) -> MailingList:
        return get_list(self.tools.settings.subscribers_dir, self.list_name)

    def book(self) -> SubscriberBook:
        mailing_list = self.mailing_list()
        return SubscriberBook(
            self.factory,
            mailing_list.double_opt_in,
            mailing_list.default_sections,
            clock=self.clock,
        )

    def search(self, query: str) -> list[ReaderRow]:
        fragment = query.strip()[:320]
        if not fragment:
            return []
        with self.factory() as session:
            found = store.search_subscribers(session, fragment, SEARCH_LIMIT)
            return [ReaderRow(s.id, s.email, s.name, str(s.status), s.created_at) for s in found]

    def reader(self, reader_id: int) -> ReaderFile:
        with self.factory() as session:
            found = self._get(session, reader_id)
            file = ReaderFile(found.id, found.email, describe(found))
            for delivery, edition in store.deliveries_of(session, found.id)[-SHOWN_DELIVERIES:]:
                file.deliveries.append(
                    {
                        "edition": edition.label,
                        "status": str(delivery.status),
                        "at": delivery.sent_at or delivery.updated_at,
                        "code": delivery.smtp_code,
                        "reply": delivery.smtp_reply or "",
                        "attempts": delivery.attempts,
                    }
                )
            file.deliveries.reverse()  # the newest first
            for event in store.events_of(session, found.id):
                if event.kind in (EventKind.BOUNCE, EventKind.COMPLAINT):
                    file.returns.append(
                        {"kind": str(event.kind), "at": event.at, "detail": event.detail or {}}
                    )
            for entry in store.audit_of(session, address_hash(found.email)):
                file.audit.append(
                    {
                        "at": entry.at,
                        "editor": entry.editor,
                        "action": entry.action,
                        "detail": entry.detail or {},
                    }
                )
            return file

    def unsubscribe(self, reader_id: int, editor: str) -> str:
        email = self._email(reader_id)
        self.book().remove(email)
        self._audit(editor, "unsubscribe", email)
        return email

    def reactivate(self, reader_id: int, editor: str, reason: str) -> str:
        """A reader who left comes back because an admin says so, with the reason
        (the only way back after a hard bounce or a complaint: their evidence is on
        the same page)."""
        returned = self.wayback.reactivate(reader_id, reason)
        self._audit(editor, "reactivate", returned.email, {"was": returned.was, "reason": reason})
        return returned.email

    async def resend(self, reader_id: int, editor: str) -> str:
        """The confirmation mail again, to a pending reader (a sentence for the page)."""
        with self.factory() as session:
            found = self._get(session, reader_id)
            if found.status is not SubscriberStatus.PENDING:
                raise DigestError(
                    f"{found.email} is {found.status}: only a pending reader confirms",
                    ru=f"{found.email} — {state_word(found.status)}: подтверждает только "
                    "ждущий подтверждения.",
                )
            session.expunge(found)
        failed = await self.send_confirmation(self.mailing_list(), found)
        self._audit(editor, "resend", found.email, {"sent": failed is None})
        if failed is not None:
            raise DigestError(
                f"not sent to {found.email}: {failed}",
                ru=f"Не отправлено на {found.email}: {failed}",
            )
        return found.email

    async def send_confirmation(self, mailing_list: MailingList, reader: Subscriber) -> str | None:
        """The double opt-in mail to one reader now; None when the relay took it,
        else why not (no relay: it waits for `digest subscribers invite`)."""
        try:
            connection = self.tools.single_connection("it waits for `subscribers invite`")
            report = await self.tools.letter(Invitations, mailing_list).send(
                self.book(), [reader], connection, self.tools.signing_step()
            )
        except DigestError as exc:
            log.warning("confirmation mail not sent: %s", exc)
            return str(exc)
        for problem in report.failed:
            log.warning("confirmation mail not sent: %s", problem)
        return report.failed[0] if report.failed else None

    def export_csv(self, reader_id: int, editor: str) -> tuple[str, str]:
        """(file name, CSV): the same rows `digest subscribers export` writes."""
        email = self._email(reader_id)
        buffer = io.StringIO()
        write_export(self.book().export(email), buffer)
        self._audit(editor, "export", email)
        return f"reader-{reader_id}.csv", buffer.getvalue()

    def forget(self, reader_id: int, editor: str) -> str:
        email = self._email(reader_id)
        self.book().forget(email)
        self._audit(editor, "forget", email)
        return email

    def import_csv(self, data: bytes, name: str, editor: str) -> ImportReport:
        """The CLI's import, from an upload; problems are named by the file's name."""
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / (Path(name).name or "upload.csv")
            path.write_bytes(data)
            report = self.book().import_csv(path)
        self._audit(
            editor,
            "import",
            None,
            {"file": Path(name).name, "added": report.added, "rejected": report.rejected},
        )
        return report

    def _get(self, session: Any, reader_id: int) -> Subscriber:
        found = store.subscriber_by_id(session, reader_id)
        if found is None:
            raise NoReader(f"no reader {reader_id}", ru=f"Читателя {reader_id} нет.")
        return found

    def _email(self, reader_id: int) -> str:
        with self.factory() as session:
            return self._get(session, reader_id).email

    def _audit(
        self, editor: str, action: str, email: str | None, detail: dict[str, Any] | None = None
    ) -> None:
        with transaction(self.factory) as session:
            subject = address_hash(email) if email is not None else None
            store.add_audit(session, self.clock(), editor, action, subject, detail)
        log.info("desk: %s by %s", action, editor)
