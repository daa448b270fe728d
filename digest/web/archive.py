"""The public archive under ``/archive/``: sent editions as web pages, with every
section and nobody's links."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from digest import store
from digest.edition.view import archive_page
from digest.models import Edition, EditionStatus

if TYPE_CHECKING:
    from digest.web.desk import DeskApp


class ArchivePages:
    def __init__(self, app: DeskApp) -> None:
        self.app = app

    async def archive_index(self, request: Request) -> Response:
        editions = await self.app.run(self.sent_editions)
        return self.app.page(request, "archive", editions=editions)

    async def archive_page(self, request: Request) -> Response:
        try:
            day = date.fromisoformat(request.path_params["day"])
        except ValueError:
            return HTMLResponse("Нет такого выпуска.", status_code=404)
        html = await self.app.run(self.archived, request.path_params["schedule"], day)
        if html is None:
            return HTMLResponse("Нет такого выпуска.", status_code=404)
        return HTMLResponse(html)

    def sent_editions(self) -> list[Edition]:
        with self.app.pipe.factory() as session:
            return [
                e
                for e in store.recent_editions(session, 200)
                if e.status in (EditionStatus.SENT, EditionStatus.SENDING)
            ]

    def archived(self, schedule: str, day: date) -> str | None:
        with self.app.pipe.factory() as session:
            edition = store.edition_for(session, schedule, day)
        if edition is None or edition.status not in (EditionStatus.SENT, EditionStatus.SENDING):
            return None
        return archive_page(self.app.pipe, self.app.pipe.schedule(schedule), edition)

    def routes(self) -> list[Route]:
        return [
            Route("/archive/", self.archive_index, methods=["GET"]),
            Route("/archive/{schedule}/{day}", self.archive_page, methods=["GET"]),
        ]
