"""The public archive under ``/archive/``: sent editions as web pages, with every
section and nobody's links, an index in pages of 30 and an Atom feed."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from digest.kinds import row_id
from digest.web.feed import atom_feed

if TYPE_CHECKING:
    from digest.models import Edition
    from digest.web.desk import DeskApp


class ArchivePages:
    def __init__(self, app: DeskApp) -> None:
        self.app = app

    async def _listing(self, request: Request) -> tuple[list[Edition], int, int] | None:
        page = row_id(request.query_params.get("page", "1"))
        if page is None:
            return None
        found = await self.app.run(self.app.services.archive.listing, page)
        return (*found, page) if found is not None else None

    async def archive_index(self, request: Request) -> Response:
        """The readers' index: their pages' look, not the desk's (issue 28 §4)."""
        found = await self._listing(request)
        if found is None:
            return HTMLResponse("Нет такой страницы архива.", status_code=404)
        editions, pages, page = found
        settings = self.app.services.settings
        html = self.app.env.get_template("reader/archive.html.j2").render(
            title=f"Архив рассылки «{settings.site_name}»",
            site_name=settings.site_name,
            site_url=settings.site_url,
            editions=editions,
            page=page,
            pages=pages,
        )
        return HTMLResponse(html)

    async def desk_index(self, request: Request) -> Response:
        """The desk's «Архив»: the sent editions, each opening in the desk."""
        found = await self._listing(request)
        if found is None:
            return HTMLResponse("Нет такой страницы архива.", status_code=404)
        editions, pages, page = found
        return self.app.page(request, "archive", editions=editions, page=page, pages=pages)

    async def feed(self, request: Request) -> Response:
        editions = await self.app.run(self.app.services.archive.newest)
        services = self.app.services
        title = f"Архив рассылки «{services.settings.site_name}»"
        base = services.settings.base_url
        body = atom_feed(editions, base, title, f"{base}/archive/", services.clock())
        return Response(body, media_type="application/atom+xml; charset=utf-8")

    async def archive_page(self, request: Request) -> Response:
        try:
            day = date.fromisoformat(request.path_params["day"])
        except ValueError:
            return HTMLResponse("Нет такого выпуска.", status_code=404)
        html = await self.app.run(
            self.app.services.archive.page_of, request.path_params["schedule"], day
        )
        if html is None:
            return HTMLResponse("Нет такого выпуска.", status_code=404)
        return HTMLResponse(html)

    def routes(self) -> list[Route]:
        return [
            Route("/archive/", self.archive_index, methods=["GET"]),
            Route("/desk/archive", self.app.guarded(self.desk_index), methods=["GET"]),
            Route("/archive/feed.xml", self.feed, methods=["GET"]),
            Route("/archive/{schedule}/{day}", self.archive_page, methods=["GET"]),
        ]
