from __future__ import annotations

import pytest
from itsdangerous import Signer

from digest.tokens import BadToken, LinkSigner, TruncatedHMAC, new_token_key


def test_tokens_round_trip_and_reveal_only_the_random_key() -> None:
    signer = LinkSigner(b"s" * 32, "daily")
    key = new_token_key()
    token = signer.unsubscribe.sign(key)
    assert signer.unsubscribe.verify(token) == key
    assert token.startswith(key + ".") and len(token) == len(key) + 1 + 22
    assert len("unsubscribe+" + token) <= 64  # RFC 5321 local part


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),
        lambda t: "x" + t[1:],
        lambda t: t.split(".")[0],
        lambda t: "",
        lambda t: t + "ы",
    ],
)
def test_tampered_tokens_are_refused(mangle) -> None:  # type: ignore[no-untyped-def]
    signer = LinkSigner(b"s" * 32, "daily")
    with pytest.raises(BadToken):
        signer.unsubscribe.verify(mangle(signer.unsubscribe.sign("abcdefghijklmnop")))


def test_tokens_are_bound_to_purpose_list_and_key() -> None:
    daily = LinkSigner(b"s" * 32, "daily")
    token = daily.unsubscribe.sign("abcdefghijklmnop")
    with pytest.raises(BadToken):
        daily.preferences.verify(token)
    with pytest.raises(BadToken):
        LinkSigner(b"s" * 32, "weekly").unsubscribe.verify(token)
    with pytest.raises(BadToken):
        LinkSigner(b"t" * 32, "daily").unsubscribe.verify(token)


def test_keys_are_random_and_url_safe() -> None:
    keys = {new_token_key() for _ in range(1000)}
    assert len(keys) == 1000
    assert all(k.isalnum() and k.islower() and len(k) == 16 for k in keys)


def test_fast_signing_makes_exactly_itsdangerous_tokens() -> None:
    signer = LinkSigner(b"s" * 32, "daily")

    def slow(salt: str, key: str) -> str:
        return Signer(b"s" * 32, salt=salt, algorithm=TruncatedHMAC()).sign(key).decode()

    for key in (new_token_key() for _ in range(50)):
        assert signer.unsubscribe.sign(key) == slow("unsubscribe:daily", key)
        assert signer.preferences.sign(key) == slow("preferences:daily", key)
