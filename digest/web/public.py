"""The reader's pages: unsubscribe, preferences, confirm, and the tracked click
and open. Thin: each handler checks a signed token and calls the subscriber book.

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
subscribed. Every page comes from ``templates/reader/``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from digest.audience.rows import BadSubscriber
from digest.audience.subscribers import Preferences
from digest.audience.wayback import UNDO_DAYS, bound, unbound
from digest.db import DatabaseError, is_unavailable
from digest.tokens import (
    BadToken,
    CsrfGuard,
    ExpiredToken,
    LinkSigner,
    preferences_key,
    unsubscribe_key,
)
from digest.track.engagement import PIXEL, Engagement

if TYPE_CHECKING:
    from digest.web.app import WebContext


# The zones a reader picks from (issue 28 §4: it was typed as an IANA name), Russia's
# from west to east, then the neighbours readers of the site write from.
ZONES: tuple[tuple[str, str], ...] = (
    ("Europe/Kaliningrad", "Калининград (UTC+2)"),
    ("Europe/Moscow", "Москва (UTC+3)"),
    ("Europe/Samara", "Самара (UTC+4)"),
    ("Asia/Yekaterinburg", "Екатеринбург (UTC+5)"),
    ("Asia/Omsk", "Омск (UTC+6)"),
    ("Asia/Novosibirsk", "Новосибирск (UTC+7)"),
    ("Asia/Krasnoyarsk", "Красноярск (UTC+7)"),
    ("Asia/Irkutsk", "Иркутск (UTC+8)"),
    ("Asia/Yakutsk", "Якутск (UTC+9)"),
    ("Asia/Vladivostok", "Владивосток (UTC+10)"),
    ("Asia/Magadan", "Магадан (UTC+11)"),
    ("Asia/Kamchatka", "Петропавловск-Камчатский (UTC+12)"),
    ("Europe/Minsk", "Минск (UTC+3)"),
    ("Asia/Almaty", "Алматы (UTC+5)"),
    ("Asia/Tashkent", "Ташкент (UTC+5)"),
    ("Asia/Baku", "Баку (UTC+4)"),
    ("Asia/Yerevan", "Ереван (UTC+4)"),
    ("Europe/Kyiv", "Киев (UTC+2)"),
    ("Europe/Berlin", "Берлин (UTC+1)"),
    ("UTC", "UTC"),
)

# What a refused preferences form says, by the field that was wrong (the book's
# reasons are English, for the CLI and the logs).
FORM_WORDS = {
    "frequency": "выберите, как часто присылать письма",
    "format": "выберите вид письма",
    "timezone": "выберите часовой пояс из списка",
    "sections": "выберите разделы из списка",
}


def cross_site(request: Request) -> bool:
    """A browser POST from another site's page (its Origin names another host)."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin == "null"
    return origin.split("://", 1)[-1].rstrip("/") != request.headers.get("host", "")


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


