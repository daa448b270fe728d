"""The HTTP API (issue 30) over real HTTP, on SQLite and PostgreSQL: its OpenAPI
document, tokens and their scopes, a revoked token, the site's "subscribe my
logged-in reader" flow end to end, double opt-in answered alike, safe retries,
the rate, editions moved through the lifecycle, and bad input answered as
problems, never a 500."""

from __future__ import annotations

from datetime import date

import pytest

from digest.demo.words import reader_address
from tests.support.api import ALL, Answer, Api
from tests.support.cli import wait_until
from tests.support.smtp import send_through
from tests.support.web import Client

READER = reader_address(1)


def test_the_openapi_document_is_served_with_every_operation_and_a_page_for_people(
    api: Api,
) -> None:
    doc = api.call("GET", "/openapi.json")
    assert doc.status == 200 and doc.body["openapi"].startswith("3.1")
    operations = {
        f"{method.upper()} {path}"
        for path, methods in doc.body["paths"].items()
        for method in methods
    }
    assert {
        "POST /subscribers", "GET /subscribers/{email}", "PATCH /subscribers/{email}",
        "POST /subscribers/{email}/unsubscribe", "POST /subscribers/{email}/forget",
        "GET /editions", "GET /editions/{edition_id}", "GET /editions/{edition_id}/preview",
        "POST /editions/{edition_id}/approve", "POST /editions/{edition_id}/send",
        "POST /editions/{edition_id}/pause", "POST /editions/{edition_id}/resume",
        "POST /editions/{edition_id}/cancel", "GET /token",
    } <= operations  # fmt: skip
    assert doc.body["components"]["securitySchemes"]["token"]["scheme"] == "bearer"
    page = api.call("GET", "/docs")
    assert page.status == 200 and page.kind.startswith("text/html")
    assert "/api/v1/subscribers/{email}/forget" in page.body and "subscribers:confirm" in page.body


def problem_of(answer: Answer, status: int) -> str:
    """The answer is the RFC 9457 problem of ``status``: its detail."""
    assert answer.status == status, (answer.status, answer.body)
    assert answer.kind.startswith("application/problem+json"), answer.kind
    assert answer.body["status"] == status and answer.body["title"]
    return str(answer.body.get("detail", ""))


CONSENT = {
    "version": "site-2026-10", "at": "2026-11-25T10:58:00+03:00",
    "ip": "203.0.113.7", "page": "https://vpk.example.ru/profile",
}  # fmt: skip
NEWCOMER = "olga@mail.example.ru"


def test_no_token_a_wrong_one_or_a_revoked_one_is_refused_at_once(api: Api) -> None:
    assert "Bearer" in problem_of(api.call("GET", "/token"), 401)
    assert api.call("GET", "/token").headers["www-authenticate"].startswith("Bearer")
    problem_of(api.call("GET", "/token", token="dgt_" + "A" * 43), 401)
    problem_of(api.call("GET", "/token", headers={"Authorization": "Basic YTpi"}), 401)
    token = api.token("editions:read", name="ops")
    me = api.call("GET", "/token", token)
    assert me.status == 200 and me.body == {"name": "ops", "scopes": ["editions:read"]}
    api.services.api_tokens.revoke("ops", "test")
    problem_of(api.call("GET", "/token", token), 401)  # the very next call


# Each operation and the scopes that open it: every other token is refused.
OPERATIONS = [
    ("GET", f"/subscribers/{READER}", None, {"subscribers:read"}),
    ("POST", "/subscribers", {"email": NEWCOMER}, {"subscribers:write"}),
    ("PATCH", f"/subscribers/{READER}", {"format": "text"}, {"subscribers:write"}),
    ("POST", f"/subscribers/{READER}/unsubscribe", None, {"subscribers:write"}),
    ("POST", f"/subscribers/{NEWCOMER}/forget", None, {"subscribers:write"}),
    ("GET", "/editions", None, {"editions:read"}),
    ("POST", "/editions/EDITION/approve", None, {"editions:send"}),
]


