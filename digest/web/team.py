"""The desk's pages about the team and the list (issue 28 §3, §5): for admins the
accounts (add, a new password, a role, remove) and the whole audit log
(``team.accounts.Accounts`` does each and logs it); for every editor the list's
growth and churn per week (``track.growth.Growth``: figures, no reader named)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from digest.errors import DigestError
from digest.kinds import row_id

if TYPE_CHECKING:
    from digest.web.desk import DeskApp, Handler


class TeamDesk:
    def __init__(self, app: DeskApp) -> None:
        self.app = app
        self.accounts = app.services.accounts
        self.growth = app.services.growth

    async def index(self, request: Request) -> Response:
        accounts = await self.app.run(self.accounts.listing)
        return self.app.page(request, "editors", accounts=accounts)

    async def act(self, request: Request) -> Response:
        form = await request.form()
        action, name = str(form.get("action") or ""), str(form.get("name") or "").strip()
        password, role = str(form.get("password") or ""), str(form.get("role") or "editor")
        by = self.app.editor(request) or "desk"
        if action == "add":
            await self.app.run(self.accounts.add, name, password, role, by)
            said = "учётная запись создана"
        elif action == "passwd":
            await self.app.run(self.accounts.passwd, name, password, by)
            said = "новый пароль задан; прежние входы закрыты"
        elif action == "role":
            await self.app.run(self.accounts.set_role, name, role, by)
            said = "роль изменена"
        elif action == "remove":
            await self.app.run(self.accounts.remove, name, by)
            said = "учётная запись удалена"
        else:
            raise DigestError("Неизвестное действие.")
        self.app.flash(request, f"{name}: {said}.")
        return RedirectResponse("/desk/editors", status_code=303)

    async def audit(self, request: Request) -> Response:
        before = row_id(request.query_params.get("before") or "")
        rows = await self.app.run(self.accounts.audit, before)
        return self.app.page(request, "audit", rows=rows)

    async def weeks(self, request: Request) -> Response:
        report = await self.app.run(self.growth.weeks, 12)
        return self.app.page(request, "growth", g=report)

    def routes(self) -> list[Route]:
        def g(handler: Handler) -> Handler:
            return self.app.guarded(handler, admin=True)

        return [
            Route("/desk/editors", g(self.index), methods=["GET"]),
            Route("/desk/editors", g(self.act), methods=["POST"]),
            Route("/desk/audit", g(self.audit), methods=["GET"]),
            Route("/desk/growth", self.app.guarded(self.weeks), methods=["GET"]),
        ]
