"""An edition's status, changed by one table: every step from every status."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from digest.edition.lifecycle import MOVES, Step, move
from digest.errors import EditionError
from digest.models import Edition, EditionStatus

S = EditionStatus
# What each step does from each status; a status not listed refuses the step.
EXPECTED: dict[Step, dict[EditionStatus, EditionStatus]] = {
    Step.APPROVE: {S.DRAFT: S.APPROVED, S.APPROVED: S.APPROVED},
    Step.UNAPPROVE: {S.DRAFT: S.DRAFT, S.APPROVED: S.DRAFT},
    Step.START: {
        S.DRAFT: S.SENDING,
        S.APPROVED: S.SENDING,
        S.SENDING: S.SENDING,
        S.SENT: S.SENDING,  # readers who joined since get it too
        S.MISSED: S.SENDING,  # ops send it by hand (`digest send --date`)
    },
    Step.FINISH: {S.SENDING: S.SENT},
    Step.PAUSE: {S.SENDING: S.SENDING, S.SENT: S.SENT, S.MISSED: S.MISSED},
    Step.RESUME: {S.SENDING: S.SENDING, S.SENT: S.SENDING, S.MISSED: S.MISSED},
    Step.RETRY: {S.SENDING: S.SENDING, S.SENT: S.SENDING, S.MISSED: S.MISSED},
    Step.CANCEL: {S.SENDING: S.CANCELLED, S.SENT: S.CANCELLED, S.MISSED: S.CANCELLED},
    Step.MISS: {S.DRAFT: S.MISSED, S.APPROVED: S.MISSED, S.MISSED: S.MISSED},
    Step.REOPEN: {S.MISSED: S.DRAFT},
}


def edition(status: EditionStatus) -> Edition:
    return Edition(schedule="daily", edition_date=date(2026, 11, 25), status=status)


def test_the_table_covers_every_step() -> None:
    assert set(MOVES) == set(Step) == set(EXPECTED)


@pytest.mark.parametrize("step", list(Step))
@pytest.mark.parametrize("status", list(EditionStatus))
def test_each_step_from_each_status(step: Step, status: EditionStatus) -> None:
    e = edition(status)
    wanted = EXPECTED[step].get(status)
    if wanted is None:
        with pytest.raises(EditionError):
            move(e, step)
        assert e.status is status  # a refused step changes nothing
    else:
        assert move(e, step) is wanted and e.status is wanted


@pytest.mark.parametrize(
    ("status", "step", "message"),
    [
        (S.SENDING, Step.APPROVE, "daily/2026-11-25 is sending: too late to change"),
        (S.CANCELLED, Step.PAUSE, "daily/2026-11-25 was cancelled"),
        (S.DRAFT, Step.PAUSE, "daily/2026-11-25 is a draft: nothing is being sent"),
        (S.APPROVED, Step.CANCEL, "daily/2026-11-25 is a approved: nothing is being sent"),
    ],
)
def test_a_refusal_says_why(status: EditionStatus, step: Step, message: str) -> None:
    with pytest.raises(EditionError) as caught:
        move(edition(status), step)
    assert str(caught.value) == message


def test_retries_end_before_the_next_edition_is_built() -> None:
    start = datetime(2026, 11, 24, 4, 0, tzinfo=UTC)
    e = Edition(window_start=start, window_end=start + timedelta(days=1))
    assert e.give_up_deadline == start + timedelta(days=2, minutes=-5)
