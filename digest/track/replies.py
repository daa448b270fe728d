"""What an SMTP reply means, judged once: for the recipient and for its domain.

The model is Postfix's scheduler ("concurrency feedback", SCHEDULER_README):
a reply about **one recipient** (a 4xx or 5xx to RCPT, or to DATA of our
one-recipient messages while the session goes on) decides that delivery and
says nothing about the destination; **connection-level** trouble (421 at any
stage, a line dropped or timed out mid-session) and explicit provider rate
limits are negative feedback for the destination domain (``send.DomainGate``).

``RULES`` is the one table: the README's delivery rules table is checked
against it (tests/test_docs.py), and tests/unit/test_replies.py runs
every provider example through ``kind_of``. The first rule that matches wins.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from digest.errors import DeliveryError, Kind, PermanentFailure, Refused, TemporaryFailure

ENHANCED_CODE = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")

# Explicit "you send too fast" (MAIL-RULES 23); never the address's fault.
RATE_TEXT = re.compile(
    r"too many (connections|messages|mails|recipients|sessions)|rate.?limit|throttl"
    r"|unusual rate|sending rate|receiving mail at a rate|slow down|server busy"
    r"|(rate|frequency|connection|message|sending) (limit )?exceeded",
    re.I,
)
# Gmail's per-user limit names the recipient: "The user you are trying to contact…"
ONE_USER_TEXT = re.compile(r"\buser\b|\brecipient\b|\bmailbox\b", re.I)
GREYLIST_TEXT = re.compile(
    r"gr[ae]y.?list|try again later|come back later|please retry|temporarily (deferred|rejected)",
    re.I,
)
# MAIL-RULES 24: the mailbox does not exist or is disabled: suppress at once.
HARD_TEXT = re.compile(
    r"user unknown|unknown user|no such (user|mailbox|recipient|account)"
    r"|does(n'?t| not) (have an account|exist)"
    r"|mailbox (not found|unavailable|does not exist|is disabled)"
    r"|account (is )?(disabled|deactivated)|invalid (recipient|mailbox)|recipient not found"
    r"|address rejected: user",
    re.I,
)
FULL_TEXT = re.compile(r"mailbox (is )?full|over ?quota|quota exceeded|insufficient storage", re.I)
POLICY_TEXT = re.compile(
    r"spam|policy|blocked|block ?list|blacklist|reputation|dmarc|\bspf\b|\bdkim\b|abuse", re.I
)


def enhanced_code(reply: str) -> str | None:
    """The RFC 3463 code in a reply (``5.1.1``), or None."""
    match = ENHANCED_CODE.search(reply or "")
    return match.group(0) if match else None


def _microsoft_throttle(enhanced: str) -> bool:
    # Outlook.com: 451 4.7.500-699 "Server busy" / "Access denied, please try again later".
    parts = enhanced.split(".")
    return enhanced.startswith("4.7.") and len(parts) == 3 and 500 <= int(parts[2]) <= 699


@dataclass(frozen=True)
class Reply:
    code: int
    enhanced: str
    text: str


@dataclass(frozen=True)
class Rule:
    """One line of the delivery rules table."""

    name: str
    kind: Kind
    recipient: str  # what happens to the delivery
    domain: str  # what happens to the destination domain
    examples: tuple[str, ...]  # providers' own replies, "code text"
    matches: Callable[[Reply], bool]


KEEP = "unchanged"
SLOWER = "negative feedback: −1/concurrency; paused after a failed cohort"

RULES: tuple[Rule, ...] = (
    Rule(
        "one recipient receives too fast",
        Kind.TEMPORARY,
        "deferred, retried on the schedule",
        KEEP,
        (
            "450 4.2.1 The user you are trying to contact is receiving mail at a rate "
            "that prevents additional messages from being delivered.",
        ),
        lambda r: r.code != 421 and r.enhanced == "4.2.1" and bool(ONE_USER_TEXT.search(r.text)),
    ),
    Rule(
        "provider rate limit",
        Kind.RATE_LIMIT,
        "deferred, not counted against the address",
        SLOWER,
        (
            "421 4.7.0 [TSS04] Messages temporarily deferred due to unexpected volume",
            "421 4.7.28 Our system has detected an unusual rate of unsolicited mail",
            "450 4.2.1 Peak receiving rate exceeded, slow down",
            "451 4.7.500 Server busy. Please try again later from [192.0.2.1]",
            "451 4.7.650 The mail server has been temporarily rate limited due to IP reputation",
            "421 4.7.0 Too many connections from your IP, try later",  # mail.ru
            "451 4.7.1 Too many messages from your IP, try later",  # yandex
        ),
        lambda r: (
            (r.code == 421 and r.enhanced in ("4.7.0", "4.7.28"))
            or r.enhanced == "4.2.1"
            or _microsoft_throttle(r.enhanced)
            or bool(RATE_TEXT.search(r.text))
        ),
    ),
    Rule(
        "mailbox full, for now",
        Kind.SOFT_BOUNCE,
        "deferred; a soft bounce, counted once a day",
        KEEP,
        ("452 4.2.2 The email account that you tried to reach is over quota",),
        lambda r: (
            r.code < 500
            and r.code != 421
            and (r.enhanced == "4.2.2" or bool(FULL_TEXT.search(r.text)))
        ),
    ),
    Rule(
        "greylisting",
        Kind.GREYLIST,
        "deferred, retried no sooner than DIGEST_GREYLIST_DELAY",
        KEEP,
        (
            "451 4.7.1 Please try again later",
            "450 4.2.0 <reader@example.ru>: Recipient address rejected: Greylisted, "
            "see http://postgrey.schweikert.ch/help/example.ru.html",
            "451 4.7.1 Service unavailable - try again later",
        ),
        lambda r: (
            r.code != 421
            and (r.enhanced in ("4.2.0", "4.7.1") or bool(GREYLIST_TEXT.search(r.text)))
        ),
    ),
    Rule(
        "the server closes the session",
        Kind.RELAY,
        "deferred, retried on the schedule",
        SLOWER,
        ("421 4.3.2 Service not available, closing transmission channel",),
        lambda r: r.code == 421,
    ),
    Rule(
        "any other temporary failure",
        Kind.TEMPORARY,
        "deferred, retried on the schedule",
        KEEP,
        ("451 4.3.0 Mailbox temporarily unavailable", "452 4.3.1 Insufficient system storage"),
        lambda r: r.code < 500,
    ),
    Rule(
        "no such mailbox, said under a policy code",
        Kind.HARD_BOUNCE,
        "bounced; the address is suppressed at once, the words stored",
        KEEP,
        (
            "550 5.7.1 No such user!",  # yandex, for a mailbox that does not exist
            "550 5.7.1 <x@example.ru>: User unknown",
            "550 5.7.1 Requested action not taken: mailbox unavailable",
        ),
        # Issue 25: Yandex answers 5.7.1 for a dead mailbox; taken for policy, its
        # dead addresses were mailed every day and paused the whole domain. Only
        # when the text says so, and says nothing of spam or reputation.
        lambda r: (
            r.enhanced.startswith("5.7.")
            and bool(HARD_TEXT.search(r.text))
            and not POLICY_TEXT.search(r.text)
        ),
    ),
    Rule(
        "policy: spam, reputation, authentication",
        Kind.POLICY,
        "failed; never a bounce, the address stays",
        SLOWER,
        (
            "550 5.7.1 Message rejected as spam",
            "550 5.7.26 Unauthenticated email from example.ru is not accepted due to "
            "domain's DMARC policy",
            "554 5.7.1 [2] Message rejected under suspicion of SPAM",  # yandex
        ),
        lambda r: r.enhanced.startswith("5.7."),
    ),
    Rule(
        "no such mailbox",
        Kind.HARD_BOUNCE,
        "bounced; the address is suppressed at once",
        KEEP,
        (
            "550 5.1.1 The email account that you tried to reach does not exist",
            # gmail's three lines, as the client joins them
            "550 5.1.1 The email account that you tried to reach does not exist. Please try "
            "5.1.1 double-checking the recipient's email address for typos or "
            "5.1.1 unnecessary spaces.",
            "550 Message was not accepted -- invalid mailbox",  # mail.ru, no enhanced code
            "550 5.5.0 Requested action not taken: mailbox unavailable",  # outlook.com
            "553 5.1.3 Invalid address",
            "550 5.2.1 The email account that you tried to reach is disabled",
        ),
        lambda r: (
            r.enhanced.startswith("5.1.")
            or r.enhanced == "5.2.1"
            or (not r.enhanced.startswith("5.2.") and bool(HARD_TEXT.search(r.text)))
        ),
    ),
    Rule(
        "mailbox full, for good",
        Kind.SOFT_BOUNCE,
        "failed; a soft bounce, counted once a day",
        KEEP,
        ("552 5.2.2 Mailbox full, over quota",),
        lambda r: r.enhanced == "5.2.2" or bool(FULL_TEXT.search(r.text)),
    ),
    Rule(
        "policy without an enhanced code",
        Kind.POLICY,
        "failed; never a bounce, the address stays",
        SLOWER,
        ("554 Message rejected: blocked by policy",),
        lambda r: bool(POLICY_TEXT.search(r.text)),
    ),
    Rule(
        "any other permanent failure",
        Kind.PERMANENT,
        "failed, not retried",
        KEEP,
        ("552 5.3.4 Message size exceeds fixed limit",),
        lambda r: True,
    ),
)

# Connection-level trouble that has no reply of its own.
NO_REPLY = Rule(
    "no reply: refused, reset, timed out, TLS failed",
    Kind.CONNECTION,
    "deferred, retried on the schedule",
    "the relay rests after failures; mid-session also " + SLOWER,
    (),
    lambda r: False,
)

# The domain's concurrency: what each kind of outcome tells about the destination.
NEGATIVE_FEEDBACK = frozenset({Kind.CONNECTION, Kind.RELAY, Kind.RATE_LIMIT, Kind.POLICY})


def rule_for(code: int | None, reply: str) -> Rule | None:
    """The table's line for a reply; None when the reply accepted the message."""
    if code is None:
        return NO_REPLY
    if 200 <= code < 400:
        return None
    found = Reply(code, enhanced_code(reply) or "", reply or "")
    return next(rule for rule in RULES if rule.matches(found))


def kind_of(code: int | None, reply: str) -> Kind | None:
    """Judge a reply by code, enhanced code (RFC 3463) and text together: providers
    reuse ``550 5.7.1`` for both "no such user" and "spam". None means accepted."""
    rule = rule_for(code, reply)
    return rule.kind if rule is not None else None


def classify(code: int | None, reply: str, recipient: str | None = None) -> DeliveryError | None:
    """An SMTP reply in the server's own words → None (accepted), TemporaryFailure
    (4xx, or no reply at all: the connection failed) or PermanentFailure (5xx),
    with its ``kind``. The only place a reply is judged; aiosmtplib does not."""
    kind = kind_of(code, reply)
    if kind is None:
        return None
    return (TemporaryFailure if code is None or code < 500 else PermanentFailure)(
        reply, code=code, enhanced_code=enhanced_code(reply), recipient=recipient, kind=kind
    )


def judge(error: Refused | DeliveryError) -> DeliveryError:
    """What a failed send means: a relay's refusal judged by the table above; a
    line lost or a relay out of reach is a ``DeliveryError`` already."""
    if isinstance(error, Refused):
        judged = classify(error.code, error.text, error.recipient)
        return judged or TemporaryFailure(error.text, code=error.code)
    return error
