"""DKIM: a key made by `digest dkim keygen`, messages signed in the send loop
during a real send, every signature verified by dkimpy against the printed
public key (the DNS answer is the TXT record keygen printed)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import dkim
import pytest

from digest import demo
from digest.capture import CaptureServer
from digest.dkim import SIGNED_HEADERS, DkimKey, keygen
from digest.wiring import Services
from tests.support.common import FIXED_NOW
from tests.support.demo_data import load_demo_articles
from tests.support.faults import FaultHandler
from tests.support.smtp import send_through


def dns_for(selector: str, domain: str, record: str) -> Callable[..., bytes]:
    def answer(name: bytes, timeout: int = 5) -> bytes:
        assert name == f"{selector}._domainkey.{domain}.".encode()
        return record.encode()

    return answer


@pytest.fixture
def key_and_record(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "dkim.pem"
    record = keygen(path, "digest2026", "vpk.example.ru")
    return path, record


def test_keygen_writes_a_private_key_and_prints_the_record(
    key_and_record: tuple[Path, str],
) -> None:
    path, record = key_and_record
    assert path.stat().st_mode & 0o777 == 0o600
    assert record.startswith("v=DKIM1; k=rsa; p=MIIBIjAN")  # 2048-bit SubjectPublicKeyInfo
    with pytest.raises(FileExistsError):
        keygen(path, "digest2026", "vpk.example.ru")  # never overwrites a key


def test_rsa_and_ed25519_sign_every_message_of_a_send_and_both_verify(
    services: Services, tmp_path: Path, fixed_date: date
) -> None:
    """RFC 8463 dual signatures: each verifies with dkimpy against its own record."""
    records = {
        "digest2026": keygen(tmp_path / "rsa.pem", "digest2026", "vpk.example.ru"),
        "ed2026": keygen(tmp_path / "ed.pem", "ed2026", "vpk.example.ru", kind="ed25519"),
    }
    cfg = services.settings.model_copy(
        update={
            "dkim_key_file": tmp_path / "rsa.pem",
            "dkim_selector": "digest2026",
            "dkim_ed25519_key_file": tmp_path / "ed.pem",
            "dkim_ed25519_selector": "ed2026",
        }
    )
    services = Services(cfg, services.factory, services.clock)
    schedule = services.schedule("daily")
    load_demo_articles(services.factory, schedule, fixed_date)
    demo.add_subscribers(services.factory, 6, now=FIXED_NOW)
    edition = services.editions.build(schedule, fixed_date)
    handler = FaultHandler()
    with CaptureServer(handler) as server:
        assert send_through(services, edition, server.url, "dkim").sent == 6

    def answer(name: bytes, timeout: int = 5) -> bytes:
        selector = name.decode().split("._domainkey.")[0]
        return records[selector].encode()

    for captured in handler.messages:
        assert captured.data.count(b"DKIM-Signature: ") == 2
        algorithms = {b"a=ed25519-sha256", b"a=rsa-sha256"}
        assert all(a in captured.data.split(b"\r\n\r\n", 1)[0] for a in algorithms)
        for idx in (0, 1):
            assert dkim.DKIM(captured.data).verify(idx, dnsfunc=answer), idx
        tampered = captured.data.replace(b"Subject:", b"Subject: Re:", 1)
        assert not any(dkim.DKIM(tampered).verify(i, dnsfunc=answer) for i in (0, 1))


def test_every_message_of_a_send_carries_a_valid_signature(
    services: Services, key_and_record: tuple[Path, str], fixed_date: date
) -> None:
    path, record = key_and_record
    cfg = services.settings.model_copy(
        update={"dkim_key_file": path, "dkim_selector": "digest2026"}
    )
    services = Services(cfg, services.factory, services.clock)
    schedule = services.schedule("daily")
    load_demo_articles(services.factory, schedule, fixed_date)
    demo.add_subscribers(services.factory, 12, now=FIXED_NOW)
    edition = services.editions.build(schedule, fixed_date)
    handler = FaultHandler()
    with CaptureServer(handler) as server:
        result = send_through(services, edition, server.url, "dkim")
    assert result.sent == 12 and len(handler.messages) == 12
    answer = dns_for("digest2026", "vpk.example.ru", record)
    for captured in handler.messages:
        assert captured.data.startswith(b"DKIM-Signature: ")
        assert dkim.verify(captured.data, dnsfunc=answer)
        signature = captured.data.split(b"\r\n\r\n", 1)[0].split(b"Date:", 1)[0].lower()
        signed = signature.split(b"h=", 1)[1].split(b";", 1)[0].replace(b"\r\n", b"")
        assert set(signed.replace(b" ", b"").split(b":")) >= set(SIGNED_HEADERS)
    # A changed body or subject no longer verifies.
    tampered = handler.messages[0].data.replace(b"Subject: ", b"Subject: Re: ", 1)
    assert not dkim.verify(tampered, dnsfunc=answer)


def test_a_bad_key_file_is_a_clear_error(tmp_path: Path) -> None:
    from digest.errors import ConfigError

    bad = tmp_path / "not-a-key.pem"
    bad.write_text("hello")
    with pytest.raises(ConfigError, match="not a PEM private key"):
        DkimKey.load(bad, "s", "d.example")
    with pytest.raises(ConfigError, match="cannot read"):
        DkimKey.load(tmp_path / "missing.pem", "s", "d.example")
