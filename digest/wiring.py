"""The composition root: the services of one entry point, each built with exactly
the collaborators it uses, in order.

    sources → editions → lifecycle → corrections → sender → previews → reports → runner → scheduling
    → desk → shaping

``digest`` commands, the web app, the scheduler, a sender process and the tests
each build one ``Services`` and call the service they need. Nothing below the
doors imports this module: a service is handed what it uses, never the whole.

Each service is built, and its module imported, when it is first asked for (then
kept): `digest editors list` loads the accounts and the store, not the renderer,
premailer, the relays and the scheduler a send needs (issue 26 §3: a command
answers at once).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

if TYPE_CHECKING:
    from digest.audience.remote import RemoteReaders
    from digest.audience.sunset import Sunset
    from digest.audience.wayback import WayBack
    from digest.config import Settings
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
    from digest.kinds import Clock
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

T = TypeVar("T")


class built(Generic[T]):  # a word in use: `editions = built(_editions)`
    """A service made by ``make`` on first use and kept on the instance (the next
    read finds it in the instance's ``__dict__`` and never comes here again)."""

    name: str  # the attribute it is assigned to in the class

    def __init__(self, make: Callable[[Services], T]) -> None:
        self.make = make

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, services: None, owner: Any) -> built[T]: ...
    @overload
    def __get__(self, services: Services, owner: Any) -> T: ...
    def __get__(self, services: Services | None, owner: Any) -> built[T] | T:
        if services is None:
            return self
        # The web app's threads may ask at once: one of each service, ever (a service
        # holds state: a rate limiter, a sender's share). Re-entrant: a service's
        # maker asks for the services it is handed.
        with _building:
            if self.name not in services.__dict__:
                services.__dict__[self.name] = self.make(services)
        return services.__dict__[self.name]  # type: ignore[no-any-return]


_building = threading.RLock()


# Each maker imports its service's module when it runs, so a command loads what it uses.


def _tools(s: Services) -> Toolkit:
    from digest.toolkit import Toolkit

    return Toolkit(s.settings, s.clock)


def _sources(s: Services) -> Sources:
    from digest.sources.sync import Sources

    return Sources(s.factory, s.clock, s.settings.sources_dir)


def _editions(s: Services) -> Editions:
    from digest.edition.build import Editions

    # The sources (and the ingest's feedparser and lxml) only when an edition is built.
    return Editions(s.factory, s.clock, s.tools, lambda: s.sources.before_build())


def _lifecycle(s: Services) -> Lifecycle:
    from digest.edition.lifecycle import Lifecycle

    return Lifecycle(s.factory, s.clock, s.editions)


def _corrections(s: Services) -> Corrections:
    from digest.edition.corrections import Corrections

    return Corrections(s.factory, s.clock, s.tools, s.editions)


def _sender(s: Services) -> Sender:
    from digest.edition.sending import Sender

    return Sender(s.factory, s.clock, s.tools, s.lifecycle, s.corrections, entry=s.sender_entry)


def _previews(s: Services) -> Previews:
    from digest.edition.preview import Previews

    return Previews(s.factory, s.tools, s.sender)


def _reports(s: Services) -> Reports:
    from digest.db import engine_of
    from digest.track.reports import Reports

    return Reports(engine_of(s.factory), s.clock)


def _retention(s: Services) -> Retention:
    from digest.track.retention import Retention

    return Retention(s.factory, s.clock, s.settings.soft_bounce_days)


def _growth(s: Services) -> Growth:
    from digest.track.growth import Growth

    return Growth(s.factory, s.clock)


def _runner(s: Services) -> Runner:
    from digest.schedule.runner import Runner

    return Runner(s.factory, s.clock, s.tools, s.editions, s.lifecycle)


def _archive(s: Services) -> Archive:
    from digest.edition.archive import Archive

    return Archive(s.factory, s.tools)


def _wayback(s: Services) -> WayBack:
    from digest.audience.wayback import WayBack

    return WayBack(s.factory, s.clock)


