"""`/healthz` and `/metrics`: for the load balancer and Prometheus, optionally only
to the networks DIGEST_METRICS_ALLOW lists (403 to anyone else)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from digest.observe.health import health
from digest.observe.metrics import exposition
from digest.observe.serve import allowed

if TYPE_CHECKING:
    from digest.web.app import WebContext


class HealthPages:
    def __init__(self, context: WebContext) -> None:
        self.context = context

    def _refused(self, request: Request) -> Response | None:
        host = request.client.host if request.client else None
        if allowed(host, self.context.settings.metrics_networks()):
            return None
        return PlainTextResponse("not from this address\n", status_code=403)

    async def healthz(self, request: Request) -> Response:
        """200 when every check passes; 503 naming the parts that fail."""
        refused = self._refused(request)
        if refused is not None:
            return refused
        context = self.context
        checks = await context.run(lambda: health(context.factory, context.clock()))
        failing = [c.name for c in checks if not c.ok]
        body = {
            "status": "fail" if failing else "ok",
            "failing": failing,
            "checks": [c.as_json() for c in checks],
        }
        return JSONResponse(body, status_code=503 if failing else 200)

    async def metrics(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        context = self.context
        body = await context.run(lambda: exposition(context.factory, context.clock))
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    def routes(self) -> list[Route]:
        return [
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
        ]
