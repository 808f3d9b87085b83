"""Prometheus metrics: the metric objects and the small functions the daemon calls.

Everything lives in one dedicated `REGISTRY` (never prometheus-client's global one), which
`monitor.service` serves at ``/metrics``. Counters and histograms move when the pipeline and
the deliverer call the ``observe_*`` functions; gauges about the database (outbox depth,
feeds failing) are read at scrape time by `DatabaseCollector`, on its own read-only
connection, so they are right even after a restart.

Where they are called:

- `observe_feed`     one `FeedReport` per feed per poll (a `Pipeline.observers` callback)
- `observe_poll`     once per poll cycle, with its `PollSummary` and wall time; it also
                     counts the summary's decisions (do not call `observe_decision` for those)
- `observe_decision` one decision made outside a poll summary passed to `observe_poll`
- `observe_delivery` one delivery attempt: channel, outcome (delivered/retry/failed), seconds

This module does no I/O except `DatabaseCollector`'s reads at scrape time, and imports
nothing from the rest of the package: the records it reads are described by protocols.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)

_FEED_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60)
_POLL_SECONDS = (0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
_DELIVERY_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

POLLS = Counter("monitor_polls", "Poll cycles finished.", registry=REGISTRY)
POLL_SECONDS = Histogram(
    "monitor_poll_duration_seconds",
    "Wall time of one poll cycle (all due feeds).",
    buckets=_POLL_SECONDS,
    registry=REGISTRY,
)
FEED_POLLS = Counter(
    "monitor_feed_polls",
    "Feeds polled, by outcome (ok, not_modified, error, gone) and HTTP status.",
    ["outcome", "http_status"],
    registry=REGISTRY,
)
FEED_SECONDS = Histogram(
    "monitor_feed_poll_duration_seconds",
    "Time to fetch, parse and store one feed.",
    buckets=_FEED_SECONDS,
    registry=REGISTRY,
)
ENTRIES = Counter(
    "monitor_entries",
    "Feed entries read, by kind: seen (in a fetched document), new, edited.",
    ["kind"],
    registry=REGISTRY,
)
DECISIONS = Counter(
    "monitor_decisions",
    "Decisions made, by status (development, coverage, duplicate, unrelated).",
    ["status"],
    registry=REGISTRY,
)
ALERTS_RAISED = Counter(
    "monitor_alerts_raised", "Alerts written to the outbox by polls.", registry=REGISTRY
)
DELIVERY_ATTEMPTS = Counter(
    "monitor_delivery_attempts",
    "Delivery attempts, by channel and outcome (delivered, retry, failed).",
    ["channel", "outcome"],
    registry=REGISTRY,
)
ALERTS_DELIVERED = Counter(
    "monitor_alerts_delivered",
    "Alerts a channel confirmed.",
    ["channel"],
    registry=REGISTRY,
)
ALERTS_FAILED = Counter(
    "monitor_alerts_failed",
    "Alerts that failed for good on a channel (no retry left).",
    ["channel"],
    registry=REGISTRY,
)
DELIVERY_SECONDS = Histogram(
    "monitor_delivery_duration_seconds",
    "Time of one delivery attempt.",
    ["channel"],
    buckets=_DELIVERY_SECONDS,
    registry=REGISTRY,
)
LAST_POLL = Gauge(
    "monitor_last_poll_timestamp_seconds",
    "Unix time the last poll cycle finished.",
    registry=REGISTRY,
)

DELIVERY_OUTCOMES = ("delivered", "retry", "failed")


class FeedReportLike(Protocol):
    """What `observe_feed` reads from `monitor.pipeline.FeedReport`."""

    @property
    def outcome(self) -> str: ...
    @property
    def status(self) -> int | None: ...
    @property
    def entries(self) -> int: ...
    @property
    def new(self) -> int: ...
    @property
    def edited(self) -> int: ...
    @property
    def duration_ms(self) -> float: ...


class PollSummaryLike(Protocol):
    """What `observe_poll` reads from `monitor.pipeline.PollSummary`."""

    @property
    def decisions(self) -> Mapping[str, int]: ...
    @property
    def alerts(self) -> int: ...


def observe_feed(report: FeedReportLike) -> None:
    """Count one feed's poll: outcome, HTTP status, entries, and its duration."""
    FEED_POLLS.labels(str(report.outcome), str(report.status or "none")).inc()
    FEED_SECONDS.observe(max(report.duration_ms, 0.0) / 1000)
    if report.entries:
        ENTRIES.labels("seen").inc(report.entries)
    if report.new:
        ENTRIES.labels("new").inc(report.new)
    if report.edited:
        ENTRIES.labels("edited").inc(report.edited)


