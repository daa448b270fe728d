"""The public archive under ``/archive/``: sent editions as web pages, with every
section and nobody's links, an index in pages of 30 and an Atom feed."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from digest import store
from digest.edition.view import archive_page
from digest.models import Edition
from digest.web.feed import atom_feed

if TYPE_CHECKING:
    from digest.web.desk import DeskApp


PAGE = 30  # editions per index page
FEED_ENTRIES = 50


class ArchivePages:
    def __init__(self, app: DeskApp) -> None:
        self.app = app

    async def archive_index(self, request: Request) -> Response:
        page = store.row_id(request.query_params.get("page", "1"))
        found = await self.app.run(self.listing, page) if page is not None else None
        if found is None:
            return HTMLResponse("Нет такой страницы архива.", status_code=404)
        editions, pages = found
        return self.app.page(request, "archive", editions=editions, page=page, pages=pages)

    async def feed(self, request: Request) -> Response:
        editions = await self.app.run(self.newest)
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
        html = await self.app.run(self.archived, request.path_params["schedule"], day)
        if html is None:
            return HTMLResponse("Нет такого выпуска.", status_code=404)
        return HTMLResponse(html)

    def listing(self, page: int) -> tuple[list[Edition], int] | None:
        """The editions of index page ``page`` and how many pages there are; None
        for a page past the last (the first page exists even when empty)."""
        with self.app.services.factory() as session:
            pages = max(1, -(-store.archived_count(session) // PAGE))
            if page > pages:
                return None
            return store.archived_editions(session, PAGE, (page - 1) * PAGE), pages

    def newest(self) -> list[Edition]:
        with self.app.services.factory() as session:
            return store.archived_editions(session, FEED_ENTRIES)

    def archived(self, schedule: str, day: date) -> str | None:
        with self.app.services.factory() as session:
            edition = store.edition_for(session, schedule, day)
        if edition is None or edition.status not in store.ARCHIVED:
            return None
        services = self.app.services
        return archive_page(services.tools, services.factory, services.schedule(schedule), edition)

    def routes(self) -> list[Route]:
        return [
            Route("/archive/", self.archive_index, methods=["GET"]),
            Route("/archive/feed.xml", self.feed, methods=["GET"]),
            Route("/archive/{schedule}/{day}", self.archive_page, methods=["GET"]),
        ]
