"""The desk's special editions (issue 28 §6, ``edition.special``): a form to make
one from chosen articles (`/desk/special`), and «Отправить сейчас» for an
approved one. Shaping, the preview, the test copy and the approval are the
edition pages' own, as for any edition."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from digest.edition.special import MAX_ARTICLES, SpecialOrder
from digest.errors import DigestError
from digest.kinds import row_id
from digest.render import plural
from digest.web.editions import edition_of

if TYPE_CHECKING:
    from digest.web.desk import DeskApp


class SpecialPages:
    def __init__(self, app: DeskApp) -> None:
        self.app = app
        self.specials = app.services.specials

    async def form(self, request: Request) -> Response:
        articles, sections = await self.app.run(self.specials.choices)
        schedules = await self.app.run(self.app.services.desk.schedules)
        return self.app.page(
            request,
            "special",
            articles=articles,
            sections=sections,
            schedules=schedules,
            most=MAX_ARTICLES,
        )

    async def make(self, request: Request) -> Response:
        form = await request.form()
        ids = [row_id(str(v)) for v in form.getlist("article")]
        if None in ids:
            raise DigestError("Выберите статьи из списка.")
        order = SpecialOrder(
            schedule=str(form.get("schedule") or "daily"),
            article_ids=tuple(i for i in ids if i is not None),
            subject=str(form.get("subject") or ""),
            intro=str(form.get("intro") or ""),
            section=str(form.get("section") or "") or None,
        )
        editor = self.app.editor(request) or "desk"
        edition = await self.app.run(self.specials.make, order, editor)
        self.app.flash(
            request, f"{edition.label}: черновик срочного выпуска готов. Проверьте и утвердите."
        )
        return RedirectResponse(f"/desk/editions/{edition.id}", status_code=303)

    async def send(self, request: Request) -> Response:
        edition_id = edition_of(request)
        editor = self.app.editor(request) or "desk"
        added = await self.app.run(self.specials.start, edition_id, editor)
        self.app.flash(
            request,
            f"В очереди: {plural(added, 'письмо', 'письма', 'писем')}; "
            "их отправят `digest worker` или `digest scheduler`.",
        )
        return RedirectResponse(f"/desk/editions/{edition_id}/delivery", status_code=303)

    def routes(self) -> list[Route]:
        g = self.app.guarded
        return [
            Route("/desk/special", g(self.form), methods=["GET"]),
            Route("/desk/special", g(self.make), methods=["POST"]),
            Route("/desk/editions/{edition:int}/send", g(self.send), methods=["POST"]),
        ]