def observe_poll(summary: PollSummaryLike, seconds: float) -> None:
    """Count one poll cycle (even one with no feed due), its decisions and alerts raised."""
    POLLS.inc()
    POLL_SECONDS.observe(max(seconds, 0.0))
    LAST_POLL.set_to_current_time()
    for status, count in summary.decisions.items():
        if count:
            DECISIONS.labels(str(status)).inc(count)
    if summary.alerts:
        ALERTS_RAISED.inc(summary.alerts)


def observe_decision(status: str) -> None:
    """Count one decision (use it only for decisions no `observe_poll` call will count)."""
    DECISIONS.labels(str(status)).inc()


def observe_delivery(channel: str, outcome: str, seconds: float) -> None:
    """Count one delivery attempt on `channel`; `outcome` is delivered, retry or failed."""
    if outcome not in DELIVERY_OUTCOMES:
        raise ValueError(f"unknown delivery outcome {outcome!r}")
    DELIVERY_ATTEMPTS.labels(channel, outcome).inc()
    DELIVERY_SECONDS.labels(channel).observe(max(seconds, 0.0))
    if outcome == "delivered":
        ALERTS_DELIVERED.labels(channel).inc()
    elif outcome == "failed":
        ALERTS_FAILED.labels(channel).inc()


class DatabaseCollector(Collector):
    """Gauges read from the database at scrape time: the outbox and the feeds' health.

    Opens the file read-only for each scrape (a few indexed counts), so it never holds a
    lock the daemon needs and always shows what is stored, whoever wrote it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def describe(self) -> Iterator[Metric]:
        return iter(())  # unchecked: the families depend on the data

    def collect(self) -> Iterator[Metric]:
        try:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=2.0)
        except sqlite3.Error:
            return
        try:
            yield from self._collect(conn)
        except sqlite3.Error:
            return
        finally:
            conn.close()

    def _collect(self, conn: sqlite3.Connection) -> Iterator[Metric]:
        alerts = GaugeMetricFamily(
            "monitor_outbox_alerts", "Alerts in the outbox, by status.", labels=["status"]
        )
        counts = dict(conn.execute("SELECT status, count(*) FROM alerts GROUP BY status"))
        for status in ("pending", "held", "delivered", "failed"):
            alerts.add_metric([status], float(counts.get(status, 0)))
        yield alerts
        deliveries = GaugeMetricFamily(
            "monitor_outbox_deliveries",
            "Deliveries (one per alert and channel), by channel and status.",
            labels=["channel", "status"],
        )
        for channel, status, count in conn.execute(
            "SELECT channel, status, count(*) FROM deliveries GROUP BY channel, status"
        ):
            deliveries.add_metric([channel, status], float(count))
        yield deliveries
        oldest = conn.execute(
            "SELECT CAST(strftime('%s', min(created_at)) AS REAL) FROM alerts "
            "WHERE status = 'pending'"
        ).fetchone()[0]
        age = GaugeMetricFamily(
            "monitor_outbox_oldest_pending_timestamp_seconds",
            "Creation time of the oldest pending alert (0 when none is pending).",
        )
        age.add_metric([], float(oldest or 0))
        yield age
        feeds = GaugeMetricFamily(
            "monitor_feeds",
            "Feeds by state: enabled, failing (enabled, last poll an error), disabled.",
            labels=["state"],
        )
        enabled, failing, disabled = conn.execute(
            "SELECT coalesce(sum(enabled), 0),"
            " coalesce(sum(enabled AND error_kind IS NOT NULL), 0),"
            " coalesce(sum(NOT enabled), 0) FROM feeds"
        ).fetchone()
        feeds.add_metric(["enabled"], float(enabled))
        feeds.add_metric(["failing"], float(failing))
        feeds.add_metric(["disabled"], float(disabled))
        yield feeds
