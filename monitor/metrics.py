"""Prometheus metrics: the metric objects and the small functions the daemon calls.

Everything lives in one dedicated registry, `registry()` (never prometheus-client's global
one), which `monitor.service` serves at ``/metrics``. Counters and histograms move when the
pipeline and the deliverer call the ``observe_*`` functions; gauges about the database
(outbox depth, feeds failing) are read at scrape time by `monitor.service.DatabaseCollector`,
on its own read-only connection, so they are right even after a restart. The registry and
its metrics are made on first use, so importing this module does not import
prometheus-client.

Where they are called:

- `observe_feed`     one `FeedReport` per feed per poll (a `Pipeline.observers` callback)
- `observe_poll`     once per poll cycle, with its `PollSummary` and wall time; it also
                     counts the summary's decisions (do not call `observe_decision` for those)
- `observe_decision` one decision made outside a poll summary passed to `observe_poll`
- `observe_delivery` one delivery attempt: channel, outcome (delivered/retry/failed), seconds

This module does no I/O and imports nothing from the rest of the package: the records it
reads are described by protocols.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

_FEED_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60)
_POLL_SECONDS = (0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
_DELIVERY_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _Metrics:
    """The registry and its metric objects (one set per process, see `_metrics`)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        registry = CollectorRegistry(auto_describe=True)
        self.registry = registry
        self.polls = Counter("monitor_polls", "Poll cycles finished.", registry=registry)
        self.poll_seconds = Histogram(
            "monitor_poll_duration_seconds",
            "Wall time of one poll cycle (all due feeds).",
            buckets=_POLL_SECONDS,
            registry=registry,
        )
        self.feed_polls = Counter(
            "monitor_feed_polls",
            "Feeds polled, by outcome (ok, not_modified, error, gone) and HTTP status.",
            ["outcome", "http_status"],
            registry=registry,
        )
        self.feed_seconds = Histogram(
            "monitor_feed_poll_duration_seconds",
            "Time to fetch, parse and store one feed.",
            buckets=_FEED_SECONDS,
            registry=registry,
        )
        self.entries = Counter(
            "monitor_entries",
            "Feed entries read, by kind: seen (in a fetched document), new, edited.",
            ["kind"],
            registry=registry,
        )
        self.decisions = Counter(
            "monitor_decisions",
            "Decisions made, by status (development, coverage, duplicate, unrelated).",
            ["status"],
            registry=registry,
        )
        self.alerts_raised = Counter(
            "monitor_alerts_raised", "Alerts written to the outbox by polls.", registry=registry
        )
        self.delivery_attempts = Counter(
            "monitor_delivery_attempts",
            "Delivery attempts, by channel and outcome (delivered, retry, failed).",
            ["channel", "outcome"],
            registry=registry,
        )
        self.alerts_delivered = Counter(
            "monitor_alerts_delivered",
            "Alerts a channel confirmed.",
            ["channel"],
            registry=registry,
        )
        self.alerts_failed = Counter(
            "monitor_alerts_failed",
            "Alerts that failed for good on a channel (no retry left).",
            ["channel"],
            registry=registry,
        )
        self.delivery_seconds = Histogram(
            "monitor_delivery_duration_seconds",
            "Time of one delivery attempt.",
            ["channel"],
            buckets=_DELIVERY_SECONDS,
            registry=registry,
        )
        self.last_poll = Gauge(
            "monitor_last_poll_timestamp_seconds",
            "Unix time the last poll cycle finished.",
            registry=registry,
        )


@functools.cache
def _metrics() -> _Metrics:
    # Made on first use: importing prometheus-client costs ~15 ms (its exposition module
    # pulls in http.server and wsgiref), which `monitor poll` and the other commands that
    # never count anything, or count nothing before they exit, need not pay at start-up.
    return _Metrics()


def registry() -> CollectorRegistry:
    """monitor's own registry (never prometheus-client's global one), served at /metrics."""
    return _metrics().registry


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
    m = _metrics()
    m.feed_polls.labels(str(report.outcome), str(report.status or "none")).inc()
    m.feed_seconds.observe(max(report.duration_ms, 0.0) / 1000)
    if report.entries:
        m.entries.labels("seen").inc(report.entries)
    if report.new:
        m.entries.labels("new").inc(report.new)
    if report.edited:
        m.entries.labels("edited").inc(report.edited)


def observe_poll(summary: PollSummaryLike, seconds: float) -> None:
    """Count one poll cycle (even one with no feed due), its decisions and alerts raised."""
    m = _metrics()
    m.polls.inc()
    m.poll_seconds.observe(max(seconds, 0.0))
    m.last_poll.set_to_current_time()
    for status, count in summary.decisions.items():
        if count:
            m.decisions.labels(str(status)).inc(count)
    if summary.alerts:
        m.alerts_raised.inc(summary.alerts)


def observe_decision(status: str) -> None:
    """Count one decision (use it only for decisions no `observe_poll` call will count)."""
    _metrics().decisions.labels(str(status)).inc()


def observe_delivery(channel: str, outcome: str, seconds: float) -> None:
    """Count one delivery attempt on `channel`; `outcome` is delivered, retry or failed."""
    if outcome not in DELIVERY_OUTCOMES:
        raise ValueError(f"unknown delivery outcome {outcome!r}")
    m = _metrics()
    m.delivery_attempts.labels(channel, outcome).inc()
    m.delivery_seconds.labels(channel).observe(max(seconds, 0.0))
    if outcome == "delivered":
        m.alerts_delivered.labels(channel).inc()
    elif outcome == "failed":
        m.alerts_failed.labels(channel).inc()
