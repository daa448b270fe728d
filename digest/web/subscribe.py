"""The site's subscription box: ``GET /subscribe`` (a page with the form) and
``POST /subscribe`` (an HTML form or JSON). The box lives on another site's pages,
so a cross-site POST is what it is for: double opt-in, the honeypot and the limits
(``audience.signup``) are the guard, not an Origin check. Every answer is the same
whatever the address's state."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from digest.audience.signup import CONSENT_VERSION, Answer, Decision, Signups
from digest.audience.signup import Request as Asked
from digest.support import Support

if TYPE_CHECKING:
    from digest.web.app import WebContext

log = logging.getLogger(__name__)
CONSENT = (
    "Нажимая «Подписаться», вы соглашаетесь получать рассылку на этот адрес и на обработку "
    "адреса для её отправки. Отписаться можно в один клик из любого письма."
)
WORDS = {
    Answer.ACCEPTED: "Проверьте почту: мы отправили письмо для подтверждения.",
    Answer.LIMITED: "Слишком много запросов с вашего адреса. Попробуйте через час.",
    Answer.BAD_ADDRESS: "Проверьте адрес: в нём ошибка.",
}
STATUS = {Answer.ACCEPTED: 202, Answer.LIMITED: 429, Answer.BAD_ADDRESS: 422}


class SubscribeBox:
    def __init__(self, context: WebContext, env: Environment) -> None:
        self.context, self.env = context, env
        self.signups = Signups(context.factory, context.clock, context.secret)

    def page(self, status: int = 200, **values: Any) -> HTMLResponse:
        values.setdefault("list_key", next(iter(self.context.lists), "daily"))
        values.setdefault("email", "")
        html = self.env.get_template("reader/subscribe.html.j2").render(
            title="Подписка на рассылку",
            site_name=self.context.site_name,
            consent=CONSENT,
            **values,
        )
        return HTMLResponse(html, status_code=status)

    async def form_page(self, request: Request) -> Response:
        return self.page()

    async def subscribe(self, request: Request) -> Response:
        wants_json = request.headers.get("content-type", "").startswith("application/json")
        fields = await self._fields(request, wants_json)
        if fields is None:
            return self._answer(wants_json, Answer.BAD_ADDRESS, "")
        list_key = str(fields.get("list") or next(iter(self.context.lists), ""))
        if list_key not in self.context.lists:
            return self._answer(wants_json, Answer.BAD_ADDRESS, "", "нет такой рассылки")
        sections = fields.get("sections") or []
        asked = Asked(
            email=str(fields.get("email") or ""),
            sections=[str(s) for s in sections] if isinstance(sections, list) else [str(sections)],
            ip=request.client.host if request.client else None,
            page=str(fields.get("page") or request.headers.get("referer") or request.url),
            trap=str(fields.get("website") or ""),
        )
        decision = await self.context.run(lambda: self.signups.request(asked))
        if decision.invite is not None:
            await self._invite(list_key, decision)
        return self._answer(wants_json, decision.answer, asked.email, decision.problem)

    async def _fields(self, request: Request, wants_json: bool) -> dict[str, Any] | None:
        if wants_json:
            try:
                body = json.loads(await request.body())
            except (ValueError, UnicodeDecodeError, RecursionError):
                return None  # not JSON, or nested past what the parser recurses to
            return body if isinstance(body, dict) else None
        form = await request.form()
        values: dict[str, Any] = {k: form.get(k) for k in ("email", "list", "page", "website")}
        values["sections"] = [str(v) for v in form.getlist("section")]
        return values

    async def _invite(self, list_key: str, decision: Decision) -> None:
        """The confirmation mail, now; without a relay it waits for `subscribers invite`."""
        assert decision.invite is not None
        support = Support(self.context.services, list_key)
        await support.send_confirmation(self.context.lists[list_key], decision.invite)

    def _answer(self, wants_json: bool, answer: Answer, email: str, problem: str = "") -> Response:
        words = WORDS[answer] + (f" ({problem})" if problem else "")
        if wants_json:
            data = {"status": str(answer), "message": words, "consent_version": CONSENT_VERSION}
            return JSONResponse(data, status_code=STATUS[answer])
        if answer is Answer.ACCEPTED:
            return self.page(done=True)
        return self.page(STATUS[answer], error=words, email=email)

    def routes(self) -> list[Route]:
        return [
            Route("/subscribe", self.form_page, methods=["GET"]),
            Route("/subscribe", self.subscribe, methods=["POST"]),
        ]
