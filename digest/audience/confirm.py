"""Double opt-in: the confirmation mail and its signed, expiring link.

A pending subscriber gets one mail in the digest's look (``templates/confirm.*``)
with ``/confirm/TOKEN``; the token carries its signing time, so the link stops
working after the list's ``confirm_days``. The mail is rendered (and its CSS
inlined) once per run; only the link and address differ per subscriber.
Pending subscribers never get a digest: deliveries go to active ones only.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from digest.audience.lists import MailingList
from digest.audience.subscribers import SubscriberBook
from digest.audience.wayback import bound, mark
from digest.compose import Composer, EditionMail, Message, Recipient
from digest.config import Settings
from digest.errors import ComposeError
from digest.models import Subscriber, SubscriberStatus
from digest.render import Renderer
from digest.send import Single, SmtpConnection, send_each
from digest.tokens import LinkSigner


@dataclass
class InviteReport:
    sent: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "address: code reply"


class ListLetter:
    """A one-button letter of a list in the digest's look (``templates/NAME.*``):
    rendered and inlined once, only the button's link and the address differ per
    reader. The confirmation mail and the sunset rule's «still reading?» are two."""

    template = "confirm"
    button = "CONFIRM_URL"  # the slot the button's link fills

    def __init__(
        self,
        settings: Settings,
        mailing_list: MailingList,
        renderer: Renderer,
        composer: Composer,
        clock: Callable[[], datetime],
        signer: LinkSigner,
    ) -> None:
        self.settings = settings
        self.list = mailing_list
        self.renderer = renderer
        self.composer = composer
        self.clock = clock
        self.signer = signer
        self._body: tuple[str, str] | None = None

    @property
    def subject(self) -> str:
        raise NotImplementedError

    def link(self, subscriber: Subscriber) -> str:
        raise NotImplementedError

    def context(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "site_name": self.settings.site_name,
            "site_url": self.settings.site_url,
            "list_name": self.list.name,
        }

    def _rendered(self) -> tuple[str, str]:
        if self._body is None:
            page = self.renderer.render_page(self.template, self.context())
            self._body = (page.html, page.text)
        return self._body

    def message(self, subscriber: Subscriber) -> Message:
        body_html, body_text = self._rendered()
        url = self.link(subscriber)
        mail = EditionMail(0, self.template, self.clock().date(), self.subject)
        slot = self.composer.placeholders.mark(self.button)
        template = self.composer.template(
            mail, body_html.replace(slot, html.escape(url)), body_text.replace(slot, url)
        )
        recipient = Recipient(
            subscriber.id, subscriber.email, subscriber.name, subscriber.token_key
        )
        return self.composer.message(template, recipient)

    async def deliver(
        self,
        subscribers: list[Subscriber],
        connection: SmtpConnection,
        sign: Callable[[bytes], bytes] | None,
        sent: Callable[[Subscriber], None],
    ) -> InviteReport:
        """Send each its letter; ``sent`` is told of each only once the relay took it."""
        report = InviteReport()
        ready: list[tuple[Subscriber, Message]] = []
        for subscriber in subscribers:
            try:
                ready.append((subscriber, self.message(subscriber)))
            except ComposeError as exc:  # one unusable address; the others go on
                report.failed.append(f"{subscriber.email}: {exc}")
        results: list[Single] = await send_each(connection, [m for _, m in ready], sign)
        for (subscriber, _), result in zip(ready, results, strict=True):
            if result.ok:
                sent(subscriber)
                report.sent.append(subscriber.email)
            else:
                report.failed.append(f"{subscriber.email}: {result.code} {result.reply}")
        return report


class Invitations(ListLetter):
    """Composes and sends confirmation mail for one list."""

    @property
    def subject(self) -> str:
        return f"Подтвердите подписку на рассылку «{self.list.name}»"

    def link(self, subscriber: Subscriber) -> str:
        """A pending reader's link; for one who left and asked to come back, a link
        bound to that unsubscribe (``wayback``): no earlier link brings them back."""
        if subscriber.status is SubscriberStatus.UNSUBSCRIBED:
            token = self.signer.again.sign(bound(subscriber.token_key, mark(subscriber)))
        else:
            token = self.signer.confirm.sign(subscriber.token_key)
        return f"{self.settings.base_url.rstrip('/')}/confirm/{token}"

    def context(self) -> dict[str, Any]:
        return {**super().context(), "days": self.list.confirm_days}

    async def send(
        self,
        book: SubscriberBook,
        subscribers: list[Subscriber],
        connection: SmtpConnection,
        sign: Callable[[bytes], bytes] | None,
    ) -> InviteReport:
        """Send each its mail; a subscriber is marked invited only once the relay took it."""
        return await self.deliver(
            subscribers, connection, sign, lambda subscriber: book.mark_invited(subscriber.id)
        )
