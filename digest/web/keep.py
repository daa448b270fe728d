"""The sunset letter's button (issue 28 §5, ``audience.sunset``): ``GET
/keep/TOKEN`` shows a page with a button (mail scanners GET every link, and a
scanner must not count as a reader); ``POST /keep/TOKEN`` keeps the digest
coming, or brings a paused reader back. The token is signed for one reader and
expires; it never brings back a reader who left, bounced or complained."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from digest.audience.sunset import KEEP_DAYS
from digest.tokens import keep_key
from digest.web.public import ReaderPages, client_ip, cross_site


class KeepPages:
    def __init__(self, pages: ReaderPages) -> None:
        self.pages, self.context = pages, pages.context
        self.sunset = pages.context.services.sunset

    def key(self, token: str) -> str | None:
        return keep_key(self.pages.signers, token, KEEP_DAYS * 86400)

    async def page(self, request: Request) -> HTMLResponse:
        token = request.path_params["token"]
        if self.key(token) is None:
            return self.pages.bad_link()
        return self.pages.page("keep", "Остаться в рассылке", token=token)

    async def keep(self, request: Request) -> HTMLResponse:
        key = self.key(request.path_params["token"])
        if key is None or cross_site(request):
            return self.pages.bad_link()
        ip, agent = client_ip(request), request.headers.get("user-agent")
        sunset = self.sunset
        kept = await self.context.run(lambda: sunset.keep(key, ip, agent))
        if not kept:
            text = (
                "По этой ссылке рассылку уже не вернуть: адрес отписан. Чтобы снова "
                "получать письма, подпишитесь на сайте — мы пришлём письмо для подтверждения."
            )
            return self.pages.page("layout", "Рассылку не вернуть", 410, text=text)
        text = "Спасибо! Письма будут приходить, как прежде."
        return self.pages.page("layout", "Вы остаётесь в рассылке", text=text)

    def routes(self) -> list[Route]:
        return [
            Route("/keep/{token}", self.page, methods=["GET"]),
            Route("/keep/{token}", self.keep, methods=["POST"]),
        ]
