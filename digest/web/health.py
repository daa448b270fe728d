"""`/healthz` and `/metrics`: for the load balancer and Prometheus. `/metrics` only
to the networks DIGEST_METRICS_ALLOW lists when it lists any (403 to anyone
else). `/healthz` answers everyone, but says only ok or fail per part; what
each check found (database URL, scheduler host and pid) only to a listed
network (issue 24), and to `digest doctor`."""

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
        context = self.context
        checks = await context.run(lambda: health(context.factory, context.clock()))
        failing = [c.name for c in checks if not c.ok]
        body: dict[str, object] = {"status": "fail" if failing else "ok", "failing": failing}
        if self._listed(request):
            body["checks"] = [c.as_json() for c in checks]
        else:
            body["checks"] = [{"check": c.name, "ok": c.ok} for c in checks]
        return JSONResponse(body, status_code=503 if failing else 200)

    def _listed(self, request: Request) -> bool:
        networks = self.context.settings.metrics_networks()
        host = request.client.host if request.client else None
        return bool(networks) and allowed(host, networks)

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
