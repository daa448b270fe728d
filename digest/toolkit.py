"""The tools every service makes its mail with, made from the settings: schedules
and lists by name, the renderer and its slots, the link signers, composers and
trackers, the confirmation mail, DKIM, relays and connections.

``wiring`` builds one per entry point and hands it to the services that use it;
nothing else builds a composer, a link signer, a relay pool or a DKIM signer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from digest.audience.confirm import ListLetter
from digest.audience.lists import MailingList, get_list
from digest.compose import Composer, Placeholders
from digest.config import Settings, SmtpTarget
from digest.config.values import is_https
from digest.dkim import DkimSigner, Signer, dkim_keys
from digest.models import Clock
from digest.render import Renderer
from digest.schedule.files import Schedule, load_schedule
from digest.send import DomainGate, RelayPool, SmtpConnection, connector
from digest.tokens import Keyring, LinkSigner
from digest.track.engagement import Tracker

log = logging.getLogger(__name__)
L = TypeVar("L", bound=ListLetter)


class Toolkit:
    """The installation's tools, made once (the signers, DKIM's keys) or on each
    ask (a composer for a list, a relay pool for a send)."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        # One stem for every slot this installation renders and composes (the key is
        # read on first use, so commands that never render need none).
        self.placeholders = Placeholders(settings.link_key)
        self.renderer = Renderer(settings.templates_dir, self.placeholders)
        self._dkim: DkimSigner | None = None
        self._keyring: Keyring | None = None

    def schedule(self, name: str) -> Schedule:
        return load_schedule(self.settings.schedules_dir, name, self.settings.timezone)

    def mailing_list(self, schedule: Schedule) -> MailingList:
        return get_list(self.settings.subscribers_dir, schedule.list)

    def keyring(self) -> Keyring:
        """The link key's signers, made on first use (commands that never sign a link
        need no key)."""
        if self._keyring is None:
            self._keyring = Keyring(self.settings.link_key())
        return self._keyring

    def link_signer(self, mailing_list: MailingList) -> LinkSigner:
        """The signer of a list's personal links (its own key, from the installation's)."""
        return self.keyring().for_list(mailing_list.key)

    def tracker(self, schedule: Schedule) -> Tracker:
        mailing_list = self.mailing_list(schedule)
        return Tracker(
            mailing_list, self.link_signer(mailing_list), self.settings.base_url, self.placeholders
        )

    def composer(self, schedule: Schedule) -> Composer:
        return self.list_composer(self.mailing_list(schedule))

    def list_composer(self, mailing_list: MailingList) -> Composer:
        if not is_https(self.settings.base_url):
            log.warning(
                "DIGEST_BASE_URL %s is not https: Gmail and Yahoo will not offer one-click "
                "unsubscribe (RFC 8058)",
                self.settings.base_url,
            )
        return Composer(
            sender=self.settings.sender,
            mailing_list=mailing_list,
            signer=self.link_signer(mailing_list),
            base_url=self.settings.base_url,
            feedback_sender_id=self.settings.feedback_sender_id,
            clock=self.clock,
            placeholders=self.placeholders,
            envelope_from=self.settings.return_path,
            verp=self.settings.verp,
        )

    def letter(self, kind: type[L], mailing_list: MailingList) -> L:
        """A one-button letter of the list (the confirmation, «still reading?»)."""
        return kind(
            self.settings,
            mailing_list,
            self.renderer,
            self.list_composer(mailing_list),
            self.clock,
            self.link_signer(mailing_list),
        )

    def connector(self) -> Callable[[SmtpTarget], SmtpConnection]:
        return connector(self.settings.smtp)

    def single_connection(
        self, why: str = "say where to send (smtp://host:port)"
    ) -> SmtpConnection:
        """A connection to the first relay for one-off mail (a test copy, confirmations);
        ConfigError saying what waits when no relay is set."""
        return self.connector()(self.settings.require_relays(why)[0])

    def signing_step(self) -> Callable[[bytes], bytes] | None:
        """DKIM for the odd single message (test copy, confirmation), in process."""
        keys = dkim_keys(self.settings.dkim)
        return Signer(keys).sign if keys else None

    def dkim_signer(self) -> DkimSigner:
        """A send's signer, its keys read and parsed once, on first use."""
        if self._dkim is None:
            self._dkim = DkimSigner(dkim_keys(self.settings.dkim))
        return self._dkim

    def relay_pool(self, via: SmtpTarget | None = None) -> RelayPool:
        """The configured relays (or just ``via``), each resting after a failure."""
        smtp = self.settings.smtp
        relays = [via] if via is not None else list(smtp.relays)
        return RelayPool(relays, cooldown=smtp.relay_cooldown, outage_limit=smtp.relay_outage_limit)

    def domain_gate(self, share: int = 1) -> DomainGate:
        """Each domain's pauses and caps; a process that starts with ``share`` - 1
        others keeps 1/share of each domain's window until its heartbeat counts the
        senders (the caps are one schedule for all: ``SendRun``)."""
        smtp = self.settings.smtp
        gate = DomainGate(
            pause=smtp.domain_pause,
            max_pause=smtp.domain_max_pause,
            cohort=smtp.domain_failed_cohort,
            connections=smtp.connections,
            caps=dict(smtp.caps),
        )
        gate.senders = share
        return gate
