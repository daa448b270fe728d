"""The desk's edition pages: the list, a draft's preview and its shaping, the
approval, a test copy and the delivery page. Each handler parses the form and
calls the desk's services (``edition.desk`` to look, ``edition.shaping`` to change)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from digest.edition.corrections import Rebuilt
from digest.errors import DigestError
from digest.kinds import row_id
from digest.models import EditionStatus
from digest.render import plural

if TYPE_CHECKING:
    from digest.web.desk import DeskApp


class EditionPages:
    def __init__(self, app: DeskApp) -> None:
        self.app = app
        self.view = app.services.desk
        self.shaping = app.services.shaping

    async def index(self, request: Request) -> Response:
        current, archive = await self.app.run(self.view.editions)
        schedules = await self.app.run(self.view.schedules)
        return self.app.page(
            request, "index", current=current, archive=archive, schedules=schedules
        )

    async def prepare(self, request: Request) -> Response:
        form = await request.form()
        edition = await self.app.run(self.shaping.prepare, str(form.get("schedule") or ""))
        self.app.flash(request, f"{edition.label}: черновик готов")
        return RedirectResponse(f"/desk/editions/{edition.id}", status_code=303)

    async def edition(self, request: Request) -> Response:
        edition_id = edition_of(request)
        variant = request.query_params.get("variant", "")
        preview = await self.app.run(self.view.preview, edition_id, variant)
        return self.app.page(request, "edition", p=preview)

    async def frame(self, request: Request) -> Response:
        edition_id = edition_of(request)
        variant = request.query_params.get("variant", "")
        preview = await self.app.run(self.view.preview, edition_id, variant)
        # The letter as it is sent; no script may run in it, whatever an article holds.
        return HTMLResponse(
            preview.html,
            headers={"Content-Security-Policy": "script-src 'none'; object-src 'none'"},
        )

    async def shape(self, request: Request) -> Response:
        form = await request.form()
        edition_id = edition_of(request)
        article = row_id(str(form.get("article") or ""))
        if article is None:
            raise DigestError("Не выбрана статья.")
        await self.app.run(
            self.shaping.shape,
            edition_id,
            str(form.get("action") or ""),
            article,
            self.app.editor(request),
        )
        return RedirectResponse(f"/desk/editions/{edition_id}", status_code=303)

    async def text(self, request: Request) -> Response:
        form = await request.form()
        edition_id = edition_of(request)
        await self.app.run(
            self.shaping.set_text,
            edition_id,
            str(form.get("intro") or ""),
            str(form.get("subject") or ""),
            self.app.editor(request),
        )
        self.app.flash(request, "Сохранено.")
        return RedirectResponse(f"/desk/editions/{edition_id}", status_code=303)

    async def approve(self, request: Request) -> Response:
        form = await request.form()
        edition_id = edition_of(request)
        approved = form.get("approved") == "1"
        status = await self.app.run(
            self.shaping.approve, edition_id, approved, self.app.editor(request)
        )
        self.app.flash(request, "Утверждено." if status is EditionStatus.APPROVED else "Снято.")
        return RedirectResponse(f"/desk/editions/{edition_id}", status_code=303)

    async def test(self, request: Request) -> Response:
        form = await request.form()
        edition_id = edition_of(request)
        to = str(form.get("to") or "").strip()
        result = await self.app.run(
            self.shaping.send_test, edition_id, to, self.app.editor(request)
        )
        if result.ok:
            self.app.flash(request, f"Тестовое письмо отправлено на {to}: {result.code}")
        else:
            self.app.flash(request, f"Не отправлено на {to}: {result.code} {result.reply}", True)
        return RedirectResponse(f"/desk/editions/{edition_id}", status_code=303)

    async def rebuild(self, request: Request) -> Response:
        """The corrections an edition's articles had are taken in (``edition.corrections``)."""
        edition_id = edition_of(request)
        done = await self.app.run(self.rebuild_edition, edition_id, self.app.editor(request))
        went_on = " Рассылка продолжается." if done.resumed else ""
        self.app.flash(
            request,
            f"Пересобрано: {plural(done.repointed, 'письмо', 'письма', 'писем')} из ещё не "
            "отправленных уйдут с исправлениями." + went_on,
        )
        return RedirectResponse(f"/desk/editions/{edition_id}", status_code=303)

    def rebuild_edition(self, edition_id: int, editor: str | None) -> Rebuilt:
        _, edition = self.view.edition(edition_id)
        return self.app.services.corrections.rebuild(edition, editor or "desk")

    async def delivery(self, request: Request) -> Response:
        page = await self.app.run(self.view.delivery, edition_of(request))
        return self.app.page(request, "delivery", d=page)

    async def delivery_json(self, request: Request) -> Response:
        page = await self.app.run(self.view.delivery, edition_of(request))
        return JSONResponse(page.as_json())

    def routes(self) -> list[Route]:
        g = self.app.guarded
        return [
            Route("/desk/", g(self.index), methods=["GET"]),
            Route("/desk/prepare", g(self.prepare), methods=["POST"]),
            Route("/desk/editions/{edition:int}", g(self.edition), methods=["GET"]),
            Route("/desk/editions/{edition:int}/frame", g(self.frame), methods=["GET"]),
            Route("/desk/editions/{edition:int}/shape", g(self.shape), methods=["POST"]),
            Route("/desk/editions/{edition:int}/text", g(self.text), methods=["POST"]),
            Route("/desk/editions/{edition:int}/approve", g(self.approve), methods=["POST"]),
            Route("/desk/editions/{edition:int}/test", g(self.test), methods=["POST"]),
            Route("/desk/editions/{edition:int}/rebuild", g(self.rebuild), methods=["POST"]),
            Route("/desk/editions/{edition:int}/delivery", g(self.delivery), methods=["GET"]),
            Route(
                "/desk/editions/{edition:int}/delivery.json",
                g(self.delivery_json),
                methods=["GET"],
            ),
        ]


def edition_of(request: Request) -> int:
    """The edition of the URL; a number past any id is "no such edition" (404)."""
    found = row_id(int(request.path_params["edition"]))
    if found is None:
        raise DigestError("Нет такого выпуска.")
    return found