class ReaderPages:
    def __init__(self, context: WebContext, env: Environment) -> None:
        self.context, self.env = context, env
        lists = context.lists
        self.signers = [context.keyring.for_list(key) for key in lists]
        self.confirmers = [
            (signer, lists[key].confirm_days)
            for key, signer in zip(lists, self.signers, strict=True)
        ]
        self.csrf = CsrfGuard(context.secret)
        self.engagement = Engagement(context.factory, lists, context.keyring, context.clock)
        self.wayback = context.services.wayback
        self.undo = Undo(self)

    def page(self, name: str, title: str, status: int = 200, **values: Any) -> HTMLResponse:
        html = self.env.get_template(f"reader/{name}.html.j2").render(
            title=title, site_name=self.context.site_name, **values
        )
        return HTMLResponse(html, status_code=status)

    def bad_link(self) -> HTMLResponse:
        text = (
            "Эта ссылка повреждена или устарела. Откройте ссылку из последнего письма "
            "рассылки целиком или напишите нам."
        )
        return self.page("layout", "Ссылка не работает", 400, text=text)

    def expired_link(self, days: int) -> HTMLResponse:
        text = (
            f"Ссылка для подтверждения действует {days} дн. и уже не работает. "
            "Подпишитесь на сайте ещё раз — мы пришлём новое письмо."
        )
        return self.page("layout", "Ссылка устарела", 410, text=text)

    async def unsubscribe_page(self, request: Request) -> HTMLResponse:
        token = request.path_params["token"]
        key = unsubscribe_key(self.signers, token)
        if key is None:
            return self.bad_link()
        preferences = self.signers[0].preferences.sign(key)
        return self.page(
            "unsubscribe", "Отписаться от рассылки", token=token, preferences=preferences
        )

    async def unsubscribe(self, request: Request) -> HTMLResponse:
        key = unsubscribe_key(self.signers, request.path_params["token"])
        if key is None:
            return self.bad_link()
        form = await request.form()
        one_click = form.get("via") != "page" and form.get("List-Unsubscribe") == "One-Click"
        how = "one-click" if one_click else "web"
        try:
            await self.context.run(lambda: self.context.book.unsubscribe_key(key, how))
        except DatabaseError as exc:
            if not is_unavailable(exc):
                raise
            # The database is away: this one request is kept, not refused (issue 18).
            self.context.unsubscribes.add(key, how, self.context.clock())
        # The same page whether or not the key was still subscribed; an undo only for
        # the unsubscribe this request made (issue 28 §2: the way back, bound to it).
        undo = await self.undo.token(key) if not one_click else None
        return self.page(
            "goodbye", "Вы отписаны", token=request.path_params["token"], undo=undo,
            undo_days=UNDO_DAYS,
        )  # fmt: skip

    def preferences_form(
        self, token: str, prefs: Preferences, status: int = 200, **note: Any
    ) -> HTMLResponse:
        return self.page(
            "preferences",
            "Настройки рассылки",
            status,
            token=token,
            prefs=prefs,
            zones=ZONES,
            csrf=self.csrf.token(token),
            **note,
        )

    async def preferences_page(self, request: Request) -> HTMLResponse:
        token = request.path_params["token"]
        key = preferences_key(self.signers, token)
        book = self.context.book
        prefs = await self.context.run(lambda: book.preferences(key)) if key else None
        if prefs is None:
            return self.bad_link()
        return self.preferences_form(token, prefs)

    async def save_preferences(self, request: Request) -> HTMLResponse:
        token = request.path_params["token"]
        key = preferences_key(self.signers, token)
        if key is None:
            return self.bad_link()
        form = await request.form()
        if cross_site(request) or not self.csrf.check(token, str(form.get("csrf") or "")):
            text = "Откройте настройки по ссылке из письма ещё раз и сохраните снова."
            return self.page("layout", "Форма устарела", 403, text=text)
        sections = [str(v) for v in form.getlist("section")]
        frequency = str(form.get("frequency") or "daily")
        fmt = str(form.get("format") or "html")
        zone = str(form.get("timezone") or "")
        book = self.context.book
        try:
            saved = await self.context.run(
                lambda: book.set_preferences(key, sections, frequency, zone, fmt)
            )
        except BadSubscriber as exc:
            prefs = await self.context.run(lambda: book.preferences(key))
            if prefs is None:
                return self.bad_link()
            said = FORM_WORDS.get(str(exc).split(":", 1)[0], "проверьте поля формы")
            return self.preferences_form(token, prefs, 422, error=said)
        prefs = await self.context.run(lambda: book.preferences(key)) if saved else None
        if prefs is None:
            return self.bad_link()
        return self.preferences_form(token, prefs, saved=True)

    def confirm_key(self, token: str) -> tuple[LinkSigner, str, str | None] | int | None:
        """(signer, subscriber key, the unsubscribe a come-back link is bound to, or
        None for a first confirmation); the link's lifetime in days when it expired."""
        for signer, days in self.confirmers:
            for kind in (signer.confirm, signer.again):
                try:
                    value = kind.verify(token, days * 86400)
                except ExpiredToken:
                    return days
                except BadToken:
                    continue
                if kind is signer.confirm:
                    return signer, value, None
                return signer, *unbound(value)
        return None

    async def confirm_page(self, request: Request) -> HTMLResponse:
        # MAIL-RULES 27: mail scanners GET (and HEAD) every link; only the button's
        # POST confirms, so a scanner's visit is never taken for consent.
        token = request.path_params["token"]
        found = self.confirm_key(token)
        if isinstance(found, int):
            return self.expired_link(found)
        if found is None:
            return self.bad_link()
        return self.page("confirm", "Подтвердите подписку", token=token)

    async def confirm(self, request: Request) -> HTMLResponse:
        found = self.confirm_key(request.path_params["token"])
        if isinstance(found, int):
            return self.expired_link(found)
        if found is None:
            return self.bad_link()
        signer, key, reader_mark = found
        ip, agent = client_ip(request), request.headers.get("user-agent")
        book, wayback = self.context.book, self.wayback
        if reader_mark is None:
            confirmed = await self.context.run(lambda: book.confirm(key, ip, agent))
        else:
            confirmed = await self.context.run(
                lambda: wayback.confirm_again(key, reader_mark, ip, agent)
            )
        if not confirmed:
            return self.bad_link()
        preferences = signer.preferences.sign(key)
        return self.page("confirmed", "Подписка подтверждена", preferences=preferences)

    async def click(self, request: Request) -> Response:
        reader, token = request.path_params.get("reader"), request.path_params["token"]
        hit = await self.context.run(lambda: self.engagement.click(token, reader))
        if hit is None or hit.url is None:
            return self.bad_link()
        # 302 to a URL stored with the edition: the token cannot name any other.
        return RedirectResponse(hit.url, status_code=302)

    async def opened(self, request: Request) -> Response:
        reader, token = request.path_params.get("reader"), request.path_params["token"]
        await self.context.run(lambda: self.engagement.opened(token, reader))
        # The same image whatever the token: a broken image says nothing either.
        return Response(
            PIXEL, media_type="image/gif", headers={"Cache-Control": "no-store, private"}
        )

    def routes(self) -> list[Route]:
        return [
            Route("/confirm/{token}", self.confirm_page, methods=["GET"]),
            Route("/confirm/{token}", self.confirm, methods=["POST"]),
            Route("/c/{token}", self.click, methods=["GET"]),
            Route("/c/{token}/{reader}", self.click, methods=["GET"]),
            Route("/o/{token}", self.opened, methods=["GET"]),
            Route("/o/{token}/{reader}", self.opened, methods=["GET"]),
            Route("/p/{token}", self.preferences_page, methods=["GET"]),
            Route("/p/{token}", self.save_preferences, methods=["POST"]),
            Route("/u/{token}", self.unsubscribe_page, methods=["GET"]),
            Route("/u/{token}", self.unsubscribe, methods=["POST"]),
            Route("/u/{token}/undo", self.undo.post, methods=["POST"]),
        ]


