"""The editors' desk under ``/desk/`` and the public archive under ``/archive/``.

Thin: each handler checks the login (``deskauth.DeskAuth``: a session kept in
the database, its random id in a signed cookie) and the form's CSRF token, then
calls ``desk.Desk``. Editors come from DIGEST_EDITORS / DIGEST_EDITOR_PASSWORD;
an anonymous visitor is sent to ``/desk/login``, where wrong passwords are
throttled. Forms carry a per-session CSRF token (checked in constant time) and
a POST whose Origin is another site is refused.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from digest import queries
from digest.desk import Desk
from digest.deskauth import DeskAuth
from digest.edition import Pipeline
from digest.errors import DigestError
from digest.models import Edition, EditionStatus
from digest.render import date_long

MOSCOW = ZoneInfo("Europe/Moscow")
Handler = Callable[[Request], Awaitable[Response]]


def variant_label(key: str) -> str:
    sections, _, fmt = key.partition("|")
    what = sections.replace(",", ", ") if sections else "все разделы"
    return what + (" · только текст" if fmt == "text" else "")


class DeskApp:
    def __init__(self, pipe: Pipeline, auth: DeskAuth, run: Callable[..., Awaitable[Any]]) -> None:
        self.pipe = pipe
        self.auth = auth
        self.desk = Desk(pipe)
        self.run = run  # database work off the event loop
        self.env = Environment(
            loader=FileSystemLoader(pipe.settings.templates_dir),
            autoescape=select_autoescape(enabled_extensions=("html", "html.j2")),
        )
        self.env.filters.update(
            moscow=lambda t: t.astimezone(MOSCOW).strftime("%d.%m %H:%M"),
            date_long=date_long,
        )
        self.env.globals["variant_label"] = variant_label
        self.env.filters["change"] = describe_change

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
            site_name=self.pipe.settings.site_name,
            editor=self.editor(request),
            csrf=self.csrf(request),
            flash=flash[0] if flash else None,
            flash_error=bool(flash and flash[1]),
            **context,
        )
        return HTMLResponse(html, status_code=status)

    @staticmethod
    def flash(request: Request, message: str, error: bool = False) -> None:
        request.session["flash"] = [message, error]

    def guarded(self, handler: Handler) -> Handler:
        """Editors only; a POST also needs the session's CSRF token and our Origin."""

        async def checked(request: Request) -> Response:
            sid = request.session.get("sid")
            request.state.editor = await self.run(
                self.auth.editor, sid if isinstance(sid, str) else None
            )
            if self.editor(request) is None:
                target = quote(request.url.path)
                return RedirectResponse(f"/desk/login?next={target}", status_code=303)
            if request.method == "POST" and not await self.form_ok(request):
                return HTMLResponse("Форма устарела: обновите страницу.", status_code=403)
            try:
                return await handler(request)
            except DigestError as exc:
                if request.method == "POST":
                    self.flash(request, str(exc), error=True)
                    return RedirectResponse(self.back(request), status_code=303)
                return HTMLResponse(str(exc), status_code=404)

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

    async def index(self, request: Request) -> Response:
        current, archive = await self.run(self.desk.editions)
        schedules = await self.run(self.desk.schedules)
        return self.page(request, "index", current=current, archive=archive, schedules=schedules)

    async def prepare(self, request: Request) -> Response:
        form = await request.form()
        edition = await self.run(self.desk.prepare, str(form.get("schedule") or ""))
        self.flash(request, f"{edition.label}: черновик готов")
        return RedirectResponse(f"/desk/editions/{edition.id}", status_code=303)

    async def edition(self, request: Request) -> Response:
        edition_id = edition_of(request)
        variant = request.query_params.get("variant", "")
        preview = await self.run(self.desk.preview, edition_id, variant)
        return self.page(request, "edition", p=preview)

    async def frame(self, request: Request) -> Response:
        edition_id = edition_of(request)
        variant = request.query_params.get("variant", "")
        preview = await self.run(self.desk.preview, edition_id, variant)
        # The letter as it is sent; no script may run in it, whatever an article holds.
        return HTMLResponse(
            preview.html,
            headers={"Content-Security-Policy": "script-src 'none'; object-src 'none'"},
        )

    async def shape(self, request: Request) -> Response:
        form = await request.form()
        edition_id = edition_of(request)
        article = queries.row_id(str(form.get("article") or ""))
        if article is None:
            raise DigestError("no article given")
        await self.run(
            self.desk.shape,
            edition_id,
            str(form.get("action") or ""),
            article,
            self.editor(request),
        )
        return RedirectResponse(f"/desk/editions/{edition_id}", status_code=303)

    async def text(self, request: Request) -> Response:
        form = await request.form()
        edition_id = edition_of(request)
        await self.run(
            self.desk.set_text,
            edition_id,
            str(form.get("intro") or ""),
            str(form.get("subject") or ""),
            self.editor(request),
        )
        self.flash(request, "Сохранено.")
        return RedirectResponse(f"/desk/editions/{edition_id}", status_code=303)

    async def approve(self, request: Request) -> Response:
        form = await request.form()
        edition_id = edition_of(request)
        approved = form.get("approved") == "1"
        status = await self.run(self.desk.approve, edition_id, approved, self.editor(request))
        self.flash(request, "Утверждено." if status is EditionStatus.APPROVED else "Снято.")
        return RedirectResponse(f"/desk/editions/{edition_id}", status_code=303)

    async def test(self, request: Request) -> Response:
        form = await request.form()
        edition_id = edition_of(request)
        to = str(form.get("to") or "").strip()
        result = await self.run(self.desk.send_test, edition_id, to, self.editor(request))
        if result.ok:
            self.flash(request, f"Тестовое письмо отправлено на {to}: {result.code}")
        else:
            self.flash(request, f"Не отправлено на {to}: {result.code} {result.reply}", True)
        return RedirectResponse(f"/desk/editions/{edition_id}", status_code=303)

    async def delivery(self, request: Request) -> Response:
        page = await self.run(self.desk.delivery, edition_of(request))
        return self.page(request, "delivery", d=page)

    async def delivery_json(self, request: Request) -> Response:
        page = await self.run(self.desk.delivery, edition_of(request))
        return JSONResponse(page.as_json())

    # -- the public archive --------------------------------------------------------

    async def archive_index(self, request: Request) -> Response:
        editions = await self.run(self.sent_editions)
        return self.page(request, "archive", editions=editions)

    async def archive_page(self, request: Request) -> Response:
        try:
            day = date.fromisoformat(request.path_params["day"])
        except ValueError:
            return HTMLResponse("Нет такого выпуска.", status_code=404)
        html = await self.run(self.archived, request.path_params["schedule"], day)
        if html is None:
            return HTMLResponse("Нет такого выпуска.", status_code=404)
        return HTMLResponse(html)

    def sent_editions(self) -> list[Edition]:
        with self.pipe.factory() as session:
            return [
                e
                for e in queries.recent_editions(session, 200)
                if e.status in (EditionStatus.SENT, EditionStatus.SENDING)
            ]

    def archived(self, schedule: str, day: date) -> str | None:
        with self.pipe.factory() as session:
            edition = queries.edition_for(session, schedule, day)
        if edition is None or edition.status not in (EditionStatus.SENT, EditionStatus.SENDING):
            return None
        return self.pipe.archive_page(self.pipe.schedule(schedule), edition)

    def routes(self) -> list[Route]:
        g = self.guarded
        return [
            Route("/desk/login", self.login_page, methods=["GET"]),
            Route("/desk/login", self.login, methods=["POST"]),
            Route("/desk/logout", g(self.logout), methods=["POST"]),
            Route("/desk/", g(self.index), methods=["GET"]),
            Route("/desk/prepare", g(self.prepare), methods=["POST"]),
            Route("/desk/editions/{edition:int}", g(self.edition), methods=["GET"]),
            Route("/desk/editions/{edition:int}/frame", g(self.frame), methods=["GET"]),
            Route("/desk/editions/{edition:int}/shape", g(self.shape), methods=["POST"]),
            Route("/desk/editions/{edition:int}/text", g(self.text), methods=["POST"]),
            Route("/desk/editions/{edition:int}/approve", g(self.approve), methods=["POST"]),
            Route("/desk/editions/{edition:int}/test", g(self.test), methods=["POST"]),
            Route("/desk/editions/{edition:int}/delivery", g(self.delivery), methods=["GET"]),
            Route(
                "/desk/editions/{edition:int}/delivery.json",
                g(self.delivery_json),
                methods=["GET"],
            ),
            Route("/archive/", self.archive_index, methods=["GET"]),
            Route("/archive/{schedule}/{day}", self.archive_page, methods=["GET"]),
        ]


def edition_of(request: Request) -> int:
    """The edition of the URL; a number past any id is "no such edition" (404)."""
    found = queries.row_id(int(request.path_params["edition"]))
    if found is None:
        raise DigestError("Нет такого выпуска.")
    return found


def describe_change(detail: dict[str, Any] | None) -> str:
    """An edition_change's detail in words, for the «Изменения» list."""
    if not detail:
        return ""
    return "; ".join(f"{k}: {v}" for k, v in detail.items() if v is not None)


def safe_next(target: str) -> str:
    """Only a path of the desk: a login link cannot send an editor elsewhere."""
    return target if target.startswith("/desk/") and "//" not in target else "/desk/"
