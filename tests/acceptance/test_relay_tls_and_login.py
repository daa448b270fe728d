"""TLS and login to the relay, for real: aiosmtpd with STARTTLS, implicit TLS and
AUTH, a certificate made for the test, and the `digest` command as the client."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from digest.capture import CaptureServer
from tests.support.cli import DAY, base_env, digest, load_demo

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throwaway CA-signed certificate for 127.0.0.1: (certificate, key)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "relay.pem", folder / "relay.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*map(str, certificate))
    return context


class Logins:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        login = (auth_data.login.decode(), auth_data.password.decode())
        self.seen.append(login)
        # handled=False: aiosmtpd answers 535 itself (True means "already answered").
        return AuthResult(success=login == ("digest", "s3cret"), handled=False)


@pytest.fixture
def starttls_relay(certificate: tuple[Path, Path]) -> Iterator[tuple[CaptureServer, Logins]]:
    logins = Logins()
    with CaptureServer(
        tls_context=server_context(certificate),
        require_starttls=True,
        authenticator=logins,
        auth_require_tls=True,
        auth_required=True,
    ) as relay:
        yield relay, logins


def send_via(workdir: Path, url: str, ca: Path | None = None) -> subprocess.CompletedProcess[str]:
    extra = {"DIGEST_SMTP_URL": url} | ({"DIGEST_SMTP_CA_FILE": str(ca)} if ca else {})
    return digest(workdir, "send", "--date", DAY, "--yes", env=base_env(workdir, **extra))


@pytest.fixture
def loaded(tmp_path: Path) -> Path:
    # What `digest demo --no-send` leaves, built in this process (issue 26).
    load_demo(tmp_path, base_env(tmp_path), 5, date.fromisoformat(DAY), draft=False)
    return tmp_path


def test_starttls_and_login(
    loaded: Path, starttls_relay: tuple[CaptureServer, Logins], certificate: tuple[Path, Path]
) -> None:
    relay, logins = starttls_relay
    url = f"smtp://digest:s3cret@127.0.0.1:{relay.port}?starttls=true"
    result = send_via(loaded, url, certificate[0])
    assert result.returncode == 0, result.stderr
    assert len(relay.messages) == 5 and ("digest", "s3cret") in logins.seen
    assert "s3cret" not in result.stdout + result.stderr  # the password never prints
    assert "smtp://digest:***@127.0.0.1" in result.stderr


def test_a_wrong_password_stops_before_sending(
    loaded: Path, starttls_relay: tuple[CaptureServer, Logins], certificate: tuple[Path, Path]
) -> None:
    relay, _ = starttls_relay
    url = f"smtp://digest:wrong@127.0.0.1:{relay.port}?starttls=true"
    result = send_via(loaded, url, certificate[0])
    assert result.returncode == 1 and "login refused: 535" in result.stderr
    assert not relay.messages and "wrong" not in result.stderr


def test_an_untrusted_certificate_is_refused(
    loaded: Path, starttls_relay: tuple[CaptureServer, Logins]
) -> None:
    relay, _ = starttls_relay
    url = f"smtp://digest:s3cret@127.0.0.1:{relay.port}?starttls=true"
    result = send_via(loaded, url)
    assert result.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in result.stderr
    assert not relay.messages


def test_implicit_tls(loaded: Path, certificate: tuple[Path, Path]) -> None:
    with CaptureServer(ssl_context=server_context(certificate)) as relay:
        assert relay.url.startswith("smtps://")
        result = send_via(loaded, relay.url, certificate[0])
        assert result.returncode == 0, result.stderr
        assert len(relay.messages) == 5


def test_doctor_checks_starttls_and_login_without_printing_the_password(
    loaded: Path, starttls_relay: tuple[CaptureServer, Logins], certificate: tuple[Path, Path]
) -> None:
    relay, logins = starttls_relay
    for password, code in (("s3cret", 0), ("wrong", 1)):
        env = base_env(
            loaded,
            DIGEST_SMTP_URL=f"smtp://digest:{password}@127.0.0.1:{relay.port}?starttls=true",
            DIGEST_SMTP_CA_FILE=str(certificate[0]),
        )
        result = digest(loaded, "doctor", env=env)
        assert result.returncode == code, result.stdout
        smtp = next(line for line in result.stdout.splitlines() if " smtp " in f" {line}")
        if code == 0:
            assert smtp.startswith("ok") and "TLS ok" in smtp and "AUTH ok" in smtp
        else:
            assert smtp.startswith("FAIL") and "login refused: 535" in smtp
        assert password not in result.stdout + result.stderr
    # (aiosmtplib tries each offered mechanism before it gives up on a password.)
    assert logins.seen[0] == ("digest", "s3cret") and set(logins.seen[1:]) == {("digest", "wrong")}
    assert not relay.messages
