"""The HTTP API (issue 30): ``/api/v1/`` in the same web app, JSON in and out,
for the site's server and for scripts. FastAPI makes its routes and its OpenAPI
3.1 document (``/api/v1/openapi.json``) from the pydantic models in
``api.models``; ``/api/v1/docs`` is the same document as a page for people.
Tokens only, never cookies (``api.calls``); every error a problem
(``api.problems``). docs/API.md has the threat model, the scopes and examples."""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import HTMLResponse
from jinja2 import Environment

from digest.api import editions, subscribers
from digest.api.calls import Gate, Wired, needs
from digest.api.models import TokenOut
from digest.api.problems import Problem, documented, install
from digest.kinds import API_SCOPES as SCOPES
from digest.team.apikeys import Caller
from digest.wiring import Services

TITLE = "digest API"
VERSION = "1"


def create_api(services: Services, lists: Callable[[], list[str]], env: Environment) -> FastAPI:
    api = FastAPI(
        title=TITLE,
        version=VERSION,
        summary="The daily digest's readers and editions, for the site and for scripts",
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url=None,  # Swagger UI loads scripts from a CDN: /docs is ours, plain HTML
        redoc_url=None,
    )
    install(api)
    gate = Gate(services.api_tokens, services.idempotency)
    api.state.wired = Wired(gate, lambda: services.remote_readers, lists, services.remote_editions)
    api.include_router(subscribers.router)
    api.include_router(editions.router)
    api.include_router(_own(api, env))
    made = api.openapi

    def document() -> dict[str, Any]:
        doc = made()  # made once and kept by FastAPI; the problems' schema added to it
        doc.setdefault("components", {}).setdefault("schemas", {}).setdefault(
            "Problem", Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        )
        return doc

    api.openapi = document  # type: ignore[method-assign]
    return api


Anyone = Annotated[Caller, Depends(needs())]


def _own(api: FastAPI, env: Environment) -> APIRouter:
    own = APIRouter(tags=["token"])

    @own.get(
        "/token", response_model=TokenOut, responses=documented(401, 429, 503),
        summary="The calling token: its name and scopes",
    )  # fmt: skip
    def token(caller: Anyone) -> Any:
        return {"name": caller.name, "scopes": sorted(caller.scopes)}

    @own.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        page = env.get_template("api.html.j2").render(
            title=TITLE, document=api.openapi(), scopes=SCOPES
        )
        return HTMLResponse(page)

    return own


DESCRIPTION = """Every call carries `Authorization: Bearer dgt_…`, a token made by
`digest tokens create NAME --scope …` (scopes: subscribers:read, subscribers:write,
subscribers:confirm, editions:read, editions:send). Cookies are never read.

A POST or PATCH with an `Idempotency-Key` header may be sent again: the same answer,
no second effect. Each token has its own rate (DIGEST_API_RATE a minute): past it,
429 with Retry-After. Errors are RFC 9457 problems (application/problem+json)."""
