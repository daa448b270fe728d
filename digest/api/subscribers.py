"""``/api/v1/subscribers``: the site subscribes its readers, shows and changes
their choices, lets them leave or be forgotten (``audience.remote``).

What a token cannot read it cannot learn by writing: with ``subscribers:read`` a
change answers with the reader's record (404 for nobody); without it, every
change, leave or forget answers 202 alike, as the site's subscription box does
for strangers."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request

from digest.api.calls import IdempotencyKey, needs, wired
from digest.api.models import Accepted, ChangeIn, Email, SubscribeIn, SubscriberOut
from digest.api.problems import Refused, documented
from digest.audience.remote import Choices, Consent, Joined
from digest.team.apikeys import Caller

READ, WRITE, CONFIRM = "subscribers:read", "subscribers:write", "subscribers:confirm"
PathEmail = Annotated[Email, Path(description="The reader's address")]
Reader = Annotated[Caller, Depends(needs(READ))]
Writer = Annotated[Caller, Depends(needs(WRITE))]
QUEUED = "If the address may be subscribed, a confirmation is on its way."
TAKEN = "Done, if there was such a reader."
COMMON = documented(400, 401, 403, 404, 413, 422, 429, 503)

router = APIRouter(prefix="/subscribers", tags=["subscribers"])


def accepted(detail: str) -> tuple[int, dict[str, Any]]:
    return 202, Accepted(detail=detail).model_dump()


def record(found: dict[str, Any]) -> dict[str, Any]:
    sections = found.get("sections")
    out = {**found, "sections": sections.split(",") if sections else None}
    return SubscriberOut.model_validate(out).model_dump(mode="json")


@router.post(
    "", status_code=202, response_model=Accepted, summary="Subscribe a reader",
    responses={200: {"model": SubscriberOut}, **documented(409), **COMMON},
)  # fmt: skip
def subscribe(
    body: SubscribeIn, request: Request, caller: Writer, key: IdempotencyKey = None
) -> Any:
    """Double opt-in: the reader gets the confirmation mail (202, the same for every
    address). With `confirmed` and `consent` (scope subscribers:confirm): active now,
    the site's record of consent kept (200, the reader's record)."""
    use = wired(request)
    names = use.lists()
    list_key = body.list_key or (names[0] if names else "daily")
    if list_key not in names:
        raise Refused(422, f"no list {list_key!r}: {', '.join(names)}")
    if body.confirmed and not caller.may(CONFIRM):
        raise Refused(403, "confirmed: true needs the scope subscribers:confirm")
    consent = body.consent
    if body.confirmed and consent is None:
        raise Refused(422, "confirmed: true needs consent (version, at, ip, page)")

    def run() -> tuple[int, dict[str, Any]]:
        if consent is not None and body.confirmed:
            given = Consent(consent.version, consent.at, _ip(consent.ip), consent.page)
            choices = Choices(body.sections or None, body.format, body.timezone, body.frequency)
            return 200, record(
                use.readers().subscribe_confirmed(caller.who, body.email, choices, given)
            )
        page = body.page or f"api ({caller.name})"
        joined = use.readers().subscribe(caller.who, body.email, body.sections, list_key, page)
        if joined is Joined.LIMITED:
            raise Refused(429, "too many subscriptions this hour", {"Retry-After": "3600"})
        if joined is Joined.BAD_ADDRESS:
            raise Refused(422, "email: not an address mail can be sent to")
        return accepted(QUEUED)

    payload = body.model_dump_json(by_alias=True)
    return use.gate.once(caller, key, request, payload, run)


def _ip(value: object) -> str | None:
    return str(value) if value is not None else None


@router.get("/{email}", response_model=SubscriberOut, responses=COMMON, summary="A reader's record")
def get(email: PathEmail, request: Request, caller: Reader) -> Any:
    found = wired(request).readers().get(email)
    if found is None:
        raise Refused(404, "no such reader")
    return record(found)


@router.patch(
    "/{email}", response_model=SubscriberOut, summary="Change a reader's choices",
    responses={202: {"model": Accepted}, **COMMON},
)  # fmt: skip
def change(
    email: PathEmail, body: ChangeIn, request: Request, caller: Writer,
    key: IdempotencyKey = None,
) -> Any:  # fmt: skip
    """Sections, format, time zone, frequency; what is left out stays."""
    use = wired(request)
    choices = Choices(body.sections, body.format, body.timezone, body.frequency)

    def run() -> tuple[int, dict[str, Any]]:
        found = use.readers().change(caller.who, email, choices)
        if not caller.may(READ):
            return accepted(TAKEN)
        if found is None:
            raise Refused(404, "no such reader, or one who left")
        return 200, record(found)

    return use.gate.once(caller, key, request, body.model_dump_json(), run)


@router.post(
    "/{email}/unsubscribe", status_code=202, response_model=Accepted, responses=COMMON,
    summary="Unsubscribe a reader",
)  # fmt: skip
def unsubscribe(
    email: PathEmail, request: Request, caller: Writer, key: IdempotencyKey = None
) -> Any:
    """Never mailed again by this list; the record is kept (202 alike for anyone)."""
    use = wired(request)

    def run() -> tuple[int, dict[str, Any]]:
        use.readers().unsubscribe(caller.who, email)
        return accepted(TAKEN)

    return use.gate.once(caller, key, request, "", run)


@router.post(
    "/{email}/forget", status_code=202, response_model=Accepted, responses=COMMON,
    summary="Forget a reader (erasure)",
)  # fmt: skip
def forget(email: PathEmail, request: Request, caller: Writer, key: IdempotencyKey = None) -> Any:
    """152-FZ and GDPR erasure: everything about the address is removed; only its hash
    is kept, so it is never added again by mistake (202 alike for anyone)."""
    use = wired(request)

    def run() -> tuple[int, dict[str, Any]]:
        use.readers().forget(caller.who, email)
        return accepted(TAKEN)

    return use.gate.once(caller, key, request, "", run)
