"""Looking without sending: the exact message a reader would get, a dry run of
the whole send, and one test copy to an editor."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from digest import store
from digest.compose import EditionMail, Message, Recipient
from digest.config.values import SmtpTarget
from digest.errors import EditionError
from digest.models import Edition
from digest.render import variant_key
from digest.schedule.files import Schedule
from digest.send import Single, run_async, send_each
from digest.send.dry import CapturingConnection, DryLedger
from digest.send.pacing import DomainGate
from digest.send.relays import RelayPool

if TYPE_CHECKING:
    from digest.db import Factory
    from digest.edition.sending import Sender
    from digest.toolkit import Toolkit

TEST_PREFIX = "[ТЕСТ] "
DRY_RELAY = SmtpTarget("dry-run.invalid", 25)  # never connected to: the capture takes it
SAMPLE = Recipient(subscriber_id=0, email="reader@example.ru", name="Читатель", token_key="preview")  # nosec B106  # a sample reader's link key for the preview, not a password


@dataclass
class DryRun:
    variants: int
    messages: int = 0
    bytes: int = 0
    skipped: int = 0
    problems: list[str] = field(default_factory=list)


class Previews:
    """``Services.previews``."""

    def __init__(self, factory: Factory, tools: Toolkit, sender: Sender) -> None:
        self.factory = factory
        self.tools = tools
        self.sender = sender

    def preview(
        self,
        schedule: Schedule,
        edition: Edition,
        email: str | None = None,
        subject_prefix: str = "",
        variant_key_: str | None = None,
        *,
        copy: bool = False,
    ) -> Message:
        """Exactly the message a subscriber (or a sample reader) would get;
        ``variant_key_`` picks a variant by key for the sample reader. A ``copy``
        (a test copy) has its own Message-ID and no reader's return path."""
        composer = self.tools.composer(schedule)
        with self.factory() as session:
            subscriber = store.subscriber_by_email(session, email) if email else None
            key = variant_key(subscriber.sections, subscriber.format) if subscriber else ""
            key = variant_key_ if variant_key_ is not None and subscriber is None else key
            variant = next((v for v in store.variants(session, edition.id) if v.key == key), None)
            subject = store.edition_by_id(session, edition.id).subject  # type: ignore[union-attr]
            delivery_id = (
                store.delivery_id_for(session, edition.id, subscriber.id) if subscriber else None
            )
        if email and subscriber is None and not copy:
            # A preview is a reader's own letter: an unknown address has none (a test
            # copy to any address is ``copy``).
            raise EditionError(
                f"no subscriber {email[:320]}: give a reader's address, or none for a sample reader"
            )
        if email and subscriber is None:
            recipient = Recipient(0, email, None, "test", copy=copy)
        elif subscriber is not None:
            recipient = Recipient(
                subscriber.id,
                subscriber.email,
                subscriber.name,
                subscriber.token_key,
                None if copy else delivery_id,
                copy=copy,
            )
        else:
            recipient = SAMPLE
        if variant is None or variant.articles == 0:
            raise EditionError(
                f"{edition.label}: nothing in the sections {recipient.email} chose",
                ru=f"{edition.label}: в разделах, которые выбрал {recipient.email}, ничего нет.",
            )
        mail = EditionMail(edition.id, schedule.name, edition.edition_date, subject)
        template = composer.template(
            mail, variant.html, variant.text, subject_prefix=subject_prefix
        )
        return composer.message(template, recipient)

    def dry_run(self, schedule: Schedule, edition: Edition, limit: int | None = None) -> DryRun:
        """The real send, captured: the same claim loop, composition, DKIM and
        connections, over every active reader (nothing written, nothing paced), with a
        connection that keeps the bytes instead of sending them."""
        with self.factory() as session:
            variants = {v.key: v.id for v in store.variants(session, edition.id) if v.articles}
        ledger = DryLedger(self.factory, schedule.audience(edition), variants)
        capture = CapturingConnection()
        run = self.sender.send_run(
            schedule,
            edition,
            lambda _relay: capture,
            worker="dry-run",
            relays=RelayPool([DRY_RELAY]),
            gate=DomainGate(connections=self.tools.settings.smtp.connections),
            limit=limit,
            ledger=ledger,
            paced=False,
        )
        result = run_async(run.run())
        return DryRun(
            len(variants), capture.messages, capture.bytes, result.suppressed, ledger.problems
        )

    def send_test(self, schedule: Schedule, edition: Edition, to: str) -> Single:
        """One copy to ``to``, «[ТЕСТ]» in the subject, signed like the real thing;
        not a delivery: no subscriber's counts change."""
        message = self.preview(schedule, edition, to, subject_prefix=TEST_PREFIX, copy=True)
        connection = self.tools.single_connection()
        (result,) = run_async(send_each(connection, [message], self.tools.signing_step()))
        return result
