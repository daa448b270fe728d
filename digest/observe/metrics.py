"""Prometheus metrics (prometheus-client).

Two kinds. What a process does is counted where it happens and lives in that
process's registry: messages by outcome, DKIM signing and render times, the
domains a send has paused. What the database knows is read at each scrape by
``DatabaseCollector``: queue depth, the send rate, the age of each schedule's
last edition, missed editions, the scheduler's heartbeat. `/metrics` of the web
app gives both; a worker's or scheduler's `--metrics-port` gives its own.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from datetime import timedelta

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from digest import store
from digest.db import Factory
from digest.models import Clock

MESSAGES = Counter(
    "digest_messages",
    "Messages a send finished with, by edition kind (its schedule), destination "
    "domain (the first 100 seen; then 'other') and outcome",
    ["kind", "domain", "outcome"],
)
DKIM_SECONDS = Histogram(
    "digest_dkim_sign_seconds",
    "Time to DKIM-sign one message (in the send loop's thread)",
    buckets=(0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
RENDER_SECONDS = Histogram(
    "digest_render_seconds",
    "Time to render one variant of an edition (Jinja and premailer)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
AMBIGUOUS = Counter(
    "digest_ambiguous_deliveries",
    "Messages whose line dropped after the end of data, before the final reply: they "
    "may have been delivered, are retried with the same Message-ID, and may arrive twice",
    ["kind"],
)
PAUSED = Gauge(
    "digest_domain_paused",
    "1 while a send of this process holds a destination domain back (it deferred a cohort)",
    ["domain"],
)

SOURCE_ROWS = Counter(
    "digest_source_rows",
    "Rows read from a site database source (issue 29), by source and query",
    ["source", "query"],
)
SOURCE_SECONDS = Histogram(
    "digest_source_sync_seconds",
    "Time one sync of a site database source took",
    ["source"],
    buckets=(0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
SOURCE_ERRORS = Counter(
    "digest_source_errors", "Syncs of a site database source that failed", ["source"]
)


class DomainLabels:
    """Destination domains as label values, at most ``cap`` of them: a list of a
    million readers must not make a million time series."""

    def __init__(self, cap: int = 100) -> None:
        self.cap = cap
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, domain: str) -> str:
        with self._lock:
            if domain in self._seen:
                return domain
            if len(self._seen) < self.cap:
                self._seen.add(domain)
                return domain
        return "other"


domain_label = DomainLabels()


def count_outcome(kind: str, domain: str, outcome: str) -> None:
    MESSAGES.labels(kind, domain_label(domain), outcome).inc()


def show_paused(domains: Iterable[str]) -> None:
    """The domains held back now: 1 each; the ones no longer held are removed."""
    now = {domain_label(d) for d in domains}
    for label in _paused_shown - now:
        PAUSED.remove(label)
    for label in now - _paused_shown:
        PAUSED.labels(label).set(1)
    _paused_shown.clear()
    _paused_shown.update(now)


_paused_shown: set[str] = set()  # the label values PAUSED holds now


class DatabaseCollector(Collector):
    """What the database says at scrape time."""

    def __init__(self, factory: Factory, clock: Clock) -> None:
        self.factory = factory
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        with self.factory() as session:
            depth = store.queue_depth(session, now)
            sent = store.sent_per_minute(session, now, now - timedelta(minutes=1))
            last = store.last_sent(session)
            missed = store.missed_editions(session)
            beats = store.heartbeats(session, "scheduler")
            sources = store.source_states(session)
        queue = GaugeMetricFamily(
            "digest_queue_depth",
            "Deliveries of editions being sent: due now, deferred (a retry to come), "
            "waiting (for a later wave)",
            labels=["state"],
        )
        for state, n in sorted(depth.items()):
            queue.add_metric([state], n)
        yield queue
        yield GaugeMetricFamily(
            "digest_send_rate", "Messages accepted per second over the last minute", sent / 60
        )
        age = GaugeMetricFamily(
            "digest_last_edition_age_seconds",
            "Seconds since each schedule's last edition was sent",
            labels=["schedule"],
        )
        for name, at in sorted(last.items()):
            age.add_metric([name], (now - at).total_seconds())
        yield age
        misses = CounterMetricFamily(
            "digest_scheduler_misses",
            "Editions the scheduler marked missed (down past the grace time), per schedule",
            labels=["schedule"],
        )
        for name, n in sorted(missed.items()):
            misses.add_metric([name], n)
        yield misses
        if beats:
            newest = max(beats.values())
            yield GaugeMetricFamily(
                "digest_scheduler_heartbeat_age_seconds",
                "Seconds since the newest scheduler heartbeat",
                (now - newest).total_seconds(),
            )
        synced = GaugeMetricFamily(
            "digest_source_sync_age_seconds",
            "Seconds since each site database source last synced in full (issue 29)",
            labels=["source"],
        )
        latest: dict[str, float] = {}
        for row in sources:
            if row.synced_at is not None:
                age_s = (now - row.synced_at).total_seconds()
                latest[row.source] = min(latest.get(row.source, age_s), age_s)
        for name, seconds in sorted(latest.items()):
            synced.add_metric([name], seconds)
        yield synced


def exposition(factory: Factory | None, clock: Clock) -> bytes:
    """This process's metrics, and (given the database) the database's."""
    text = generate_latest(REGISTRY)
    if factory is not None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(DatabaseCollector(factory, clock))
        text += generate_latest(registry)
    return text