@pytest.mark.parametrize(("method", "path", "body", "opens"), OPERATIONS)
def test_each_scope_is_refused_where_it_does_not_apply(
    api: Api, method: str, path: str, body: object, opens: set[str]
) -> None:
    edition = api.services.editions.build(api.services.schedule("daily"), date(2026, 11, 25))
    path = path.replace("EDITION", str(edition.id))
    for scope in sorted(set(ALL) - opens):
        token = api.token(scope)
        assert sorted(opens)[0] in problem_of(api.call(method, path, token, body), 403)
    allowed = api.call(method, path, api.token(*opens), body)
    assert allowed.status < 300, (allowed.status, allowed.body)


def test_confirmed_needs_its_own_scope_and_the_sites_consent(api: Api) -> None:
    writer = api.token("subscribers:write")
    detail = problem_of(
        api.call(
            "POST",
            "/subscribers",
            writer,
            {"email": NEWCOMER, "confirmed": True, "consent": CONSENT},
        ),
        403,
    )
    assert "subscribers:confirm" in detail
    site = api.token("subscribers:write", "subscribers:confirm")
    assert "consent" in problem_of(
        api.call("POST", "/subscribers", site, {"email": NEWCOMER, "confirmed": True}), 422
    )
    assert api.services.remote_readers.get(NEWCOMER) is None


def test_the_site_subscribes_its_logged_in_reader_who_then_gets_the_edition(api: Api) -> None:
    site = api.token(*ALL, name="site")
    joined = api.call(
        "POST", "/subscribers", site,
        {"email": NEWCOMER, "confirmed": True, "consent": CONSENT, "sections": ["армия"],
         "timezone": "Asia/Vladivostok", "format": "html"},
    )  # fmt: skip
    assert joined.status == 200, joined.body
    reader = joined.body
    assert reader["status"] == "active" and reader["consent_version"] == "site-2026-10"
    assert reader["sections"] == ["армия"]
    assert (
        reader["consent_page"] == CONSENT["page"]
        and reader["consent_source"] == "site (token:site)"
    )
    assert (
        reader["consent_at"].startswith("2026-11-25T07:58")
        and reader["timezone"] == "Asia/Vladivostok"
    )
    assert api.recipients() == []  # no confirmation round trip: the site did it
    changed = api.call(
        "PATCH", f"/subscribers/{NEWCOMER}", site, {"sections": [], "format": "text"}
    )
    assert changed.status == 200 and changed.body["sections"] is None
    assert changed.body["format"] == "text" and changed.body["timezone"] == "Asia/Vladivostok"
    # Ops start the send through the API; the edition goes to the new reader with the rest.
    services = api.services
    edition = services.editions.build(services.schedule("daily"), date(2026, 11, 25))
    started = api.call("POST", f"/editions/{edition.id}/send", site)
    assert started.status == 200 and started.body["counts"]["queued"] == 4  # three and Olga
    send_through(services, edition, api.smtp.url)  # what a worker does with the queue
    assert NEWCOMER in api.recipients() and len(api.recipients()) == 4
    left = api.call("POST", f"/subscribers/{NEWCOMER}/unsubscribe", site)
    assert (
        left.status == 202
        and api.call("GET", f"/subscribers/{NEWCOMER}", site).body["status"] == "unsubscribed"
    )
    audit = [(a.editor, a.action) for a in services.accounts.audit()]
    assert ("token:site", "api subscribe") in audit and ("token:site", "api unsubscribe") in audit
    assert ("token:site", "api change") in audit


def test_double_opt_in_answers_alike_and_only_the_new_address_is_mailed(api: Api) -> None:
    writer = api.token("subscribers:write")
    new = api.call("POST", "/subscribers", writer, {"email": NEWCOMER})
    known = api.call("POST", "/subscribers", writer, {"email": READER})
    assert new.status == known.status == 202 and new.body == known.body
    wait_until(lambda: len(api.recipients()) >= 1, 20)
    assert api.recipients() == [NEWCOMER]
    assert api.services.remote_readers.get(NEWCOMER)["status"] == "pending"
    # Unsubscribe and forget say the same for a reader and for nobody.
    nobody = api.call("POST", "/subscribers/nobody@mail.example.ru/forget", writer)
    somebody = api.call("POST", f"/subscribers/{NEWCOMER}/forget", writer)
    assert nobody.status == somebody.status == 202 and nobody.body == somebody.body
    assert api.services.remote_readers.get(NEWCOMER) is None


