"""The web app (Starlette): the reader's pages (``public``), the editors' desk
(``desk``) and the archive, behind one guard (``guard``: body cap, security
headers) and the desk's signed session cookie. ``digest serve`` runs it under
uvicorn (``server``)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TypeVar

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount

from digest.api.app import create_api
from digest.audience.lists import MailingList, load_lists
from digest.audience.queued import UnsubscribeQueue
from digest.audience.subscribers import SubscriberBook, reader_book
from digest.config import Settings
from digest.config.values import is_https
from digest.db import DatabaseError, Factory, is_unavailable
from digest.models import Clock, utcnow
from digest.team.auth import DeskAuth
from digest.tokens import Keyring
from digest.web.desk import DeskApp
from digest.web.guard import Guard
from digest.web.health import HealthPages
from digest.web.keep import KeepPages
from digest.web.public import ReaderPages
from digest.web.subscribe import SubscribeBox
from digest.wiring import Services

T = TypeVar("T")


@dataclass
class WebContext:
    """What the handlers need, built once by `digest serve` (or a test)."""

    settings: Settings
    factory: Factory
    clock: Clock = utcnow
    services: Services = field(init=False)

    def __post_init__(self) -> None:
        # The web's one wiring: the desk's services and the readers' signers.
        self.services = Services(self.settings, self.factory, clock=self.clock)

    @property
    def keyring(self) -> Keyring:
        return self.services.tools.keyring()

    @property
    def secret(self) -> bytes:
        return self.keyring.secret

    @property
    def site_name(self) -> str:
        return self.settings.site_name

    @cached_property
    def lists(self) -> dict[str, MailingList]:
        return load_lists(self.settings.subscribers_dir)

    @property
    def book(self) -> SubscriberBook:
        return reader_book(self.factory, self.clock)

    @cached_property
    def unsubscribes(self) -> UnsubscribeQueue:
        """Unsubscribes kept while the database was away (issue 18); every send
        applies them too, before it claims."""
        return UnsubscribeQueue.of(self.settings.var_dir)

    async def run(self, fn: Callable[[], T]) -> T:
        # Database work off the event loop.
        return await run_in_threadpool(fn)


def templates(settings: Settings) -> Environment:
    env = Environment(
        loader=FileSystemLoader(settings.templates_dir),
        autoescape=select_autoescape(enabled_extensions=("html", "html.j2")),
    )
    # Every reader page wears the site's masthead and a way back to it (issue 28 §4).
    env.globals.update(site_url=settings.site_url, site_name=settings.site_name)
    return env


def create_app(context: WebContext) -> Starlette:
    env = templates(context.settings)
    readers = ReaderPages(context, env)
    box = SubscribeBox(context, env)
    auth = DeskAuth(context.factory, context.services.accounts, context.secret, context.clock)
    desk = DeskApp(
        context.services,
        auth,
        run=lambda fn, *args: run_in_threadpool(fn, *args),
        env=env,
    )
    session_key = hmac.new(context.secret, b"desk-session", hashlib.sha256).hexdigest()
    middleware = [
        # Outermost: bodies are capped and headers set whatever a handler does.
        Middleware(Guard),
        Middleware(
            SessionMiddleware,
            secret_key=session_key,
            session_cookie="digest_desk",
            max_age=12 * 3600,
            same_site="lax",
            https_only=is_https(context.settings.base_url),
        ),
    ]
    api = create_api(context.services, lambda: list(context.lists), env)
    routes = [
        Mount("/api/v1", app=api),  # the HTTP API (issue 30): tokens, never the cookie
        *desk.routes(),
        *readers.routes(),
        *KeepPages(readers).routes(),
        *box.routes(),
        *HealthPages(context).routes(),
    ]
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={DatabaseError: database_away},
        lifespan=lambda _app: background(context, box),
    )


async def database_away(request: Request, exc: Exception) -> Response:
    """The database is away (issue 18): a short page that says so, 503 with a time
    to come back, never a traceback or a 500. Any other database error is one."""
    if not is_unavailable(exc):
        raise exc
    return HTMLResponse(AWAY, status_code=503, headers={"Retry-After": "30"})


AWAY = (
    '<!doctype html><html lang="ru"><head><meta charset="utf-8"><title>Ненадолго недоступно'
    "</title></head><body><main><h1>Ненадолго недоступно</h1><p>Сайт рассылки обновляется. "
    "Попробуйте через минуту.</p></main></body></html>"
)


@contextlib.asynccontextmanager
async def background(context: WebContext, box: SubscribeBox) -> AsyncIterator[None]:
    """While the app serves: unsubscribes queued during an outage are applied as soon
    as the database is back (every few seconds while any wait), and the
    subscription box's confirmations go out (``SubscribeBox.drain``)."""

    async def loop() -> None:
        queue = context.unsubscribes
        while True:
            await asyncio.sleep(QUEUE_POLL)
            if queue.waiting():
                with contextlib.suppress(DatabaseError):  # still away: next time
                    await context.run(lambda: queue.apply(context.book.unsubscribe_key))

    queued = asyncio.ensure_future(loop())
    drain = asyncio.ensure_future(box.drain_forever())
    try:
        yield
    finally:
        queued.cancel()
        box.stop()  # a confirmation being sent is finished, not cut off mid-session
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(drain), DRAIN_STOP)
        drain.cancel()


QUEUE_POLL = 3.0  # seconds
DRAIN_STOP = 10.0  # seconds a stopping server gives the confirmation in hand
