"""Every error of the API as an RFC 9457 problem (``application/problem+json``):
a status, a title, a detail a person can act on, never a stack trace. Bad input
is a 4xx that names the field; the database away is a 503 with ``Retry-After``;
anything else is a 500 that says only that (and is logged)."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from digest.audience.remote import NotSubscribable
from digest.audience.rows import BadSubscriber
from digest.db import DatabaseError, is_unavailable
from digest.edition.remote import NoEdition
from digest.errors import DigestError, EditionError

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str = ""
    errors: list[dict[str, Any]] | None = None  # a request's fields that were refused


def problem(
    status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = Problem(title=HTTPStatus(status).phrase, status=status, detail=detail, **extra)
    return JSONResponse(
        body.model_dump(exclude_none=True), status, headers=headers, media_type=PROBLEM
    )


class Refused(Exception):
    """A handler's refusal: raised where it is decided, answered as a problem."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers


# A DigestError by what it means to the caller; the first that matches wins.
STATUS: list[tuple[type[DigestError], int]] = [
    (NoEdition, 404),
    (BadSubscriber, 422),
    (NotSubscribable, 409),
    (EditionError, 409),
    (DigestError, 422),
]


def install(app: FastAPI) -> None:
    """The API's error handlers: each kind of failure, one problem."""

    async def refused(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Refused)
        return problem(exc.status, exc.detail, exc.headers)

    async def http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return problem(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    async def invalid(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        fields = [
            {"where": ".".join(str(p) for p in e.get("loc", ())), "problem": str(e.get("msg"))}
            for e in exc.errors()[:20]
        ]
        return problem(422, "the request does not match the API's document", errors=fields)

    async def digest_error(_request: Request, exc: Exception) -> JSONResponse:
        status = next(code for kind, code in STATUS if isinstance(exc, kind))
        return problem(status, str(exc))

    async def too_deep(_request: Request, _exc: Exception) -> JSONResponse:
        return problem(400, "the JSON is nested deeper than the parser goes")

    async def database(_request: Request, exc: Exception) -> JSONResponse:
        if is_unavailable(exc):
            return problem(503, "the database is away: try again", {"Retry-After": "30"})
        log.error("api: database error %s", type(exc).__name__)
        return problem(500, "the request could not be completed")

    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("api: %s", type(exc).__name__, exc_info=exc)  # the log has it, not the caller
        return problem(500, "the request could not be completed")

    app.add_exception_handler(Exception, unexpected)
    app.add_exception_handler(Refused, refused)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(DigestError, digest_error)
    app.add_exception_handler(RecursionError, too_deep)
    app.add_exception_handler(DatabaseError, database)


def documented(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The problems a route may answer, for its OpenAPI document."""
    return {
        code: {
            "description": HTTPStatus(code).phrase,
            "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for code in codes
    }
