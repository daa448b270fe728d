"""The sunset rule (issue 28 §5), off unless ``DIGEST_SUNSET_AFTER`` names months.

Mail that nobody opens teaches Gmail and Mail.ru that the list is unwanted, and
every reader's mail suffers for it. So a reader who was sent mail but has not
clicked a link for that many months gets one letter, «Вы ещё читаете?», with a
button; whoever does not press it (or click anything) within
``DIGEST_SUNSET_GRACE_DAYS`` is paused: kept, with their consent, but not
mailed. The letter's button brings them back whenever they press it.

What an outsider holds here is the letter's link (a forwarded letter): it can
only keep sending the digest to a reader who consented and never left; it never
brings back anyone who unsubscribed, bounced or complained. What could go wrong
from inside is worse: without per-reader clicks every reader looks silent, so
the rule refuses to run unless the list tells readers' clicks apart and has done
so for the whole period.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from digest import store
from digest.audience.confirm import ListLetter
from digest.audience.lists import MailingList, get_list
from digest.audience.wayback import seen
from digest.db import transaction
from digest.errors import DigestError
from digest.models import Event, EventKind, Subscriber, SubscriberStatus

if TYPE_CHECKING:
    from digest.db import Factory
    from digest.models import Clock
    from digest.toolkit import Toolkit

log = logging.getLogger(__name__)

KEEP_DAYS = 180  # how long the letter's button works (after the pause too)
BATCH = 500
MONTH = timedelta(days=30)


class SunsetRefused(DigestError):
    """The sunset rule cannot run safely now."""


class StillReading(ListLetter):
    """The one re-engagement letter (``templates/reengage.*``)."""

    template = "reengage"
    button = "KEEP_URL"
    grace_days = 14

    @property
    def subject(self) -> str:
        return f"Вы ещё читаете рассылку «{self.list.name}»?"

    def link(self, subscriber: Subscriber) -> str:
        token = self.signer.keep.sign(subscriber.token_key)
        return f"{self.settings.base_url.rstrip('/')}/keep/{token}"

    def context(self) -> dict[str, Any]:
        return {**super().context(), "days": self.grace_days}


@dataclass
class SunsetReport:
    asked: list[str] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    dry_run: bool = False


class Sunset:
    """``Services.sunset``: who is asked, who is paused, who comes back."""

    def __init__(
        self, factory: Factory, clock: Clock, tools: Toolkit, months: int, grace_days: int
    ) -> None:
        self.factory = factory
        self.clock = clock
        self.tools = tools
        self.months = months
        self.grace = timedelta(days=grace_days)

    @property
    def on(self) -> bool:
        return self.months > 0

    def check(self, mailing_list: MailingList) -> datetime:
        """The cutoff (clicks since it count), or why the rule must not run."""
        if not self.on:
            raise SunsetRefused("the sunset rule is off (DIGEST_SUNSET_AFTER=0)")
        if not mailing_list.clicks_per_reader:
            raise SunsetRefused(
                f"list {mailing_list.key!r} does not tell readers' clicks apart "
                "(track_clicks and individual_tracking in lists.toml): every reader "
                "would look silent, so nobody is paused"
            )
        cutoff = self.clock() - self.months * MONTH
        since = self._first_click()
        if since is None or since > cutoff:
            began = f"only since {since:%d.%m.%Y}" if since else "not yet"
            raise SunsetRefused(
                f"readers' clicks have been counted {began}; the sunset rule needs "
                f"{self.months} month(s) of them before it calls anyone silent"
            )
        return cutoff

    def _first_click(self) -> datetime | None:
        with self.factory() as session:
            return store.first_reader_click(session)

    async def run(self, list_name: str = "daily", *, dry_run: bool = False) -> SunsetReport:
        """Pause the readers asked and silent past the grace days; ask the silent
        ones not asked yet. Either may be none."""
        mailing_list = get_list(self.tools.settings.subscribers_dir, list_name)
        cutoff = self.check(mailing_list)
        now = self.clock()
        report = SunsetReport(dry_run=dry_run)
        for batch in self._batches(
            lambda s, a: store.silent_since_asked(s, cutoff, now - self.grace, a, BATCH)
        ):
            report.paused += [r.email for r in batch]
            if not dry_run:
                self._pause([r.id for r in batch], now)
        due = [
            r
            for batch in self._batches(lambda s, a: store.unengaged(s, cutoff, a, BATCH))
            for r in batch
        ]
        if dry_run or not due:
            report.asked = [r.email for r in due]
            return report
        letter = self.tools.letter(StillReading, mailing_list)
        letter.grace_days = self.grace.days
        connection = self.tools.single_connection("the re-engagement letters wait for a relay")
        sent = await letter.deliver(due, connection, self.tools.signing_step(), self._asked)
        report.asked, report.failed = sent.sent, sent.failed
        log.info(
            "sunset: %d asked, %d paused, %d failed",
            len(sent.sent),
            len(report.paused),
            len(sent.failed),
        )
        return report

    def _batches(self, query: Callable[[Any, int], list[Subscriber]]) -> Iterator[list[Subscriber]]:
        after = 0
        while True:
            with self.factory() as session:
                batch = query(session, after)
                session.expunge_all()
            if not batch:
                return
            yield batch
            after = batch[-1].id

    def _asked(self, reader: Subscriber) -> None:
        """The letter went (the relay took it): asked, once a period."""
        detail = {"months": self.months}
        event = Event(
            subscriber_id=reader.id, kind=EventKind.REENGAGE, at=self.clock(), detail=detail
        )
        with transaction(self.factory) as session:
            store.keep(session, event)

    def _pause(self, ids: list[int], now: datetime) -> None:
        with transaction(self.factory) as session:
            store.set_subscriber_status(session, ids, SubscriberStatus.PAUSED, now)
            detail = {"months": self.months, "grace_days": self.grace.days}
            store.add_events(
                session,
                [
                    {"kind": EventKind.SUNSET, "subscriber_id": i, "at": now, "detail": detail}
                    for i in ids
                ],
            )

    def keep(self, token_key: str, ip: str | None, agent: str | None) -> bool:
        """The letter's button: a reader still here stays, a paused one comes back.
        False for anyone else (who left, bounced or complained stays so)."""
        with transaction(self.factory) as session:
            found = store.subscriber_by_token(session, token_key)
            if found is None or found.status not in (
                SubscriberStatus.ACTIVE,
                SubscriberStatus.PAUSED,
            ):
                return False
            was = str(found.status)
            found.status = SubscriberStatus.ACTIVE
            detail = {"was": was, **seen(ip, agent)}
            store.keep(
                session,
                Event(subscriber_id=found.id, kind=EventKind.KEEP, at=self.clock(), detail=detail),
            )
            return True
