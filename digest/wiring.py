"""The composition root: the services of one entry point, built once, in order,
each with exactly the collaborators it uses.

    sources → editions → lifecycle → corrections → sender → previews → reports → runner → scheduling
    → desk → shaping

``digest`` commands, the web app, the scheduler, a sender process and the tests
each build one ``Services`` and call the service they need. Nothing below the
doors imports this module: a service is handed what it uses, never the whole.
"""

from __future__ import annotations

from functools import cached_property

from digest.audience.remote import PER_TOKEN_PER_HOUR, RemoteReaders
from digest.audience.signup import Signups
from digest.audience.sunset import Sunset
from digest.audience.wayback import WayBack
from digest.config import Settings
from digest.config.values import parse_names
from digest.db import Factory
from digest.edition.archive import Archive
from digest.edition.build import Editions
from digest.edition.corrections import Corrections
from digest.edition.desk import DeskView
from digest.edition.lifecycle import Lifecycle
from digest.edition.preview import Previews
from digest.edition.remote import RemoteEditions
from digest.edition.sending import Sender
from digest.edition.shaping import Shaping
from digest.edition.special import Specials
from digest.models import Clock
from digest.schedule.files import Schedule
from digest.schedule.jobs import Scheduling
from digest.schedule.runner import Runner
from digest.send.senders import Entry
from digest.sources.sync import Sources
from digest.support import Support
from digest.team.accounts import Accounts
from digest.team.apikeys import ApiTokens
from digest.team.idempotency import Idempotency
from digest.toolkit import Toolkit
from digest.track.growth import Growth
from digest.track.reports import Reports
from digest.track.retention import Retention


class Services:
    """Everything an entry point calls, built once. ``sender_entry``: what the extra
    sender processes of a `digest send` run (the CLI gives its own; without one a
    send runs in its process alone)."""

    def __init__(
        self, settings: Settings, factory: Factory, clock: Clock, sender_entry: Entry | None = None
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.clock = clock
        self.tools = tools = Toolkit(settings, clock)
        self.sources = Sources(factory, clock, settings.sources_dir)
        self.editions = Editions(factory, clock, tools, self.sources.before_build)
        self.lifecycle = Lifecycle(factory, clock, self.editions)
        self.corrections = Corrections(factory, clock, tools, self.editions)
        self.sender = Sender(
            factory, clock, tools, self.lifecycle, self.corrections, entry=sender_entry
        )
        self.previews = Previews(factory, tools, self.sender)
        self.reports = Reports(factory, clock)
        self.retention = Retention(factory, clock, settings.soft_bounce_days)
        self.growth = Growth(factory, clock)
        self.runner = Runner(factory, clock, tools, self.editions, self.lifecycle)
        self.archive = Archive(factory, tools)
        self.wayback = WayBack(factory, clock)
        self.sunset = Sunset(
            factory, clock, tools, settings.sunset_after, settings.sunset_grace_days
        )
        self.scheduling = Scheduling(
            settings,
            factory,
            clock,
            self.runner,
            self.sender,
            self.sunset,
            self.sources,
            self.retention,
        )
        # The desk's accounts; the environment's seed the first ones (issue 28 §3).
        self.accounts = Accounts(
            factory, clock, lambda: (settings.editor_accounts(), parse_names(settings.desk_admins))
        )
        self.specials = Specials(factory, clock, self.editions, self.lifecycle)
        self.desk = DeskView(factory, clock, tools, self.previews)
        self.shaping = Shaping(
            factory, clock, tools, self.editions, self.lifecycle, self.previews, self.desk
        )

        # The HTTP API (issue 30): its tokens, its safe retries, editions for scripts.
        self.api_tokens = ApiTokens(
            factory, clock, lambda: tools.keyring().secret, settings.api_rate
        )
        self.idempotency = Idempotency(factory, clock)
        self.remote_editions = RemoteEditions(factory, clock, tools, self.lifecycle, self.previews)

    @cached_property
    def remote_readers(self) -> RemoteReaders:
        """Readers for the API: the subscription box's rules, counted by token. Built
        on first use (it needs the link key; commands that never sign need none)."""
        signups = Signups(
            self.factory, self.clock, self.tools.keyring().secret, self.wayback,
            per_network=PER_TOKEN_PER_HOUR,
        )  # fmt: skip
        return RemoteReaders(self.factory, self.clock, signups)

    def support(self, list_name: str = "daily") -> Support:
        """Reader care for one list (the desk's Readers page, the subscription box)."""
        return Support(self.factory, self.clock, self.tools, self.wayback, list_name)

    def schedule(self, name: str) -> Schedule:
        """A schedule file by name (what every door asks first)."""
        return self.tools.schedule(name)
