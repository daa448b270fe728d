"""Who is calling and whether they may (issue 30): the bearer token, its rate, its
scopes; and a POST's ``Idempotency-Key``. Every route of the API takes its
caller from ``Gate.needs``; none reads a cookie, so a page on another site that
makes a reader's browser post here, cookies and all, gets a 401 and changes
nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Header, Request, Security
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from digest.api.problems import Refused
from digest.audience.remote import RemoteReaders
from digest.edition.remote import RemoteEditions
from digest.team.apikeys import ApiTokens, Caller
from digest.team.idempotency import KEY, Idempotency, fingerprint

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="A token from `digest tokens create NAME --scope …`, as `Bearer dgt_…`",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=KEY.pattern.join("^$"),  # printable ASCII, 1 to 200
        description="Send the call again with the same key: the same answer, no second effect",
    ),
]
UNAUTHORIZED = {"WWW-Authenticate": 'Bearer realm="digest"'}


class Gate:
    def __init__(self, tokens: ApiTokens, idempotency: Idempotency) -> None:
        self.tokens, self.idempotency = tokens, idempotency

    def check(
        self, credentials: HTTPAuthorizationCredentials | None, scopes: tuple[str, ...]
    ) -> Caller:
        """The calling token, let in, within its rate, with ``scopes``."""
        found = self.tokens.caller(credentials.credentials if credentials else None)
        if found is None:
            raise Refused(401, "a valid token is needed: Authorization: Bearer …", UNAUTHORIZED)
        wait = self.tokens.admit(found)
        if wait:
            raise Refused(
                429, f"this token's rate is spent: try in {wait} s", {"Retry-After": str(wait)}
            )
        missing = [s for s in scopes if not found.may(s)]
        if missing:
            raise Refused(403, f"this token lacks the scope {', '.join(missing)}")
        return found

    def once(
        self,
        caller: Caller,
        key: str | None,
        request: Request,
        payload: str,
        run: Callable[[], tuple[int, Any]],
    ) -> JSONResponse:
        """Run the call, or with a key seen before from this token, answer as then.
        ``payload``: the request's body as parsed (with its method and path, what
        a key is bound to)."""
        if key is None:
            status, body = run()
            return JSONResponse(body, status)
        mark = fingerprint(request.method, request.url.path, payload.encode())
        earlier = self.idempotency.begin(caller.id, key, mark)
        if earlier is not None:
            if not earlier.same:
                raise Refused(422, "this Idempotency-Key was used for another request")
            if earlier.status is None:
                raise Refused(409, "the first request with this Idempotency-Key is still running")
            replayed = {"Idempotent-Replayed": "true"}
            return JSONResponse(json.loads(earlier.body), earlier.status, headers=replayed)
        try:
            status, body = run()
        except BaseException:
            self.idempotency.abandon(caller.id, key)  # nothing done: the key is free again
            raise
        self.idempotency.finish(caller.id, key, status, json.dumps(body))
        return JSONResponse(body, status)


@dataclass(frozen=True)
class Wired:
    """What the routes use, handed in by ``api.app.create_api`` (the app's state)."""

    gate: Gate
    readers: Callable[[], RemoteReaders]
    lists: Callable[[], list[str]]
    editions: RemoteEditions


def wired(request: Request) -> Wired:
    found = request.app.state.wired
    assert isinstance(found, Wired)
    return found


def needs(*scopes: str) -> Callable[..., Caller]:
    """A dependency: the calling token, with ``scopes`` (none: any token)."""

    def caller(request: Request, credentials: Credentials) -> Caller:
        return wired(request).gate.check(credentials, scopes)

    return caller