class Undo:
    """The goodbye page's «Вернуть подписку» (issue 28 §2, ``audience.wayback``)."""

    def __init__(self, pages: ReaderPages) -> None:
        self.pages, self.context = pages, pages.context
        self.signers, self.signer = pages.signers, pages.signers[0]
        self.wayback = pages.wayback

    async def token(self, key: str) -> str | None:
        """An undo for the unsubscribe this request made (None: nothing to undo)."""
        try:
            reader_mark = await self.context.run(lambda: self.wayback.undo_mark(key))
        except DatabaseError as exc:
            if not is_unavailable(exc):
                raise
            return None  # kept for later (above): nothing to undo yet
        return self.signer.undo.sign(bound(key, reader_mark)) if reader_mark else None

    async def post(self, request: Request) -> HTMLResponse:
        """The goodbye page's button: back as before, if it is the same unsubscribe."""
        key = unsubscribe_key(self.signers, request.path_params["token"])
        form = await request.form()
        if key is None or cross_site(request):
            return self.pages.bad_link()
        try:
            undo_key, reader_mark = unbound(
                self.signer.undo.verify(str(form.get("undo") or ""), UNDO_DAYS * 86400)
            )
        except BadToken:  # an expired one too: the page says what to do instead
            undo_key, reader_mark = "", ""
        ip, agent = client_ip(request), request.headers.get("user-agent")
        wayback = self.wayback
        back = undo_key == key and await self.context.run(
            lambda: wayback.undo(key, reader_mark, ip, agent)
        )
        if not back:
            text = (
                "Эту отписку уже нельзя отменить. Чтобы снова получать рассылку, "
                "подпишитесь на сайте: мы пришлём письмо для подтверждения."
            )
            return self.pages.page("layout", "Отписку не отменить", 410, text=text)
        preferences = self.signer.preferences.sign(key)
        return self.pages.page("confirmed", "Подписка возвращена", preferences=preferences)
