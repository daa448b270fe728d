"""An edition's status, changed in one place by one table.

    draft ⇄ approved → sending → sent          (a send reopens a sent edition for
      │        │          ↑  ↓                  readers who joined since; resume
      └────────┴→ missed  └ cancelled           and retry reopen it too)

``MOVES`` says, for each step, from which status an edition may take it and to
which status it goes; a step from anywhere else is refused with a reason.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING

from digest import store
from digest.db import Session, transaction
from digest.errors import EditionError, OldEdition
from digest.kinds import state_word
from digest.models import DeliveryStatus, Edition, EditionStatus
from digest.render import plural
from digest.schedule.files import Schedule

if TYPE_CHECKING:
    from digest.db import Factory
    from digest.edition.build import Editions
    from digest.models import Clock

log = logging.getLogger(__name__)
S = EditionStatus


class Step(enum.StrEnum):
    APPROVE = "approve"
    UNAPPROVE = "unapprove"
    START = "start"  # freeze the content and queue a delivery per reader
    FINISH = "finish"  # nothing left to try
    PAUSE = "pause"
    RESUME = "resume"
    RETRY = "retry"
    CANCEL = "cancel"
    MISS = "miss"  # the scheduler was down past the grace time
    REOPEN = "reopen"  # ops run a missed edition by hand


# step → {from: to}. A missed edition sent by hand (`digest send`) is sent like any.
MOVES: dict[Step, dict[EditionStatus, EditionStatus]] = {
    Step.APPROVE: {S.DRAFT: S.APPROVED, S.APPROVED: S.APPROVED},
    Step.UNAPPROVE: {S.DRAFT: S.DRAFT, S.APPROVED: S.DRAFT},
    Step.START: {
        S.DRAFT: S.SENDING,
        S.APPROVED: S.SENDING,
        S.SENDING: S.SENDING,
        S.SENT: S.SENDING,
        S.MISSED: S.SENDING,
    },
    Step.FINISH: {S.SENDING: S.SENT},
    Step.PAUSE: {S.SENDING: S.SENDING, S.SENT: S.SENT, S.MISSED: S.MISSED},
    Step.RESUME: {S.SENDING: S.SENDING, S.SENT: S.SENDING, S.MISSED: S.MISSED},
    Step.RETRY: {S.SENDING: S.SENDING, S.SENT: S.SENDING, S.MISSED: S.MISSED},
    Step.CANCEL: {S.SENDING: S.CANCELLED, S.SENT: S.CANCELLED, S.MISSED: S.CANCELLED},
    Step.MISS: {S.DRAFT: S.MISSED, S.APPROVED: S.MISSED, S.MISSED: S.MISSED},
    Step.REOPEN: {S.MISSED: S.DRAFT},
}


def move(edition: Edition, step: Step) -> EditionStatus:
    """The status ``step`` takes ``edition`` to, set on it; EditionError if it may not."""
    to = MOVES[step].get(edition.status)
    if to is None:
        raise EditionError(refusal(edition, step), ru=refusal_ru(edition, step))
    edition.status = to
    return to


def refusal_ru(edition: Edition, step: Step) -> str:
    """``refusal`` in the desk's words."""
    state = state_word(edition.status)
    if step in (Step.APPROVE, Step.UNAPPROVE):
        return f"Выпуск {edition.label} — {state}: менять поздно."
    if edition.status is S.CANCELLED:
        return f"Выпуск {edition.label} отменён."
    return f"Выпуск {edition.label} — {state}: так нельзя."


def refusal(edition: Edition, step: Step) -> str:
    if step in (Step.APPROVE, Step.UNAPPROVE):
        return f"{edition.label} is {edition.status}: too late to change"
    if edition.status is S.CANCELLED:
        return f"{edition.label} was cancelled"
    if step in (Step.MISS, Step.REOPEN, Step.FINISH):
        return f"{edition.label} is {edition.status}: cannot {step}"
    return f"{edition.label} is a {edition.status}: nothing is being sent"