def _sunset(s: Services) -> Sunset:
    from digest.audience.sunset import Sunset

    cfg = s.settings
    return Sunset(s.factory, s.clock, s.tools, cfg.sunset_after, cfg.sunset_grace_days)


def _scheduling(s: Services) -> Scheduling:
    from digest.schedule.jobs import Scheduling

    return Scheduling(
        s.settings, s.factory, s.clock, s.runner, s.sender, s.sunset, s.sources, s.retention
    )


def _accounts(s: Services) -> Accounts:
    from digest.config.values import parse_names
    from digest.team.accounts import Accounts

    cfg = s.settings
    # The desk's accounts; the environment's seed the first ones (issue 28 §3).
    return Accounts(
        s.factory, s.clock, lambda: (cfg.editor_accounts(), parse_names(cfg.desk_admins))
    )


def _specials(s: Services) -> Specials:
    from digest.edition.special import Specials

    return Specials(s.factory, s.clock, s.editions, s.lifecycle)


def _desk(s: Services) -> DeskView:
    from digest.edition.desk import DeskView

    return DeskView(s.factory, s.clock, s.tools, s.previews)


def _shaping(s: Services) -> Shaping:
    from digest.edition.shaping import Shaping

    return Shaping(s.factory, s.clock, s.tools, s.editions, s.lifecycle, s.previews, s.desk)


# The HTTP API (issue 30): its tokens, its safe retries, editions and readers for scripts.


def _api_tokens(s: Services) -> ApiTokens:
    from digest.team.apikeys import ApiTokens

    tools = s.tools
    return ApiTokens(s.factory, s.clock, lambda: tools.keyring().secret, s.settings.api_rate)


def _idempotency(s: Services) -> Idempotency:
    from digest.team.idempotency import Idempotency

    return Idempotency(s.factory, s.clock)


def _remote_editions(s: Services) -> RemoteEditions:
    from digest.edition.remote import RemoteEditions

    return RemoteEditions(s.factory, s.clock, s.tools, s.lifecycle, s.previews)


def _remote_readers(s: Services) -> RemoteReaders:
    """The subscription box's rules, counted by token (it needs the link key, so it
    is asked for only by the API)."""
    from digest.audience.remote import PER_TOKEN_PER_HOUR, RemoteReaders
    from digest.audience.signup import Signups

    secret = s.tools.keyring().secret
    signups = Signups(s.factory, s.clock, secret, s.wayback, per_network=PER_TOKEN_PER_HOUR)
    return RemoteReaders(s.factory, s.clock, signups)


class Services:
    """Everything an entry point calls, each built on first use. ``sender_entry``:
    what the extra sender processes of a `digest send` run (the CLI gives its own;
    without one a send runs in its process alone)."""

    def __init__(
        self, settings: Settings, factory: Factory, clock: Clock, sender_entry: Entry | None = None
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.clock = clock
        self.sender_entry = sender_entry

    # In the order they depend on each other.
    tools = built(_tools)
    sources = built(_sources)
    editions = built(_editions)
    lifecycle = built(_lifecycle)
    corrections = built(_corrections)
    sender = built(_sender)
    previews = built(_previews)
    reports = built(_reports)
    retention = built(_retention)
    growth = built(_growth)
    runner = built(_runner)
    archive = built(_archive)
    wayback = built(_wayback)
    sunset = built(_sunset)
    scheduling = built(_scheduling)
    accounts = built(_accounts)
    specials = built(_specials)
    desk = built(_desk)
    shaping = built(_shaping)
    api_tokens = built(_api_tokens)
    idempotency = built(_idempotency)
    remote_editions = built(_remote_editions)
    remote_readers = built(_remote_readers)

    def support(self, list_name: str = "daily") -> Support:
        """Reader care for one list (the desk's Readers page, the subscription box)."""
        from digest.support import Support

        return Support(self.factory, self.clock, self.tools, self.wayback, list_name)

    def schedule(self, name: str) -> Schedule:
        """A schedule file by name (what every door asks first)."""
        return self.tools.schedule(name)
