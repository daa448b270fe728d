"""The import's fast path for plain addresses (issue 31 §2) agrees with
email-validator on every input: what one accepts the other accepts, spelled the
same; what one refuses the other refuses. Token keys drawn at once look like
keys drawn one at a time."""

from __future__ import annotations

import re

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import example, given, settings
from hypothesis import strategies as st

from digest.audience.rows import BadSubscriber, normalise_email
from digest.tokens import new_token_key, new_token_keys

ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~-"
LABEL = st.text(alphabet="abcxyz019-", min_size=1, max_size=20)
PLAIN = st.builds(
    lambda local, labels: f"{local}@{'.'.join(labels)}",
    st.text(alphabet=ATEXT + ".", min_size=1, max_size=70),
    st.lists(LABEL, min_size=1, max_size=4),
)
ANYTHING = st.text(alphabet=ATEXT + '.@ \t"()[]\\,;:<>é\u0430\x00', max_size=80)


def _validator(text: str) -> str | None:
    """What the validator alone says, as ``normalise_email`` would store it."""
    try:
        normalized = str(validate_email(text, check_deliverability=False).normalized).lower()
    except EmailNotValidError:
        return None
    return normalized if len(normalized.rpartition("@")[0].encode()) <= 64 else None


def _ours(text: str) -> str | None:
    try:
        return normalise_email(text)
    except BadSubscriber:
        return None


@settings(max_examples=600, deadline=None)
@given(st.one_of(PLAIN, ANYTHING))
@example("reader@example.ru")
@example("Reader.Name+tag@Mail.Example.RU")
@example("a..b@example.ru")
@example(".a@example.ru")
@example("a@localhost")
@example("a@example.test")
@example("a@-example.ru")
@example("a@example.123")
@example("a@xn--80a1acny.xn--p1ai")
@example(f"{'a' * 64}@{'b' * 63}.{'c' * 63}.{'d' * 63}.{'e' * 50}.ru")
def test_the_fast_path_says_what_the_validator_says(text: str) -> None:
    assert _ours(text.strip()) == _validator(text.strip())


def test_keys_drawn_at_once_are_keys() -> None:
    keys = new_token_keys(1000)
    shape = re.compile(r"[a-z2-7]{16}")
    assert len(set(keys)) == 1000
    assert all(shape.fullmatch(k) for k in keys)
    assert shape.fullmatch(new_token_key())
    assert new_token_keys(0) == []


@pytest.mark.parametrize("text", ["", "   "])
def test_an_empty_address_is_named(text: str) -> None:
    with pytest.raises(BadSubscriber, match="email: is empty"):
        normalise_email(text)
