"""The list's growth and churn per week (issue 28 §5): who came (sign-ups, then
confirmations) and who left (unsubscribes, bounces, complaints), for the desk's
chart. The database groups by day; the weeks are Monday to Sunday."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING

from digest import store

if TYPE_CHECKING:
    from digest.db import Factory
    from digest.models import Clock

SERIES = ("signups", "confirmations", "unsubscribes", "bounces", "complaints")


@dataclass(frozen=True)
class Week:
    start: date  # its Monday
    signups: int
    confirmations: int
    unsubscribes: int
    bounces: int
    complaints: int

    @property
    def came(self) -> int:
        return self.confirmations

    @property
    def left(self) -> int:
        """Readers lost (a soft bounce report is counted too: a report, not a loss)."""
        return self.unsubscribes + self.bounces + self.complaints


@dataclass(frozen=True)
class GrowthReport:
    weeks: list[Week]

    @property
    def peak(self) -> int:
        """The tallest bar, either way: the chart's scale."""
        return max([1, *(w.came for w in self.weeks), *(w.left for w in self.weeks)])

    def totals(self) -> dict[str, int]:
        return {name: sum(getattr(w, name) for w in self.weeks) for name in SERIES}


class Growth:
    """Weekly figures of the list, from what the database recorded."""

    def __init__(self, factory: Factory, clock: Clock) -> None:
        self.factory = factory
        self.clock = clock

    def weeks(self, count: int = 12) -> GrowthReport:
        """The last ``count`` weeks, this one included, oldest first."""
        count = max(1, min(count, 104))
        today = self.clock().astimezone(UTC).date()
        first = today - timedelta(days=today.weekday()) - timedelta(weeks=count - 1)
        since = datetime.combine(first, time(0, 0), tzinfo=UTC)
        with self.factory() as session:
            days = store.growth_days(session, since)
        weeks = []
        for n in range(count):
            start = first + timedelta(weeks=n)
            span = [start + timedelta(days=d) for d in range(7)]
            figures = {name: sum(days[name].get(d, 0) for d in span) for name in SERIES}
            weeks.append(Week(start=start, **figures))
        return GrowthReport(weeks)
