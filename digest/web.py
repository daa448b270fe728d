"""The web app (Starlette): the subscriber endpoints. Thin: each handler checks
a signed token and calls the subscribers stage.

- ``GET /u/TOKEN``: a page with a button; a GET never unsubscribes anyone (link
  scanners fetch every URL in a message).
- ``POST /u/TOKEN``: unsubscribes at once. RFC 8058 one-click: the mail client
  posts ``List-Unsubscribe=One-Click``; the answer is 200, never a redirect.
- ``GET/POST /p/TOKEN``: the reader's sections, frequency, format and time zone.
- ``GET /confirm/TOKEN``: a page with a button (mail scanners GET every link);
  ``POST /confirm/TOKEN`` activates and records when and from where.
- ``GET /c/TOKEN[/READER]``: a tracked click, redirected only to a link of that
  edition; ``GET /o/TOKEN[/READER]``: the open pixel (both only when a list tracks).

The signed token is the credential: other sites cannot know it. The preferences
form also carries a CSRF token bound to the link token and checked in constant
time, and a POST whose Origin is another site is refused. The one-click POST
needs neither (mail providers send it server-side, RFC 8058). A bad or expired
token gets a clear page, never a 500, and no page says whether an address is
subscribed.
"""

from __future__ import annotations

import hashlib
import hmac
import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from digest.config import Settings
from digest.deskauth import DeskAuth
from digest.edition import Pipeline
from digest.engagement import PIXEL, Engagement
from digest.lists import load_lists
from digest.models import Clock, utcnow
from digest.subscribers import BadSubscriber, Preferences, SubscriberBook
from digest.tokens import (
    BadToken,
    CsrfGuard,
    ExpiredToken,
    LinkSigner,
    preferences_key,
    unsubscribe_key,
)
from digest.webdesk import DeskApp
from digest.webguard import Guard

T = TypeVar("T")


@dataclass
class WebContext:
    """What the handlers need, built once by `digest serve` (or a test)."""

    settings: Settings
    factory: sessionmaker[Session]
    clock: Clock = utcnow

    @property
    def secret(self) -> bytes:
        return self.settings.signing_key()

    @property
    def site_name(self) -> str:
        return self.settings.site_name

    @property
    def book(self) -> SubscriberBook:
        return SubscriberBook(self.factory, double_opt_in=True, clock=self.clock)

    async def run(self, fn: Callable[[], T]) -> T:
        # Database work off the event loop.
        return await run_in_threadpool(fn)


PAGE = """<!doctype html>
<html lang="ru"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title>
<style>body{{font:16px/1.5 Georgia,serif;max-width:36em;margin:3em auto;padding:0 1em;color:#222}}
h1{{font-size:1.4em}}button{{font:inherit;padding:.5em 1.2em;background:#8b1a1a;color:#fff;
border:0;border-radius:3px;cursor:pointer}}a{{color:#8b1a1a}}</style></head>
<body><h1>{title}</h1>{body}</body></html>"""


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=html.escape(title), body=body), status_code=status)


def bad_link() -> HTMLResponse:
    return page(
        "Ссылка не работает",
        "<p>Эта ссылка повреждена или устарела. Откройте ссылку из последнего письма "
        "рассылки целиком или напишите нам.</p>",
        400,
    )


def expired_link(days: int) -> HTMLResponse:
    return page(
        "Ссылка устарела",
        f"<p>Ссылка для подтверждения действует {days} дн. и уже не работает. "
        "Подпишитесь на сайте ещё раз — мы пришлём новое письмо.</p>",
        410,
    )