def test_a_change_without_the_read_scope_tells_nothing_about_who_reads(api: Api) -> None:
    writer = api.token("subscribers:write")
    reader = api.call("PATCH", f"/subscribers/{READER}", writer, {"format": "text"})
    nobody = api.call("PATCH", "/subscribers/nobody@mail.example.ru", writer, {"format": "text"})
    assert reader.status == nobody.status == 202 and reader.body == nobody.body
    assert api.services.remote_readers.get(READER)["format"] == "text"


def test_an_idempotent_retry_gets_the_same_answer_and_no_second_effect(api: Api) -> None:
    site = api.token(*ALL, name="site")
    body = {"email": NEWCOMER, "confirmed": True, "consent": CONSENT}
    first = api.call("POST", "/subscribers", site, body, {"Idempotency-Key": "join-olga-1"})
    again = api.call("POST", "/subscribers", site, body, {"Idempotency-Key": "join-olga-1"})
    assert first.status == again.status == 200 and first.body == again.body
    assert again.headers.get("idempotent-replayed") == "true"
    other = api.call(
        "POST", "/subscribers", site, {**body, "format": "text"}, {"Idempotency-Key": "join-olga-1"}
    )
    assert "another request" in problem_of(other, 422)
    edition = api.services.editions.build(api.services.schedule("daily"), date(2026, 11, 25))
    key = {"Idempotency-Key": "start-1"}
    started = api.call("POST", f"/editions/{edition.id}/send", site, headers=key)
    replay = api.call("POST", f"/editions/{edition.id}/send", site, headers=key)
    assert started.status == replay.status == 200 and started.body == replay.body
    audit = [a.action for a in api.services.accounts.audit() if a.editor == "token:site"]
    assert audit.count("api subscribe") == 1 and audit.count("edition send") == 1
    spaced = {"Idempotency-Key": "a b"}
    malformed = api.call("POST", f"/editions/{edition.id}/pause", site, headers=spaced)
    problem_of(malformed, 422)
    assert malformed.body["errors"][0]["where"] == "header.Idempotency-Key"


@pytest.mark.parametrize("api_settings", [{"api_rate": 3}])
def test_each_token_has_its_own_rate(api: Api) -> None:
    first, second = api.token("editions:read", name="a"), api.token("editions:read", name="b")
    assert [api.call("GET", "/token", first).status for _ in range(3)] == [200, 200, 200]
    spent = api.call("GET", "/token", first)
    problem_of(spent, 429)
    assert int(spent.headers["retry-after"]) >= 1
    assert api.call("GET", "/token", second).status == 200  # another token: its own bucket


def test_editions_are_read_and_moved_through_the_lifecycle_with_its_reasons(api: Api) -> None:
    ops = api.token("editions:read", "editions:send", name="ops")
    services = api.services
    edition = services.editions.build(services.schedule("daily"), date(2026, 11, 25))
    listed = api.call("GET", "/editions?status=draft&since=2026-11-25&until=2026-11-25", ops)
    assert [e["id"] for e in listed.body["editions"]] == [edition.id]
    assert api.call("GET", "/editions?status=sent", ops).body["editions"] == []
    assert api.call("POST", f"/editions/{edition.id}/approve", ops).body["status"] == "approved"
    sending = api.call("POST", f"/editions/{edition.id}/send", ops).body
    assert sending["status"] == "sending" and sending["counts"]["queued"] == 3
    assert api.call("POST", f"/editions/{edition.id}/pause", ops).body["paused"] is True
    assert api.call("POST", f"/editions/{edition.id}/resume", ops).body["paused"] is False
    assert "too late" in problem_of(api.call("POST", f"/editions/{edition.id}/approve", ops), 409)
    one = api.call("GET", f"/editions/{edition.id}", ops).body
    assert one["pending"] == 3 and "eta_seconds" in one
    cancelled = api.call("POST", f"/editions/{edition.id}/cancel", ops).body
    assert cancelled["status"] == "cancelled" and cancelled["counts"]["suppressed"] == 3
    assert "cancelled" in problem_of(api.call("POST", f"/editions/{edition.id}/resume", ops), 409)
    problem_of(api.call("GET", "/editions/999999", ops), 404)
    audit = [a.action for a in services.accounts.audit() if a.editor == "token:ops"]
    assert {
        "edition approve",
        "edition send",
        "edition pause",
        "edition resume",
        "edition cancel",
    } <= set(audit)


