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
    from digest.web.desk import DeskApp


class ArchivePages:
    def __init__(self, app: DeskApp) -> None:
        self.app = app

    async def archive_index(self, request: Request) -> Response:
        page = row_id(request.query_params.get("page", "1"))
        found = (
            await self.app.run(self.app.services.archive.listing, page)
            if page is not None
            else None
        )
        if found is None:
            return HTMLResponse("Нет такой страницы архива.", status_code=404)
        editions, pages = found
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
            Route("/archive/feed.xml", self.feed, methods=["GET"]),
            Route("/archive/{schedule}/{day}", self.archive_page, methods=["GET"]),
        ]