class Lifecycle:
    """Every status change of an edition (``Services.lifecycle``)."""

    def __init__(self, factory: Factory, clock: Clock, editions: Editions) -> None:
        self.factory = factory
        self.clock = clock
        self.editions = editions

    def _current(self, session: Session, edition: Edition, *, lock: bool = False) -> Edition:
        current = store.edition_by_id(session, edition.id, lock=lock)
        assert current is not None
        return current

    def _schedule(self, edition: Edition) -> Schedule:
        return self.editions.tools.schedule(edition.schedule)

    def start_sending(
        self, schedule: Schedule, edition: Edition, *, force: bool = False, old_ok: bool = False
    ) -> int:
        """Freeze the edition and give every reader of its audience a delivery row:
        those subscribed when its send first started. Every path that sends comes
        here, so the approval rule is here too (``force``: sent anyway, logged), and
        the age rule (``old_ok``: an edition older than its schedule's period goes
        out only when asked). Returns how many rows were added (0 on a re-run that
        finds nobody new)."""
        if edition.status is S.CANCELLED:
            raise EditionError(
                f"{edition.label} was cancelled", ru=f"Выпуск {edition.label} отменён."
            )
        self.check_age(schedule, edition, old_ok=old_ok)
        added = 0
        now = self.clock
        with transaction(self.factory) as session:
            # Its day's partition (PostgreSQL), committed before the long enqueue:
            # making one locks every delivery for an instant, not for the enqueue.
            store.make_partitions(session, [edition.edition_date])
        with transaction(self.factory) as session:
            # Locked: a second scheduler starting the same edition waits, then finds
            # the rows made and adds none (the unique delivery key never fires).
            current = self._current(session, edition, lock=True)
            self.check_approval(schedule, current, force=force)
            move(current, Step.START)
            # The first start takes every active reader and notes when; a resume or a
            # retry later adds only readers subscribed by then, never newcomers.
            audience = schedule.audience(current)
            current.audience_at = current.audience_at or now()
            for _ in range(2):
                added += store.enqueue_deliveries(session, current.id, now(), audience)
                if not store.unqueued_active_subscribers(session, current.id, audience):
                    break
                # Someone chose new sections since the variants were rendered.
                self.editions.render_variants(session, schedule, current, refresh=False)
            if schedule.send.local_time:
                zones = store.audience_zones(session, audience, schedule.timezone)
                waves = {z: schedule.local_send_time(current.edition_date, z) for z in zones}
                store.set_waves(session, current.id, schedule.timezone, waves)
            edition.status = current.status
        return added

    def check_approval(self, schedule: Schedule, edition: Edition, *, force: bool) -> None:
        """An edition whose schedule wants approval leaves only approved, unless
        forced (and then the log says so): `digest send`, `run`, the scheduler (its
        file's ``unapproved = send`` is its force), a worker, the desk."""
        # A special edition (issue 28 §6) always waits for an editor's approval.
        wanted = schedule.send.approval or edition.number > 0
        if not wanted or edition.status is not S.DRAFT:
            return
        if not force:
            raise EditionError(
                f"{edition.label} is not approved and schedule {schedule.name} wants approval: "
                f"`digest approve {edition.label}` first (or --force to send it anyway)",
                ru=f"Выпуск {edition.label} не утверждён: сначала утвердите его.",
            )
        log.warning(
            "%s: not approved; sent anyway (--force)", edition.label, extra={"edition": edition.id}
        )

    def check_age(
        self,
        schedule: Schedule,
        edition: Edition,
        *,
        old_ok: bool,
        requeue: Sequence[DeliveryStatus] = (),
    ) -> None:
        """Refuse (``OldEdition``, naming how many readers it would reach) to send,
        resume or retry an edition once its schedule's next one is due: a week-old
        digest mailed by a slip of `digest retry` is news to nobody (issue 28 §1)."""
        newer = schedule.next_edition_time(edition.edition_date)
        if newer is None or self.clock() < newer:
            return
        with self.factory() as session:
            current = self._current(session, edition)
            counts = store.delivery_counts(session, edition.id)
            waiting = sum(n for s, n in counts.items() if not s.final or s in requeue)
            waiting += store.unqueued_active_subscribers(
                session, edition.id, schedule.audience(current)
            )
        if waiting == 0:
            return  # nobody to reach: nothing to ask
        since = newer.astimezone(schedule.zone)
        said = (
            f"{edition.label} is older than its schedule's period: the next {schedule.name} "
            f"edition was due {since:%d.%m.%Y %H:%M} ({schedule.timezone}); "
            f"it would reach {waiting} reader(s) now"
        )
        if not old_ok:
            ru = (
                f"Выпуск {edition.label} устарел: следующий уже должен был уйти "
                f"{since:%d.%m.%Y %H:%M}. Он дошёл бы до "
                f"{plural(waiting, 'читателя', 'читателей', 'читателей')}; "
                "отправьте его из командной строки с --yes, если это нужно."
            )
            raise OldEdition(said, waiting, ru=ru)
        log.warning("%s; sent anyway (--yes)", said, extra={"edition": edition.id})

    def finish(self, edition: Edition) -> EditionStatus:
        """Mark the edition sent once no delivery is left to try."""
        with transaction(self.factory) as session:
            current = self._current(session, edition)
            counts = store.delivery_counts(session, edition.id)
            open_ = sum(counts.get(s, 0) for s in DeliveryStatus if not s.final)
            if open_ == 0 and current.status in MOVES[Step.FINISH]:
                move(current, Step.FINISH)
                current.sent_at = self.clock()
            edition.status, edition.sent_at = current.status, current.sent_at
            return current.status

    def is_sending(self, edition: Edition) -> bool:
        """Sending and not paused now (a pause may have been lifted since a run saw it)."""
        with self.factory() as session:
            current = self._current(session, edition)
            return current.status is EditionStatus.SENDING and current.paused_at is None

    def approve(self, edition: Edition, approved: bool = True) -> EditionStatus:
        """Approve a draft, or take the approval back until sending starts."""
        with transaction(self.factory) as session:
            current = self._current(session, edition)
            edition.status = move(current, Step.APPROVE if approved else Step.UNAPPROVE)
            return edition.status

    def pause(self, edition: Edition) -> None:
        """Running senders stop claiming within a heartbeat (about a second)."""
        with transaction(self.factory) as session:
            current = self._current(session, edition)
            move(current, Step.PAUSE)
            if current.paused_at is None:
                current.paused_at = self.clock()

    def resume(self, edition: Edition, *, old_ok: bool = False) -> None:
        """Lift a pause. One a correction made is lifted by a rebuild, or once the
        corrections are passed by (``Corrections.pass_by``). An old edition only
        when asked (``check_age``)."""
        self.check_age(self._schedule(edition), edition, old_ok=old_ok)
        with transaction(self.factory) as session:
            current = self._current(session, edition)
            move(current, Step.RESUME)
            pending = store.revisions_since(session, current.id, current.revision_mark)
            if pending and current.pause_reason == "correction":
                raise EditionError(
                    f"{current.label} was paused for {len(pending)} correction(s) of its "
                    f"articles: `digest editions rebuild {current.label}` sends the corrected "
                    f"text (or `digest resume --as-approved {current.label}` the approved one)"
                )
            current.paused_at = current.pause_reason = None

    def cancel(self, edition: Edition) -> tuple[int, int]:
        """Stop the edition for good. Returns (suppressed now: the queue and the
        retries; held by running senders: they stop within a heartbeat, about a
        second, and what they have not sent by then is suppressed as they hand it back)."""
        with transaction(self.factory) as session:
            move(self._current(session, edition), Step.CANCEL)
            held = store.delivery_counts(session, edition.id).get(DeliveryStatus.SENDING, 0)
            return store.cancel_pending(session, edition.id, self.clock()), held

    def retry(self, edition: Edition, *, failed: bool = False, old_ok: bool = False) -> int:
        """Deferred (and with ``failed`` failed) deliveries go back to the queue, due
        now. Bounced ones never do: the address is dead. An old edition only when
        asked (``check_age``)."""
        states = [DeliveryStatus.DEFERRED] + ([DeliveryStatus.FAILED] if failed else [])
        self.check_age(self._schedule(edition), edition, old_ok=old_ok, requeue=states)
        with transaction(self.factory) as session:
            current = self._current(session, edition)
            before = current.status
            if before not in MOVES[Step.RETRY]:
                raise EditionError(refusal(current, Step.RETRY))
            n = store.requeue(session, edition.id, states, self.clock())
            if n:
                move(current, Step.RETRY)
                if before is S.SENT:
                    current.sent_at = None
            return n

    def mark_missed(self, schedule: Schedule, day: date) -> int:
        """A row that says so: `digest editions` shows it, and a later fire skips it."""
        with transaction(self.factory) as session:
            edition = store.edition_for(session, schedule.name, day)
            if edition is None:
                edition = self.editions.new_edition(session, schedule, day, S.MISSED)
            if edition.status in MOVES[Step.MISS]:
                move(edition, Step.MISS)
            store.write_now(session)
            return edition.id

    def reopen(self, edition: Edition) -> None:
        """Ops run a missed edition by hand: it is a draft again."""
        with transaction(self.factory) as session:
            edition.status = move(self._current(session, edition), Step.REOPEN)
