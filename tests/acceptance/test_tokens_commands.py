"""`digest tokens` as a process, against `digest serve` as a process (issue 30): a
token printed once and working at once, listed with its scopes, revoked and
refused at its next call; a bad scope or name said plainly, without a traceback."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from digest.capture import free_port
from tests.support.cli import base_env, digest, migrated, start, wait_until


def whoami(base: str, token: str) -> int:
    request = urllib.request.Request(
        f"{base}/api/v1/token", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert json.loads(answer.read())["name"] == "site"
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0  # not up yet


def test_a_token_is_made_used_listed_and_revoked_against_a_running_server(workdir: Path) -> None:
    migrated(workdir)
    made = digest(workdir, "tokens", "create", "site", "--scope", "subscribers:read",
                  "--scope", "subscribers:write")  # fmt: skip
    assert made.returncode == 0, made.stderr
    lines = made.stdout.splitlines()
    assert lines[0] == "site: subscribers:read subscribers:write"
    token = lines[1]
    assert token.startswith("dgt_") and len(token) == 47
    port = free_port()
    server = start(workdir, base_env(workdir), "serve", "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: whoami(base, token) != 0, 30)
        assert whoami(base, token) == 200
        listed = digest(workdir, "tokens", "list").stdout
        assert listed.split()[:3] == ["site", "subscribers:read", "subscribers:write"]
        assert "used " in listed and token not in listed
        assert digest(workdir, "tokens", "revoke", "site").returncode == 0
        assert whoami(base, token) == 401  # the running server's very next call
        assert "revoked" in digest(workdir, "tokens", "list").stdout
    finally:
        server.terminate()
        server.communicate(timeout=30)  # its pipes closed too


def test_a_bad_scope_or_name_is_said_plainly(workdir: Path) -> None:
    migrated(workdir)
    scope = digest(workdir, "tokens", "create", "x", "--scope", "subscribers:everything")
    assert scope.returncode == 1 and "choose from subscribers:read" in scope.stderr
    name = digest(workdir, "tokens", "create", "../x", "--scope", "editions:read")
    assert name.returncode == 1 and "token name" in name.stderr
    assert digest(workdir, "tokens", "create", "x", "--scope", "editions:read").returncode == 0
    again = digest(workdir, "tokens", "create", "x", "--scope", "editions:read")
    assert again.returncode == 1 and "exists" in again.stderr
    gone = digest(workdir, "tokens", "revoke", "nobody")
    assert gone.returncode == 1 and "no token named nobody" in gone.stderr
    for answer in (scope, name, again, gone):
        assert "Traceback" not in answer.stderr
