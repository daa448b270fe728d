"""What every request and response of ``digest serve`` passes through, before any
handler: a cap on the request body, and the security headers.

Starlette limits a form per field, not per request, so a 100 MB body to the
unauthenticated ``/desk/login`` was read whole. Here a body is counted as it
arrives (with or without Content-Length) and refused with 413 past the cap,
before anything parses it; forms are small, so what is kept is replayed to the
handler from memory.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY = 64 * 1024  # the largest form of the desk or the preferences page is ~2 KB
UPLOADS = ("/desk/readers/import",)
UPLOAD_BODY = 5 * 1024 * 1024
TOKEN_PAGES = ("/desk/", "/p/", "/u/", "/confirm/", "/c/")
FRAMED = "/frame"  # the desk's preview of a letter, shown in the desk's own iframe


class Guard:
    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = self._with_headers(scope, send)
        # The desk's CSV import (admins only, behind the login) takes a file.
        cap = UPLOAD_BODY if scope.get("path") in UPLOADS else self.max_body
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > cap):
            await _too_large(send)
            return
        if scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > cap:
                await _too_large(send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replay: list[Message] = [{"type": "http.request", "body": b"".join(chunks)}]

        async def replayed() -> Message:
            return replay.pop() if replay else await receive()

        await self.app(scope, replayed, send)

    @staticmethod
    def _with_headers(scope: Scope, send: Send) -> Send:
        path: str = scope.get("path", "")
        framed = path.startswith("/desk/") and path.endswith(FRAMED)
        no_store = path.startswith(TOKEN_PAGES)

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                # Tokens are in these URLs: no Referer may carry them to another site.
                # (same-origin, not no-referrer: with no-referrer a browser sends
                # "Origin: null" on our own forms, and the Origin check refuses them.)
                headers.append((b"referrer-policy", b"same-origin"))
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"x-frame-options", b"SAMEORIGIN" if framed else b"DENY"))
                ancestors = b"frame-ancestors 'self'" if framed else b"frame-ancestors 'none'"
                policy = [v for k, v in headers if k.lower() == b"content-security-policy"]
                headers = [(k, v) for k, v in headers if k.lower() != b"content-security-policy"]
                headers.append((b"content-security-policy", b"; ".join([*policy, ancestors])))
                if no_store and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store, private"))
                message = {**message, "headers": headers}
            await send(message)

        return sending


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


async def _too_large(send: Send) -> None:
    body = "Слишком большой запрос.".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
