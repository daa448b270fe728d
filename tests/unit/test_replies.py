"""MAIL-RULES 22–23 as a table: every reply judged once, by code, enhanced code and text."""

from __future__ import annotations

import pytest

from digest.errors import Kind, PermanentFailure, Refused, TemporaryFailure
from digest.track.replies import (
    NEGATIVE_FEEDBACK,
    RULES,
    Rule,
    classify,
    judge,
    kind_of,
    rule_for,
)


@pytest.mark.parametrize(
    ("code", "reply", "kind"),
    [
        (250, "2.0.0 Ok: queued", None),
        (None, "connection lost", Kind.CONNECTION),
        (451, "4.3.0 Mailbox temporarily unavailable", Kind.TEMPORARY),
        # MAIL-RULES 23: greylisting is about one recipient, whatever its words
        (450, "4.2.0 greylisted", Kind.GREYLIST),
        (451, "4.7.1 Please try again later", Kind.GREYLIST),
        (450, "Greylisted for 5 minutes", Kind.GREYLIST),
        (451, "Try again later", Kind.GREYLIST),
        # … provider rate limits slow the domain, by code or by text
        (421, "4.7.0 Try again later, closing connection", Kind.RATE_LIMIT),
        (421, "4.7.28 Our system has detected an unusual rate of mail", Kind.RATE_LIMIT),
        (450, "4.2.1 Too many messages from your IP", Kind.RATE_LIMIT),
        (452, "4.5.3 rate limit exceeded", Kind.RATE_LIMIT),
        (451, "4.7.650 rate limited due to IP reputation", Kind.RATE_LIMIT),
        # … but Gmail's per-user limit names the user: that recipient only
        (
            450,
            "4.2.1 The user you are trying to contact is receiving mail too fast",
            Kind.TEMPORARY,
        ),
        (452, "4.2.2 Mailbox quota exceeded", Kind.SOFT_BOUNCE),
        (421, "4.3.2 Service not available, closing transmission channel", Kind.RELAY),
        (421, "4.7.1 Please try again later, closing", Kind.RELAY),  # 421 closes the line
        # MAIL-RULES 24: hard bounces suppress at once
        (550, "5.1.1 <x@example.ru>: user unknown", Kind.HARD_BOUNCE),
        (553, "5.1.2 bad destination system address", Kind.HARD_BOUNCE),
        (553, "5.1.3 bad destination mailbox address syntax", Kind.HARD_BOUNCE),
        (550, "5.2.1 The email account that you tried to reach is disabled", Kind.HARD_BOUNCE),
        (
            550,
            "The email account that you tried to reach doesn't have an account",
            Kind.HARD_BOUNCE,
        ),
        # … soft ones are counted
        (452, "4.2.2 Mailbox full", Kind.SOFT_BOUNCE),
        (552, "5.2.2 Mailbox full, over quota", Kind.SOFT_BOUNCE),
        # … and 5.7.x is ours, never the address's
        (554, "5.7.1 Message rejected as spam", Kind.POLICY),
        (550, "5.7.1 Email rejected per DMARC policy", Kind.POLICY),
        # … unless its words say the mailbox does not exist (Yandex: issue 25)
        (550, "5.7.1 No such user!", Kind.HARD_BOUNCE),
        (550, "5.7.1 <x@example.ru>... User unknown", Kind.HARD_BOUNCE),
        (550, "5.7.1 User unknown or blocked as spam", Kind.POLICY),
        (550, "no such user here", Kind.HARD_BOUNCE),
        (550, "Message blocked by reputation", Kind.POLICY),
        (552, "5.3.4 Message size exceeds fixed limit", Kind.PERMANENT),
        (554, "Transaction failed", Kind.PERMANENT),
    ],
)
def test_replies_are_classified_by_code_enhanced_code_and_text(
    code: int | None, reply: str, kind: Kind | None
) -> None:
    assert kind_of(code, reply) is kind


@pytest.mark.parametrize(
    ("rule", "example"), [(rule, example) for rule in RULES for example in rule.examples]
)
def test_every_example_of_the_rules_table_lands_on_its_own_line(rule: Rule, example: str) -> None:
    """The table of digest.replies (and the README's copy of it): each provider's
    own reply is judged by the line it illustrates, not an earlier one."""
    code, _, text = example.partition(" ")
    assert rule_for(int(code), text) is rule


def test_a_reply_about_one_recipient_never_slows_its_domain() -> None:
    for rule in RULES:
        slows = rule.kind in NEGATIVE_FEEDBACK
        assert slows == (rule.domain != "unchanged"), rule.name
        if rule.kind in (Kind.GREYLIST, Kind.TEMPORARY, Kind.HARD_BOUNCE, Kind.SOFT_BOUNCE):
            assert not slows, rule.name


def test_classify_keeps_the_servers_words_and_the_house_errors() -> None:
    temp = classify(421, "4.7.0 Try again later")
    assert isinstance(temp, TemporaryFailure) and temp.kind is Kind.RATE_LIMIT
    assert (temp.code, temp.enhanced_code, temp.reply) == (421, "4.7.0", "4.7.0 Try again later")
    hard = classify(550, "5.1.1 user unknown", "x@example.ru")
    assert isinstance(hard, PermanentFailure) and hard.recipient == "x@example.ru"
    assert classify(250, "ok") is None


def test_a_refusal_as_the_relay_said_it_is_judged_by_the_same_table() -> None:
    """``send.smtp`` raises the refusal raw (issue 26 §2); the send judges it here,
    and a failure that is already judged (a line lost) passes unchanged."""
    refusal = Refused(550, "5.1.1 <a@example.ru>: no such user", "a@example.ru")
    judged = judge(refusal)
    assert isinstance(judged, PermanentFailure) and judged.kind is Kind.HARD_BOUNCE
    assert (judged.code, judged.recipient, judged.enhanced_code) == (550, "a@example.ru", "5.1.1")
    assert isinstance(judge(Refused(421, "4.7.0 Try again later")), TemporaryFailure)
    lost = TemporaryFailure("connection lost", kind=Kind.CONNECTION)
    assert judge(lost) is lost
