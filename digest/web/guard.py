"""What every request and response of ``digest serve`` passes through, before any
handler: a cap on the request body in bytes and in time, and the security headers.

Starlette limits a form per field, not per request, so a 100 MB body to the
unauthenticated ``/desk/login`` was read whole. Here a body is counted as it
arrives (with or without Content-Length) and refused with 413 past the cap, and
with 408 when it has not all come within ``BODY_SECONDS`` (a body trickled a byte
every few seconds held a connection for as long as the client liked), before
anything parses it; forms are small, so what is kept is replayed to the handler
from memory. An upload (the desk's CSV import) is not read here at all: the
handler checks who is logged in first, then reads it, counted and timed the same
way (issue 24: 5 MB were read from anyone before the login was looked at).
"""

from __future__ import annotations

import asyncio
import json
import time
from http import HTTPStatus

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY = 64 * 1024  # the largest form of the desk or the preferences page is ~2 KB
UPLOADS = ("/desk/readers/import",)
UPLOAD_BODY = 5 * 1024 * 1024
BODY_SECONDS = 10.0  # a form's whole body, from the end of its headers
UPLOAD_SECONDS = 120.0  # an upload's (5 MB at 40 KB/s)
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
            await _refuse(scope, send, 413, "Слишком большой запрос.")
            return
        path = str(scope.get("path", ""))
        if _has_nul(scope.get("query_string", b"")) or (
            path.startswith(API) and not path.isprintable()  # a control character in a name
        ):
            await _refuse(scope, send, 400, NUL_WORDS)
            return
        if scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        if scope.get("path") in UPLOADS:
            await self._streamed(scope, receive, send, cap)
            return
        try:
            async with asyncio.timeout(BODY_SECONDS):
                body = await _read(receive, cap)
        except TimeoutError:
            await _refuse(scope, send, 408, "Запрос пришёл слишком медленно.")
            return
        except _TooLarge:
            await _refuse(scope, send, 413, "Слишком большой запрос.")
            return
        if body is None:
            return  # the client went away
        if _has_nul(body):
            await _refuse(scope, send, 400, NUL_WORDS)
            return
        replay: list[Message] = [{"type": "http.request", "body": body}]

        async def replayed() -> Message:
            return replay.pop() if replay else await receive()

        await self.app(scope, replayed, send)

    async def _streamed(self, scope: Scope, receive: Receive, send: Send, cap: int) -> None:
        """The handler reads the body when it is ready to (after its login check),
        through a receive that counts it and keeps its deadline."""
        size, deadline = 0, time.monotonic() + UPLOAD_SECONDS
        started = False

        async def counted() -> Message:
            nonlocal size
            left = deadline - time.monotonic()
            if left <= 0:
                raise _TooSlow()
            try:
                async with asyncio.timeout(left):
                    message = await receive()
            except TimeoutError:
                raise _TooSlow() from None
            size += len(message.get("body", b""))
            if size > cap:
                raise _TooLarge()
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, sending)
        except (_TooLarge, _TooSlow) as refused:
            if started:
                raise
            too_slow = isinstance(refused, _TooSlow)
            await _refuse(
                scope,
                send,
                408 if too_slow else 413,
                "Запрос пришёл слишком медленно." if too_slow else "Слишком большой запрос.",
            )

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
                given = [v for k, v in headers if k.lower() == b"content-security-policy"]
                headers = [(k, v) for k, v in headers if k.lower() != b"content-security-policy"]
                headers.append((b"content-security-policy", _policy(given, framed)))
                if no_store and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store, private"))
                message = {**message, "headers": headers}
            await send(message)

        return sending


# Defense in depth (issue 24): the archive shows feed-derived HTML on the desk's
# origin; were anything to slip past the escaping, no script of another origin and
# no inline one would run. The desk's own scripts are files (/desk/static/).
POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self' 'unsafe-inline'",  # the pages' <style>, the letter's inlined CSS
    "img-src": "'self' https: data:",
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
}


def _policy(given: list[bytes], framed: bool) -> bytes:
    """A handler's own directives (the letter's frame: ``script-src 'none'``), then
    ours for every directive it did not name, then who may frame the page."""
    directives: dict[str, str] = {}
    for value in given:
        for part in value.decode("latin-1").split(";"):
            name, _, rest = part.strip().partition(" ")
            if name:
                directives.setdefault(name.lower(), rest.strip())
    for name, rest in POLICY.items():
        directives.setdefault(name, rest)
    directives["frame-ancestors"] = "'self'" if framed else "'none'"
    return "; ".join(f"{k} {v}" for k, v in directives.items()).encode("latin-1")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


NUL_WORDS = "В запросе нулевой байт: это не текст."


def _has_nul(data: bytes) -> bool:
    """A NUL in a query or a form, raw, %-encoded or as a JSON escape: no text field
    of ours holds one, and PostgreSQL refuses it in text (a 500 from the desk's
    login name or the Readers search, issue 24). One rule at the door for every
    handler behind it."""
    lowered = data.lower()
    return b"\x00" in data or b"%00" in data or b"\\u0000" in lowered


class _TooLarge(Exception):
    """The body passed its cap."""


class _TooSlow(Exception):
    """The body did not all come within its time."""


async def _read(receive: Receive, cap: int) -> bytes | None:
    """The whole body (None if the client went away); ``_TooLarge`` past ``cap``."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body = message.get("body", b"")
        size += len(body)
        if size > cap:
            raise _TooLarge()
        chunks.append(body)
        if not message.get("more_body", False):
            return b"".join(chunks)


API = "/api/"  # the HTTP API's answers are RFC 9457 problems, in English
API_WORDS = {
    400: "A NUL byte or a control character in the request: no field holds one.",
    408: f"The request body did not all arrive within {BODY_SECONDS:.0f} seconds.",
    413: f"The request body is over {MAX_BODY // 1024} KB.",
}


async def _refuse(scope: Scope, send: Send, status: int, words: str) -> None:
    kind = b"text/plain; charset=utf-8"
    body = words.encode()
    if str(scope.get("path", "")).startswith(API):
        kind = b"application/problem+json"
        problem = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status}
        body = json.dumps({**problem, "detail": API_WORDS[status]}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", kind),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
