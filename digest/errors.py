"""One error hierarchy for the whole engine.

Each class's docstring is its default message, so ``raise EmptyEdition()``
already says something useful; callers add the specifics.
"""

from __future__ import annotations

import enum


class DigestError(Exception):
    """Something went wrong in digest."""

    def __init__(self, message: str | None = None, *, ru: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())
        # The same in the desk's words (issue 28 §4: English reached its pages); the
        # CLI and the logs keep the English.
        self.ru = ru

    @property
    def message(self) -> str:
        return str(self)


class ConfigError(DigestError):
    """A setting is missing or has a wrong value."""


class ScheduleError(ConfigError):
    """A schedule file is missing or invalid."""


class SourceError(DigestError):
    """A site database source could not be read (issue 29): its file, its
    connection, a query or a column; the message names the source and the query."""


class EditionError(DigestError):
    """The edition cannot be built or sent."""


class EmptyEdition(EditionError):
    """The window holds no articles: no edition is made and nothing is sent."""


class OldEdition(EditionError):
    """The edition is older than its schedule's period: it is sent only when asked."""

    def __init__(self, message: str, readers: int, *, ru: str | None = None) -> None:
        super().__init__(message, ru=ru)
        self.readers = readers  # how many it would reach now


class RenderError(DigestError):
    """A template failed to render."""


class ComposeError(DigestError):
    """A message could not be composed for this subscriber."""


class DatabaseAway(DigestError):
    """The database was unreachable for longer than DIGEST_DB_OUTAGE_LIMIT."""

    # EX_TEMPFAIL (sysexits.h): try again later; the outcomes kept in the journal
    # are written by the next run before it claims anything.
    exit_code = 75


class RelayUnavailable(DigestError):
    """The SMTP relay cannot be reached; nothing was sent and every claim was released."""


class Refused(DigestError):
    """A relay's refusal in its own words: the 4xx or 5xx reply to MAIL, RCPT,
    DATA or the end of data, not yet judged. ``send.smtp`` raises it as
    aiosmtplib's ``SMTPResponseException`` does; the send judges it
    (``track.replies.judge``) into a ``TemporaryFailure`` or ``PermanentFailure``."""

    def __init__(self, code: int, text: str, recipient: str | None = None) -> None:
        self.code = code
        self.text = text
        self.recipient = recipient
        super().__init__(f"{code} {text}")


class Kind(enum.StrEnum):
    """What an SMTP reply means for the message, the address and the relay."""

    TEMPORARY = "temporary"  # 4xx about this recipient: try again later
    GREYLIST = "greylist"  # 4xx greylisting: this recipient, no sooner than the server's minimum
    UNREACHABLE = "unreachable"  # cannot connect, greet, start TLS: the relay's trouble
    CONNECTION = "connection"  # the line dropped or timed out in the middle of a session
    RELAY = "relay"  # 421 not about the recipient: the relay is closing or overloaded
    RATE_LIMIT = "rate_limit"  # the destination wants us slower (MAIL-RULES 23)
    SOFT_BOUNCE = "soft_bounce"  # mailbox full: counted, suppress after N on M days
    HARD_BOUNCE = "hard_bounce"  # no such mailbox: suppress at once
    POLICY = "policy"  # 5.7.x spam/auth/policy: our problem, never the address's
    PERMANENT = "permanent"  # any other 5xx (message too big, …)


class DeliveryError(DigestError):
    """The relay refused a message.

    Carries the reply in the server's own words: ``code`` (e.g. 550),
    ``enhanced_code`` (e.g. "5.1.1", RFC 3463) and ``reply``.
    """

    def __init__(
        self,
        reply: str = "",
        *,
        code: int | None = None,
        enhanced_code: str | None = None,
        recipient: str | None = None,
        kind: Kind | None = None,
        ambiguous: bool = False,
    ) -> None:
        self.code = code
        # The line dropped after the end of data: it may have been delivered.
        self.ambiguous = ambiguous
        self.enhanced_code = enhanced_code
        self.recipient = recipient
        self.reply = reply
        # What the failure means (track.replies.classify judges replies); None: not judged.
        self.kind = kind
        text = " ".join(str(p) for p in (code, reply) if p not in (None, ""))
        super().__init__(text or None)


class TemporaryFailure(DeliveryError):
    """The relay deferred the message (4xx or a connection fault); it may be retried."""


class PermanentFailure(DeliveryError):
    """The relay rejected the message for good (5xx); it is never retried."""
