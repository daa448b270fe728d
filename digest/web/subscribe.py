"""The site's subscription box: ``GET /subscribe`` (a page with the form) and
``POST /subscribe`` (an HTML form or JSON). The box lives on another site's pages,
so a cross-site POST is what it is for: double opt-in, the honeypot and the limits
(``audience.signup``) are the guard, not an Origin check. Every answer is the same
whatever the address's state, and so is its time: a request is only queued; the
confirmations are sent by ``drain`` in the background (issue 24: a new address
was answered after its mail went out, 58 ms against 7 ms for a known one)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from digest.audience.signup import CONSENT_VERSION, Answer, Signups
from digest.audience.signup import Request as Asked
from digest.db import DatabaseError

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
DRAIN_POLL = 2.0  # seconds: requests another process queued are found this often


class SubscribeBox:
    def __init__(self, context: WebContext, env: Environment) -> None:
        self.context, self.env = context, env
        self.signups = Signups(
            context.factory, context.clock, context.secret, context.services.wayback
        )
        self.waiting = asyncio.Event()  # set by a request: the drain looks at once
        self.stopping = False

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
            list_key=list_key,
        )
        decision = await self.context.run(lambda: self.signups.request(asked))
        self.waiting.set()
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

    async def drain(self) -> int:
        """Decide the waiting requests and send their confirmations (without a relay
        they wait for `subscribers invite`); how many were sent."""
        sent = 0
        for invite in await self.context.run(self.signups.take):
            mailing_list = self.context.lists.get(invite.list_key)
            if mailing_list is None:
                log.warning("subscription box: no list %r any more", invite.list_key)
                continue
            support = self.context.services.support(invite.list_key)
            sent += await support.send_confirmation(mailing_list, invite.subscriber) is None
        return sent

    async def drain_forever(self) -> None:
        """Until ``stop``: what is waiting, at once after a request, else every
        ``DRAIN_POLL`` s (requests another process of `digest serve` queued)."""
        while not self.stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.waiting.wait(), DRAIN_POLL)
            self.waiting.clear()
            try:
                while not self.stopping and await self.drain():
                    pass
            except DatabaseError as exc:  # away: the requests wait in the database
                log.warning("subscription box: the drain waits (%s)", exc)

    def stop(self) -> None:
        """Finish the mail in hand, take no more (the rest wait for the next start)."""
        self.stopping = True
        self.waiting.set()

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
