"""`--metrics-port` of `digest worker` and `digest scheduler`: a small HTTP server
in a thread of the process, answering GET /metrics to the allowed networks."""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client.exposition import CONTENT_TYPE_LATEST

from digest.config.values import Network
from digest.db import Factory
from digest.models import Clock
from digest.observe.metrics import exposition

log = logging.getLogger(__name__)


def allowed(host: str | None, networks: Iterable[Network]) -> bool:
    """No networks listed: anyone who reaches the port (the firewall decides)."""
    nets = tuple(networks)
    if not nets:
        return True
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    return any(address in net for net in nets)


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics: " + format, *args)


def metrics_app(
    networks: tuple[Network, ...], factory: Factory | None, clock: Clock
) -> Callable[..., list[bytes]]:
    def app(environ: dict[str, Any], start: Callable[..., Any]) -> list[bytes]:
        if not allowed(environ.get("REMOTE_ADDR"), networks):
            start("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"not from this address\n"]
        if environ.get("REQUEST_METHOD") != "GET" or environ.get("PATH_INFO") != "/metrics":
            start("404 Not Found", [("Content-Type", "text/plain")])
            return [b"GET /metrics\n"]
        body = exposition(factory, clock)
        start("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
        return [body]

    return app


def serve_metrics(
    host: str,
    port: int,
    networks: tuple[Network, ...],
    factory: Factory | None,
    clock: Clock,
) -> WSGIServer:
    """Serve until the process ends (a daemon thread)."""
    server = make_server(host, port, metrics_app(networks, factory, clock), handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="digest-metrics", daemon=True).start()
    log.info("metrics on http://%s:%d/metrics", host, server.server_port)
    return server