def test_a_preview_for_a_named_reader_needs_the_right_to_their_links(api: Api) -> None:
    services = api.services
    edition = services.editions.build(services.schedule("daily"), date(2026, 11, 25))
    reader_only = api.token("editions:read")
    sample = api.call("GET", f"/editions/{edition.id}/preview", reader_only)
    assert sample.status == 200 and sample.body["html"].startswith("<!") and sample.body["text"]
    assert any(h["name"] == "List-Unsubscribe" for h in sample.body["headers"])
    problem_of(api.call("GET", f"/editions/{edition.id}/preview?email={READER}", reader_only), 403)
    both = api.token("editions:read", "subscribers:write")
    theirs = api.call("GET", f"/editions/{edition.id}/preview?email={READER}", both)
    assert theirs.status == 200 and theirs.body["recipient"] == READER
    problem_of(api.call("GET", f"/editions/{edition.id}/preview?email=nobody@x.ru", both), 409)


def test_a_cross_site_post_with_the_desks_cookie_but_no_token_changes_nothing(api: Api) -> None:
    desk = Client(api.base.removesuffix("/api/v1"))
    api.services.accounts.add("anna", "правильный-пароль", "admin", "test")
    assert desk.login("anna", "правильный-пароль") == 303
    cookie = "; ".join(f"{c.name}={c.value}" for c in desk.jar)
    assert "digest_desk=" in cookie
    kinds = ("application/json", "text/plain", "application/x-www-form-urlencoded")
    for kind in kinds:
        headers = {"Content-Type": kind, "Origin": "https://evil.example", "Cookie": cookie}
        answer = api.call("POST", f"/subscribers/{READER}/unsubscribe", headers=headers, raw=b"{}")
        problem_of(answer, 401)
    assert api.services.remote_readers.get(READER)["status"] == "active"


BAD = [
    ("GET", "/subscribers/a%00b@mail.example.ru", None, None),
    ("GET", "/subscribers/%F0%9F%98%80", None, None),
    ("POST", "/subscribers", None, b'{"email": "\\ud800@mail.example.ru"}'),
    ("POST", "/subscribers", None, b'{"email": "x\\u0000y@mail.example.ru"}'),
    ("POST", "/subscribers", None, b"[" * 30_000 + b"]" * 30_000),
    ("POST", "/subscribers", None, b'{"a":' * 6_000 + b"1" + b"}" * 6_000),
    ("POST", "/subscribers", None, b"not json"),
    ("POST", "/subscribers", None, b'{"email": "' + b"a" * 70_000 + b'"}'),
    ("POST", "/subscribers", {"email": "x@y.ru", "sections": ["../../etc"]}, None),
    (
        "POST",
        "/subscribers",
        {"email": "x@y.ru", "confirmed": True, "consent": {**CONSENT, "ip": "999.1.1.1"}},
        None,
    ),
    (
        "POST",
        "/subscribers",
        {"email": "x@y.ru", "confirmed": True, "consent": {**CONSENT, "at": "2026-11-25T10:00:00"}},
        None,
    ),
    ("POST", "/subscribers", {"email": "x@y.ru", "list": "nope"}, None),
    (
        "POST",
        "/subscribers",
        {"email": "x@y.ru", "timezone": "Mars/Olympus", "confirmed": True, "consent": CONSENT},
        None,
    ),
    ("PATCH", f"/subscribers/{READER}", {"timezone": "Mars/Olympus"}, None),
    ("PATCH", f"/subscribers/{READER}", {"frequency": "hourly"}, None),
    ("PATCH", f"/subscribers/{READER}", {"sections": ["луна"]}, None),
    ("GET", "/editions?limit=100000", None, None),
    ("GET", "/editions/99999999999999999999", None, None),
    ("GET", "/editions?since=yesterday", None, None),
]


@pytest.mark.parametrize(("method", "path", "body", "raw"), BAD)
def test_bad_input_is_a_problem_that_names_it_never_a_500(
    api: Api, method: str, path: str, body: object, raw: bytes | None
) -> None:
    answer = api.call(method, path, api.token(*ALL, name="t"), body, raw=raw)
    assert 400 <= answer.status < 500, (answer.status, answer.body)
    assert answer.kind.startswith("application/problem+json") and "Traceback" not in str(
        answer.body
    )
