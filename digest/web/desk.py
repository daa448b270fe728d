"""The editors' desk under ``/desk/``: login, the pages' plumbing, and the routes of
``web.editions`` (the edition pages) and ``web.archive`` (the public archive).

Thin: each handler checks the login (``team.auth.DeskAuth``: a session kept in
the database, its random id in a signed cookie) and the form's CSRF token, then
calls the desk's services. Editors come from DIGEST_EDITORS / DIGEST_EDITOR_PASSWORD;
an anonymous visitor is sent to ``/desk/login``, where wrong passwords are
throttled. Forms carry a per-session CSRF token (checked in constant time) and
a POST whose Origin is another site is refused.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from digest.errors import DigestError
from digest.kinds import state_word
from digest.render import date_long
from digest.team.auth import DeskAuth
from digest.web.archive import ArchivePages
from digest.web.editions import EditionPages
from digest.web.readers import ReaderDesk
from digest.web.special import SpecialPages
from digest.web.team import TeamDesk
from digest.wiring import Services

Handler = Callable[[Request], Awaitable[Response]]


def variant_label(key: str) -> str:
    sections, _, fmt = key.partition("|")
    what = sections.replace(",", ", ") if sections else "все разделы"
    return what + (" · только текст" if fmt == "text" else "")


class DeskApp:
    def __init__(
        self,
        services: Services,
        auth: DeskAuth,
        run: Callable[..., Awaitable[Any]],
        env: Environment,
    ) -> None:
        self.services = services
        self.auth = auth
        self.run = run  # database work off the event loop
        self.env = env  # the web app's one template environment, with the desk's filters
        zone = services.settings.zone
        self.env.filters.update(
            local=lambda t: t.astimezone(zone).strftime("%d.%m %H:%M"),
            # A reader's dates, stored as ISO text: in the zone, to the minute, with the year.
            local_day=lambda t: (
                (datetime.fromisoformat(t) if isinstance(t, str) else t)
                .astimezone(zone)
                .strftime("%d.%m.%Y %H:%M")
                if t
                else "—"
            ),
            date_long=date_long,
        )
        self.env.globals["variant_label"] = variant_label
        self.env.filters["change"] = describe_change
        self.env.filters["action"] = lambda action: ACTION_WORDS.get(action, action)
        self.env.filters["ru"] = state_word  # a state in the desk's words

    # -- plumbing ------------------------------------------------------------------

    @staticmethod
    def editor(request: Request) -> str | None:
        """The logged-in editor, as ``guarded`` found them for this request."""
        name = getattr(request.state, "editor", None)
        return name if isinstance(name, str) else None

    @staticmethod
    def csrf(request: Request) -> str:
        token = request.session.get("csrf")
        if not isinstance(token, str):
            token = secrets.token_urlsafe(24)
            request.session["csrf"] = token
        return token

    def page(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        flash = request.session.pop("flash", None)
        html = self.env.get_template(f"desk/{name}.html.j2").render(
            site_name=self.services.settings.site_name,
            editor=self.editor(request),
            admin=self.is_admin(request),
            csrf=self.csrf(request),
            flash=flash[0] if flash else None,
            flash_error=bool(flash and flash[1]),
            **context,
        )
        return HTMLResponse(html, status_code=status)

    @staticmethod
    def flash(request: Request, message: str, error: bool = False) -> None:
        request.session["flash"] = [message, error]

    @staticmethod
    def is_admin(request: Request) -> bool:
        """An admin (issue 28 §3: the account's role), as ``guarded`` found them."""
        return getattr(request.state, "admin", False) is True

    def guarded(self, handler: Handler, *, admin: bool = False) -> Handler:
        """Editors only (``admin``: accounts with that role); a POST also
        needs the session's CSRF token and our Origin."""

        async def checked(request: Request) -> Response:
            sid = request.session.get("sid")
            # The session's account, read once: who and as what (issue 28 §3's role).
            account = await self.run(self.auth.editor, sid if isinstance(sid, str) else None)
            if account is None:
                target = quote(request.url.path)
                return RedirectResponse(f"/desk/login?next={target}", status_code=303)
            request.state.editor, request.state.admin = account.name, account.is_admin
            if admin and not self.is_admin(request):
                return self.page(request, "refused", status=403)
            if request.method == "POST" and not await self.form_ok(request):
                return HTMLResponse("Форма устарела: обновите страницу.", status_code=403)
            try:
                return await handler(request)
            except DigestError as exc:
                if request.method == "POST":
                    self.flash(request, exc.ru or str(exc), error=True)
                    return RedirectResponse(self.back(request), status_code=303)
                return HTMLResponse(exc.ru or str(exc), status_code=404)

        return checked

    async def form_ok(self, request: Request) -> bool:
        form = await request.form()
        sent = str(form.get("csrf") or "")
        expected = request.session.get("csrf")
        origin = request.headers.get("origin")
        if origin and urlsplit(origin).netloc != request.headers.get("host", ""):
            return False
        return isinstance(expected, str) and hmac.compare_digest(sent, expected)

    @staticmethod
    def back(request: Request) -> str:
        edition = request.path_params.get("edition")
        reader = request.path_params.get("reader")
        if reader:
            return f"/desk/readers/{reader}"
        return f"/desk/editions/{edition}" if edition else "/desk/"

    # -- pages ---------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        next_url = request.query_params.get("next", "/desk/")
        return self.page(
            request, "login", next=safe_next(next_url), username="", refused=False, throttled=""
        )

    async def login(self, request: Request) -> Response:
        form = await request.form()
        if not await self.form_ok(request):
            return HTMLResponse("Форма устарела: обновите страницу.", status_code=403)
        username = str(form.get("username") or "")
        password = str(form.get("password") or "")
        next_url = safe_next(str(form.get("next") or "/desk/"))
        ip = request.client.host if request.client else "?"
        result = await self.run(self.auth.login, username, password, ip)
        if result.refusal is not None:
            wait = str(max(1, round(result.refusal.wait)))
            response = self.page(
                request,
                "login",
                status=429,
                next=next_url,
                username=username,
                refused=False,
                throttled=result.refusal.message,
            )
            response.headers["Retry-After"] = wait
            return response
        if result.session_id is None:
            return self.page(
                request,
                "login",
                status=401,
                next=next_url,
                username=username,
                refused=True,
                throttled="",
            )
        request.session.clear()
        request.session["sid"] = result.session_id
        self.csrf(request)
        return RedirectResponse(next_url, status_code=303)

    async def logout(self, request: Request) -> Response:
        sid = request.session.get("sid")
        await self.run(self.auth.logout, sid if isinstance(sid, str) else None)
        request.session.clear()
        return RedirectResponse("/desk/login", status_code=303)

    async def static(self, request: Request) -> Response:
        """The desk's scripts (templates/desk/static/): a file that is there, by its
        name, never a path joined from the URL."""
        folder = self.services.settings.templates_dir / "desk" / "static"
        known = {p.name: p for p in folder.glob("*.js")}
        found = known.get(str(request.path_params["name"]))
        if found is None:
            return HTMLResponse("Нет такого файла.", status_code=404)
        body = await self.run(found.read_bytes)
        return Response(body, media_type="text/javascript; charset=utf-8")

    def routes(self) -> list[Route]:
        return [
            Route("/desk/static/{name}", self.static, methods=["GET"]),
            Route("/desk/login", self.login_page, methods=["GET"]),
            Route("/desk/login", self.login, methods=["POST"]),
            Route("/desk/logout", self.guarded(self.logout), methods=["POST"]),
            *EditionPages(self).routes(),
            *ArchivePages(self).routes(),
            *ReaderDesk(self).routes(),
            *TeamDesk(self).routes(),
            *SpecialPages(self).routes(),
        ]


# The change log in the desk's words (issue 28 §4: it showed internal ids and
# English): what each action was, and what its detail's keys mean.
ACTION_WORDS = {
    "pin": "наверх",
    "up": "выше",
    "down": "ниже",
    "drop": "убрана",
    "add": "добавлена",
    "approve": "утверждён",
    "unapprove": "утверждение снято",
    "test": "тестовое письмо",
    "text": "тема и вступление",
    "rebuild": "пересобран",
    "correction-paused": "исправления: рассылка на паузе",
    "correction-ignored": "исправления не взяты",
    "special": "срочный выпуск составлен",
    "send": "отправка начата",
}
DETAIL_WORDS = {
    "intro": "вступление",
    "subject": "тема",
    "to": "кому",
    "code": "ответ",
    "reply": "",
    "changes": "изменения",
    "repointed": "писем с исправлениями",
    "resumed": "рассылка продолжена",
    "articles": "статей",
    "section": "раздел",
    "readers": "писем в очереди",
}
HIDDEN = {"article", "revisions"}  # ids: they say nothing to a person


def describe_change(detail: dict[str, Any] | None) -> str:
    """An edition_change's detail in words, for the «Изменения» list."""
    if not detail:
        return ""
    said = []
    for key, value in detail.items():
        if value is None or key in HIDDEN:
            continue
        text = "; ".join(map(str, value)) if isinstance(value, list) else str(value)
        if key == "title":
            said.append(f"«{text}»")
            continue
        label = DETAIL_WORDS.get(key, key)
        said.append(f"{label}: {text}" if label else text)
    return "; ".join(said)


def safe_next(target: str) -> str:
    """Only a path of the desk: a login link cannot send an editor elsewhere."""
    return target if target.startswith("/desk/") and "//" not in target else "/desk/"
