"""Reports: an edition's counts, rate and failures grouped by reason."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from digest.kinds import Clock, DeliveryStatus
from digest.store.reading import (
    EditionFacts,
    Summary,
    ambiguous_count,
    delivery_counts,
    edition_facts,
    edition_summary,
    edition_tally,
    engagement,
    failure_reasons,
    holds,
    next_retry,
    recent_facts,
    recent_rate,
    variant_count,
    waiting_in,
)
from digest.store.revised import Revision, revisions_since
from digest.track.replies import enhanced_code

if TYPE_CHECKING:
    from digest.db import Engine
    from digest.models import Edition
    from digest.store.reading import Reader


@dataclass
class EditionReport:
    id: int
    label: str
    status: str
    subject: str
    window_start: datetime
    window_end: datetime
    created_at: datetime
    sent_at: datetime | None
    variants: int
    counts: dict[str, int] = field(default_factory=dict)
    total: int = 0
    rate: float | None = None  # messages/s over the last minute of sending
    failures: list[dict[str, Any]] = field(default_factory=list)
    more_failures: int = 0  # further groups of reasons not listed
    more_failures_count: int = 0  # … and the messages in them
    paused: bool = False
    next_retry: datetime | None = None
    next_wave: datetime | None = None  # readers queued for a later hour (local_time)
    due_now: int | None = None  # queued and due, or claimed; None: not asked
    # Opens (approximate: clients prefetch or block images) and clicks, when tracked.
    engagement: dict[str, int] = field(default_factory=dict)
    pause_reason: str | None = None  # "correction", or None (ops paused it)
    # Articles changed or withdrawn since the variants were rendered: old → new.
    corrections: list[Revision] = field(default_factory=list)
    # Deliveries whose line dropped after the end of data (issue 25): may arrive twice.
    ambiguous: int = 0
    # Domains held back now (a failed cohort, a provider's rate limit), with this
    # edition's deliveries waiting for each: domain, reason, since, until, waiting.
    holds: list[dict[str, Any]] = field(default_factory=list)
    held_for: float | None = None  # seconds until the last hold with waiting mail ends

    @property
    def eta_seconds(self) -> float | None:
        """Time to send what is due at the recent rate (retries and later waves come on
        their schedule: then there is no ETA, never a "0")."""
        due = self.due_now
        if due is None:
            due = self.counts.get("queued", 0) + self.counts.get("sending", 0)
        if self.paused and due:
            return None
        if self.held_for and self.pending:
            # Held mail goes when its hold ends, however fast the rest goes.
            return max(self.held_for, due / self.rate if self.rate and due else 0.0)
        if not due:
            return 0.0 if not self.pending else None
        return due / self.rate if self.rate else None

    @property
    def pending(self) -> int:
        return sum(
            self.counts.get(s.value, 0)
            for s in (DeliveryStatus.QUEUED, DeliveryStatus.SENDING, DeliveryStatus.DEFERRED)
        )

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in (
            "window_start",
            "window_end",
            "created_at",
            "sent_at",
            "next_retry",
            "next_wave",
        ):
            value = data[key]
            data[key] = value.isoformat() if value else None
        data["rate"] = round(self.rate, 1) if self.rate else None
        data["pending"] = self.pending
        data["corrections"] = [r.as_json() for r in self.corrections]
        data["holds"] = [
            {k: v.isoformat() if isinstance(v, datetime) else v for k, v in h.items()}
            for h in self.holds
        ]
        eta = self.eta_seconds
        data["eta_seconds"] = round(eta) if eta is not None else None
        return data


def duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def progress_words(report: EditionReport, russian: bool = False) -> tuple[str, str]:
    """(rate, time left) as people read them: "n/a" where nothing says yet; with
    ``russian``, as the desk says them («120 писем/с», «готово», «—»)."""
    eta = report.eta_seconds
    if russian:
        rate = f"{report.rate:.0f} писем/с" if report.rate else "—"
        left = "—" if eta is None else "готово" if not report.pending else duration_ru(eta)
        return rate, left
    rate = f"{report.rate:.0f} messages/s" if report.rate else "n/a"
    left = "n/a" if eta is None else "done" if not report.pending else duration(eta)
    return rate, left


def duration_ru(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} ч {minutes:02d} мин" if hours else f"{minutes} мин {secs:02d} с"


ADDRESS = re.compile(r"[^\s<>()\[\]\"',;:]+@[^\s<>()\[\]\"',;:]+")


def reason_key(code: int | None, reply: str) -> tuple[int | None, str, str]:
    """(code, enhanced code, text) with addresses masked: the same reply to two
    readers is one reason, not two."""
    enhanced = enhanced_code(reply) or ""
    text = reply.replace(enhanced, "", 1) if enhanced else reply
    return code, enhanced, ADDRESS.sub("…", " ".join(text.split()))


def group_failures(
    rows: Sequence[tuple[str, int | None, str, int]], shown: int = 5
) -> dict[str, Any]:
    """The ``shown`` commonest reasons, and how many more (groups and messages),
    so no failure vanishes from a report without a word."""
    groups: Counter[tuple[str, int | None, str, str]] = Counter()
    for status, code, reply, n in rows:
        groups[(status, *reason_key(code, reply))] += n
    # Commonest first; ties in a fixed order, so two runs print the same report.
    ranked = sorted(groups.items(), key=lambda g: (-g[1], g[0][0], g[0][1] or 0, *g[0][2:]))
    rest = ranked[shown:]
    return {
        "failures": [
            {"status": s, "code": code, "enhanced": enhanced, "reply": text, "count": n}
            for (s, code, enhanced, text), n in ranked[:shown]
        ],
        "more_failures": len(rest),
        "more_failures_count": sum(n for _, n in rest),
    }


def edition_report(db: Reader, edition: Edition, now: datetime | None = None) -> EditionReport:
    """The edition's counts, rate and reasons; with ``now``, also what is due now and
    when the next wave goes. A pruned edition's come from its summary. ``db``: the
    caller's session, the edition read in it (`Reports` reads through a plain
    connection and no ORM, issue 31)."""
    return _report(db, EditionFacts.of(edition), now)


def _report(db: Reader, edition: EditionFacts, now: datetime | None) -> EditionReport:
    summary = edition_summary(db, edition.id)
    if summary is not None:
        return _pruned(db, edition, summary)
    counts, rate, due, wave = _tally(db, edition.id, now)
    # The reasons read the edition's rows again: asked only where the counts say
    # there is an answer (a million-row edition is a scan per question).
    has = {s for s, n in counts.items() if n}
    waiting = bool(has & {DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED})
    failed = bool(has & {DeliveryStatus.FAILED, DeliveryStatus.DEFERRED, DeliveryStatus.BOUNCED})
    return EditionReport(
        **_about(db, edition),
        counts={s.value: counts.get(s, 0) for s in DeliveryStatus},
        total=sum(counts.values()),
        rate=rate,
        **group_failures(failure_reasons(db, edition.id) if failed else []),
        next_wave=wave if waiting else None,
        due_now=(due if waiting else 0) if now else None,
        corrections=revisions_since(db, edition.id, edition.revision_mark),
        ambiguous=ambiguous_count(db, edition.id),
        **_holds(db, edition.id, now, DeliveryStatus.DEFERRED in has),
    )


def _tally(
    db: Reader, edition_id: int, now: datetime | None
) -> tuple[dict[DeliveryStatus, int], float | None, int, datetime | None]:
    """Counts, rate, what is due and the next wave: one reading of the rows when
    there is a now to ask about, the counts and the rate alone otherwise."""
    if now is not None:
        tally = edition_tally(db, edition_id, now)
        return tally.counts, tally.rate, tally.due, tally.next_wave
    counts = delivery_counts(db, edition_id)
    rate = recent_rate(db, edition_id) if counts.get(DeliveryStatus.SENT) else None
    return counts, rate, 0, None


def _pruned(db: Reader, edition: EditionFacts, summary: Summary) -> EditionReport:
    """An edition whose delivery rows `digest db prune` removed: what they said."""
    counts = {s.value: int(summary.counts.get(s.value, 0)) for s in DeliveryStatus}
    return EditionReport(
        **_about(db, edition),
        counts=counts,
        total=sum(counts.values()),
        **summary.failures,
        ambiguous=summary.ambiguous,
    )


def _about(db: Reader, edition: EditionFacts) -> dict[str, Any]:
    """What a report says of the edition itself, its rows kept or pruned."""
    return {
        "id": edition.id,
        "label": edition.label,
        "status": str(edition.status),
        "subject": edition.subject,
        "window_start": edition.window_start,
        "window_end": edition.window_end,
        "created_at": edition.created_at,
        "sent_at": edition.sent_at,
        "variants": variant_count(db, edition.id),
        "paused": edition.paused_at is not None,
        "pause_reason": edition.pause_reason,
        "engagement": engagement(db, edition.id),
    }


def _holds(db: Reader, edition_id: int, now: datetime | None, deferred: bool) -> dict[str, Any]:
    """The domains held now, and the next retry (of ``deferred`` rows), which
    waits for their holds."""
    if now is None:
        return {"next_retry": next_retry(db, edition_id) if deferred else None}
    held = holds(db, now)
    waiting = waiting_in(db, edition_id, [h.domain for h in held])
    shown = [
        {"domain": h.domain, "reason": h.reason, "since": h.since, "until": h.until,
         "waiting": waiting[h.domain]}
        for h in held
    ]  # fmt: skip
    ends = [h.until for h in held if waiting[h.domain]]
    return {
        "holds": shown,
        "held_for": (max(ends) - now).total_seconds() if ends else None,
        "next_retry": next_retry(db, edition_id, {h.domain: h.until for h in held})
        if deferred
        else None,
    }


class Reports:
    """What `digest status` and `digest editions` read: the recent editions' reports,
    or one edition's with what is due now (the door asks; the store is read here),
    through a plain connection: no ORM is loaded to answer (issue 31)."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock

    def recent(self, limit: int = 10) -> list[EditionReport]:
        with self.engine.connect() as conn:
            return [_report(conn, e, None) for e in recent_facts(conn, limit)]

    def edition(self, ref: str) -> Edition | None:
        """An edition by id or schedule/date, as the commands that act on it want it
        (a mapped row: this one loads the ORM)."""
        from digest import db, store

        with db.session_factory(self.engine)() as session:
            return store.find_edition(session, ref)

    def of(self, ref: str) -> EditionReport | None:
        """An edition by id or schedule/date, as of now; None when there is none."""
        with self.engine.connect() as conn:
            found = edition_facts(conn, ref)
            return None if found is None else _report(conn, found, self.clock())
