"""The desk's Readers page, for admins: search, one reader's file, and what support
does for them (unsubscribe, the confirmation again, export, forget after a
confirmation step, a CSV import with its per-line report). ``support.Support``
does each; this parses the form and shows the result."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from digest.errors import DigestError
from digest.kinds import row_id

if TYPE_CHECKING:
    from digest.web.desk import DeskApp, Handler


class ReaderDesk:
    def __init__(self, app: DeskApp) -> None:
        self.app = app
        self.support = app.services.support()

    async def index(self, request: Request) -> Response:
        query = request.query_params.get("q", "")
        found = await self.app.run(self.support.search, query)
        return self.app.page(request, "readers", query=query, found=found)

    async def reader(self, request: Request) -> Response:
        file = await self.app.run(self.support.reader, reader_of(request))
        confirm = request.query_params.get("confirm") == "forget"
        return self.app.page(request, "reader", r=file, confirm_forget=confirm)

    async def act(self, request: Request) -> Response:
        reader, editor = reader_of(request), self.app.editor(request) or "desk"
        form = await request.form()
        action = str(form.get("action") or "")
        if action == "unsubscribe":
            email = await self.app.run(self.support.unsubscribe, reader, editor)
            self.app.flash(request, f"{email}: отписан.")
        elif action == "reactivate":
            reason = str(form.get("reason") or "")
            email = await self.app.run(self.support.reactivate, reader, editor, reason)
            self.app.flash(request, f"{email}: подписка возвращена.")
        elif action == "resend":
            email = await self.support.resend(reader, editor)
            self.app.flash(request, f"Письмо для подтверждения отправлено на {email}.")
        elif action == "forget":
            email = await self.app.run(self.support.forget, reader, editor)
            self.app.flash(request, f"Все данные {email} удалены; адрес больше не принимается.")
            return RedirectResponse("/desk/readers", status_code=303)
        else:
            raise DigestError("Неизвестное действие.")
        return RedirectResponse(f"/desk/readers/{reader}", status_code=303)

    async def export(self, request: Request) -> Response:
        name, text = await self.app.run(
            self.support.export_csv, reader_of(request), self.app.editor(request) or "desk"
        )
        return Response(
            text,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    async def upload(self, request: Request) -> Response:
        async with request.form() as form:  # closes the upload's spooled file
            upload = form.get("file")
            if not isinstance(upload, UploadFile) or not upload.filename:
                raise DigestError("Выберите файл CSV.")
            data, name = await upload.read(), upload.filename
        report = await self.app.run(
            self.support.import_csv, data, name, self.app.editor(request) or "desk"
        )
        return self.app.page(request, "imported", report=report, file_name=name)

    def routes(self) -> list[Route]:
        def g(handler: Handler) -> Handler:
            return self.app.guarded(handler, admin=True)

        return [
            Route("/desk/readers", g(self.index), methods=["GET"]),
            Route("/desk/readers/import", g(self.upload), methods=["POST"]),
            Route("/desk/readers/{reader:int}", g(self.reader), methods=["GET"]),
            Route("/desk/readers/{reader:int}", g(self.act), methods=["POST"]),
            Route("/desk/readers/{reader:int}/export.csv", g(self.export), methods=["GET"]),
        ]


def reader_of(request: Request) -> int:
    """The reader of the URL; a number past any id is "no such reader" (404)."""
    found = row_id(int(request.path_params["reader"]))
    if found is None:
        raise DigestError("Такого читателя нет.")
    return found