def cross_site(request: Request) -> bool:
    """A browser POST from another site's page (its Origin names another host)."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin == "null"
    return origin.split("://", 1)[-1].rstrip("/") != request.headers.get("host", "")


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def create_app(context: WebContext) -> Starlette:
    lists = load_lists(context.settings.subscribers_dir)
    signers = [LinkSigner(context.secret, key) for key in lists]
    confirmers = [
        (signer, lists[signer_key].confirm_days)
        for signer_key, signer in zip(lists, signers, strict=True)
    ]
    csrf = CsrfGuard(context.secret)
    engagement = Engagement(context.factory, lists, context.secret, context.clock)

    async def unsubscribe_page(request: Request) -> HTMLResponse:
        token = request.path_params["token"]
        key = unsubscribe_key(signers, token)
        if key is None:
            return bad_link()
        action = html.escape(f"/u/{token}", quote=True)
        prefs = html.escape(f"/p/{signers[0].preferences(key)}", quote=True)
        return page(
            "Отписаться от рассылки",
            "<p>Нажмите кнопку, чтобы больше не получать рассылку "
            f"«{html.escape(context.site_name)}».</p>"
            f'<form method="post" action="{action}">'
            '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
            '<input type="hidden" name="via" value="page">'
            '<button type="submit">Отписаться</button></form>'
            f'<p>Или <a href="{prefs}">оставьте только нужные разделы</a>, '
            "выберите письмо раз в неделю или текстовый вид.</p>",
        )

    async def unsubscribe(request: Request) -> HTMLResponse:
        key = unsubscribe_key(signers, request.path_params["token"])
        if key is None:
            return bad_link()
        form = await request.form()
        if form.get("via") == "page":
            how = "web"
        elif form.get("List-Unsubscribe") == "One-Click":
            how = "one-click"
        else:
            how = "web"
        await context.run(lambda: context.book.unsubscribe_key(key, how))
        # The same page whether or not the key was still subscribed: nothing to learn here.
        return page(
            "Вы отписаны",
            "<p>Больше писем рассылки не будет. Если это ошибка, подпишитесь снова на сайте.</p>",
        )

    def prefs_form(token: str, prefs: Preferences, note: str = "") -> HTMLResponse:
        boxes = "".join(
            f'<label><input type="checkbox" name="section" value="{html.escape(slug, quote=True)}"'
            f"{' checked' if chosen else ''}> {html.escape(title)}</label><br>"
            for slug, title, chosen in prefs.sections
        )
        radios = "".join(
            f'<label><input type="radio" name="frequency" value="{f}"'
            f"{' checked' if prefs.frequency == f else ''}> {label}</label> "
            for f, label in (("daily", "каждый день"), ("weekly", "раз в неделю"))
        )
        formats = "".join(
            f'<label><input type="radio" name="format" value="{f}"'
            f"{' checked' if prefs.format == f else ''}> {label}</label> "
            for f, label in (("html", "оформленное письмо"), ("text", "только текст"))
        )
        action = html.escape(f"/p/{token}", quote=True)
        zone = html.escape(prefs.timezone, quote=True)
        return page(
            "Настройки рассылки",
            f'{note}<form method="post" action="{action}">'
            f'<input type="hidden" name="csrf" value="{csrf.token(token)}">'
            f"<h2>Разделы</h2><p>Ничего не отмечено — все разделы.</p>{boxes}"
            f"<h2>Как часто</h2><p>{radios}</p>"
            f"<h2>Вид письма</h2><p>{formats}</p>"
            f'<h2>Часовой пояс</h2><p><input name="timezone" value="{zone}" '
            'placeholder="Europe/Moscow"></p>'
            '<p><button type="submit">Сохранить</button></p></form>',
        )

    async def preferences_page(request: Request) -> HTMLResponse:
        token = request.path_params["token"]
        key = preferences_key(signers, token)
        prefs = await context.run(lambda: context.book.preferences(key)) if key else None
        if prefs is None:
            return bad_link()
        return prefs_form(token, prefs)

    async def save_preferences(request: Request) -> HTMLResponse:
        token = request.path_params["token"]
        key = preferences_key(signers, token)
        if key is None:
            return bad_link()
        form = await request.form()
        if cross_site(request) or not csrf.check(token, str(form.get("csrf") or "")):
            return page(
                "Форма устарела",
                "<p>Откройте настройки по ссылке из письма ещё раз и сохраните снова.</p>",
                403,
            )
        sections = [str(v) for v in form.getlist("section")]
        frequency = str(form.get("frequency") or "daily")
        fmt = str(form.get("format") or "html")
        zone = str(form.get("timezone") or "")
        try:
            saved = await context.run(
                lambda: context.book.set_preferences(key, sections, frequency, zone, fmt)
            )
        except BadSubscriber as exc:
            prefs = await context.run(lambda: context.book.preferences(key))
            if prefs is None:
                return bad_link()
            note = f'<p role="alert">Не сохранено: {html.escape(str(exc))}</p>'
            return HTMLResponse(prefs_form(token, prefs, note).body, status_code=422)
        if not saved:
            return bad_link()
        prefs = await context.run(lambda: context.book.preferences(key))
        assert prefs is not None
        return prefs_form(token, prefs, '<p role="status">Сохранено.</p>')

    def confirm_key(token: str) -> tuple[LinkSigner, str] | int | None:
        """(signer, subscriber key); the link's lifetime in days when it expired."""
        for signer, days in confirmers:
            try:
                return signer, signer.verify_confirm(token, days * 86400)
            except ExpiredToken:
                return days
            except BadToken:
                continue
        return None

    async def confirm_page(request: Request) -> HTMLResponse:
        # MAIL-RULES 27: mail scanners GET (and HEAD) every link; only the button's
        # POST confirms, so a scanner's visit is never taken for consent.
        token = request.path_params["token"]
        found = confirm_key(token)
        if isinstance(found, int):
            return expired_link(found)
        if found is None:
            return bad_link()
        action = html.escape(f"/confirm/{token}", quote=True)
        return page(
            "Подтвердите подписку",
            f"<p>Нажмите кнопку, чтобы получать рассылку «{html.escape(context.site_name)}».</p>"
            f'<form method="post" action="{action}">'
            '<input type="hidden" name="confirm" value="1">'
            '<button type="submit">Подтвердить подписку</button></form>',
        )

    async def confirm(request: Request) -> HTMLResponse:
        found = confirm_key(request.path_params["token"])
        if isinstance(found, int):
            return expired_link(found)
        if found is None:
            return bad_link()
        signer, key = found
        ip, agent = client_ip(request), request.headers.get("user-agent")
        if not await context.run(lambda: context.book.confirm(key, ip, agent)):
            return bad_link()
        prefs = html.escape(f"/p/{signer.preferences(key)}", quote=True)
        return page(
            "Подписка подтверждена",
            f"<p>Спасибо! Рассылка «{html.escape(context.site_name)}» будет приходить "
            f'на ваш адрес. <a href="{prefs}">Выбрать разделы и время</a>.</p>',
        )

    async def click(request: Request) -> Response:
        reader = request.path_params.get("reader")
        hit = await context.run(lambda: engagement.click(request.path_params["token"], reader))
        if hit is None or hit.url is None:
            return bad_link()
        # 302 to a URL stored with the edition: the token cannot name any other.
        return RedirectResponse(hit.url, status_code=302)

    async def opened(request: Request) -> Response:
        reader = request.path_params.get("reader")
        await context.run(lambda: engagement.opened(request.path_params["token"], reader))
        # The same image whatever the token: a broken image says nothing either.
        return Response(
            PIXEL, media_type="image/gif", headers={"Cache-Control": "no-store, private"}
        )

    auth = DeskAuth(
        context.factory, context.settings.editor_accounts, context.secret, context.clock
    )
    desk = DeskApp(
        Pipeline(context.settings, context.factory, clock=context.clock),
        auth,
        run=lambda fn, *args: run_in_threadpool(fn, *args),
    )
    routes: list[Route] = [
        *desk.routes(),
        Route("/confirm/{token}", confirm_page, methods=["GET"]),
        Route("/confirm/{token}", confirm, methods=["POST"]),
        Route("/c/{token}", click, methods=["GET"]),
        Route("/c/{token}/{reader}", click, methods=["GET"]),
        Route("/o/{token}", opened, methods=["GET"]),
        Route("/o/{token}/{reader}", opened, methods=["GET"]),
        Route("/p/{token}", preferences_page, methods=["GET"]),
        Route("/p/{token}", save_preferences, methods=["POST"]),
        Route("/u/{token}", unsubscribe_page, methods=["GET"]),
        Route("/u/{token}", unsubscribe, methods=["POST"]),
    ]
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
            https_only=context.settings.base_url.startswith("https://"),
        ),
    ]
    return Starlette(routes=routes, middleware=middleware)
