"""The web app (Starlette): the subscriber endpoints. Thin: each handler checks
a signed token and calls the subscribers stage.

- ``GET /u/TOKEN``: a page with a button; a GET never unsubscribes anyone (link
  scanners fetch every URL in a message).
- ``POST /u/TOKEN``: unsubscribes at once. RFC 8058 one-click: the mail client
  posts ``List-Unsubscribe=One-Click``; the answer is 200, never a redirect.
- ``GET/POST /p/TOKEN``: the reader's sections, frequency and time zone.

The signed token is the only credential and what makes a POST safe from other
sites (they cannot know it). A bad token gets a clear page, never a 500, and no
page says whether an address is subscribed.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from digest.config import Settings
from digest.lists import load_lists
from digest.subscribers import BadSubscriber, Preferences, SubscriberBook
from digest.tokens import LinkSigner, preferences_key, unsubscribe_key

T = TypeVar("T")


@dataclass
class WebContext:
    """What the handlers need, built once by `digest serve` (or a test)."""

    settings: Settings
    factory: sessionmaker[Session]

    @property
    def secret(self) -> bytes:
        return self.settings.signing_key()

    @property
    def site_name(self) -> str:
        return self.settings.site_name

    @property
    def book(self) -> SubscriberBook:
        return SubscriberBook(self.factory, double_opt_in=True)

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


def create_app(context: WebContext) -> Starlette:
    signers = [
        LinkSigner(context.secret, key) for key in load_lists(context.settings.subscribers_dir)
    ]

    async def unsubscribe_page(request: Request) -> HTMLResponse:
        token = request.path_params["token"]
        if unsubscribe_key(signers, token) is None:
            return bad_link()
        action = html.escape(f"/u/{token}", quote=True)
        return page(
            "Отписаться от рассылки",
            "<p>Нажмите кнопку, чтобы больше не получать рассылку "
            f"«{html.escape(context.site_name)}».</p>"
            f'<form method="post" action="{action}">'
            '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
            '<button type="submit">Отписаться</button></form>',
        )

    async def unsubscribe(request: Request) -> HTMLResponse:
        key = unsubscribe_key(signers, request.path_params["token"])
        if key is None:
            return bad_link()
        form = await request.form()
        how = "one-click" if form.get("List-Unsubscribe") == "One-Click" else "web"
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
        action = html.escape(f"/p/{token}", quote=True)
        zone = html.escape(prefs.timezone, quote=True)
        return page(
            "Настройки рассылки",
            f'{note}<form method="post" action="{action}">'
            f"<h2>Разделы</h2><p>Ничего не отмечено — все разделы.</p>{boxes}"
            f"<h2>Как часто</h2><p>{radios}</p>"
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
        sections = [str(v) for v in form.getlist("section")]
        frequency = str(form.get("frequency") or "daily")
        zone = str(form.get("timezone") or "")
        try:
            saved = await context.run(
                lambda: context.book.set_preferences(key, sections, frequency, zone)
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

    routes: list[Route] = [
        Route("/p/{token}", preferences_page, methods=["GET"]),
        Route("/p/{token}", save_preferences, methods=["POST"]),
        Route("/u/{token}", unsubscribe_page, methods=["GET"]),
        Route("/u/{token}", unsubscribe, methods=["POST"]),
    ]
    return Starlette(routes=routes)
