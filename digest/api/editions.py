"""``/api/v1/editions``: the site's admin scripts and ops tools read editions and
move their sends (``edition.remote``): every move through the lifecycle's one
table, refused (409) with its reasons, written to the audit log."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from digest.api.calls import IdempotencyKey, needs, wired
from digest.api.models import EditionOut, EditionQuery, EditionsPage, Email, LetterOut
from digest.api.problems import Refused, documented
from digest.edition.remote import Move
from digest.models import EditionStatus
from digest.team.apikeys import Caller
from digest.track.reports import EditionReport

READ, SEND = "editions:read", "editions:send"
LINKS = "subscribers:write"  # a named reader's letter carries their own working links
EditionId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The edition's id", examples=[1])]
Reader = Annotated[Caller, Depends(needs(READ))]
Sender = Annotated[Caller, Depends(needs(SEND))]
COMMON = documented(400, 401, 403, 422, 429, 503)
MOVES = {
    Move.APPROVE: "Approve a draft",
    Move.SEND: "Start the send: a delivery per reader, queued for the workers",
    Move.PAUSE: "Pause the send (workers stop claiming within a second)",
    Move.RESUME: "Resume a paused send",
    Move.CANCEL: "Cancel the send for good (what is queued is suppressed)",
}

router = APIRouter(prefix="/editions", tags=["editions"])


def edition(report: EditionReport) -> dict[str, Any]:
    return EditionOut.model_validate(report.as_json()).model_dump(mode="json")


@router.get("", response_model=EditionsPage, responses=COMMON, summary="Editions, newest first")
def listing(query: Annotated[EditionQuery, Query()], request: Request, caller: Reader) -> Any:
    """By schedule, status and edition date (`since`, `until`: both included); a page of
    `limit`, the next one from `before`."""
    status = EditionStatus(query.status) if query.status else None
    found = wired(request).editions.listing(
        query.schedule, status, query.since, query.until, query.limit, query.before
    )
    more = found[-1].id if len(found) == query.limit else None
    return {"editions": [edition(r) for r in found], "next_before": more}


@router.get(
    "/{edition_id}", response_model=EditionOut, responses={**documented(404), **COMMON},
    summary="One edition: counts, reasons, ETA",
)  # fmt: skip
def one(edition_id: EditionId, request: Request, caller: Reader) -> Any:
    return edition(wired(request).editions.report(edition_id))


@router.get(
    "/{edition_id}/preview", response_model=LetterOut,
    responses={**documented(404, 409), **COMMON}, summary="The letter as a reader gets it",
)  # fmt: skip
def preview(
    edition_id: EditionId,
    request: Request,
    caller: Reader,
    email: Annotated[Email | None, Query(description="A reader (default: a sample)")] = None,
) -> Any:
    """HTML, text and headers, exactly as they would be sent. A named reader's letter
    holds their own unsubscribe and preferences links: it also needs subscribers:write."""
    if email is not None and not caller.may(LINKS):
        raise Refused(403, f"a named reader's letter needs the scope {LINKS} too")
    letter = wired(request).editions.letter(edition_id, email)
    headers = [{"name": k, "value": v} for k, v in letter.headers]
    return LetterOut.model_validate({**vars(letter), "headers": headers}).model_dump()


def mover(step: Move) -> Any:
    def handler(
        edition_id: EditionId, request: Request, caller: Sender, key: IdempotencyKey = None
    ) -> Any:
        use = wired(request)

        def run() -> tuple[int, dict[str, Any]]:
            return 200, edition(use.editions.move(edition_id, step, caller.who))

        return use.gate.once(caller, key, request, "", run)

    return handler


for _step, _summary in MOVES.items():
    router.add_api_route(
        f"/{{edition_id}}/{_step}", mover(_step), methods=["POST"], response_model=EditionOut,
        responses={**documented(404, 409), **COMMON}, summary=_summary,
        operation_id=f"edition_{_step}",
    )  # fmt: skip
