"""The optional HTTP listener of `monitor run`: ``/healthz`` and ``/metrics``.

Started by the daemon when ``[service] listen = "host:port"`` is set; a stdlib
`ThreadingHTTPServer` in a daemon thread, so a slow scrape never blocks polling.

``GET /healthz`` answers 200 when all three hold, else 503, with a JSON body naming every
check and, when unhealthy, the reasons:

- **scheduler**: the daemon says its scheduler is running;
- **last poll**: the `poll_due` job (which runs every `tick` seconds whether or not a feed
  is due) finished within ``3 × tick + 2 × [polling].timeout`` seconds — three missed
  ticks, plus room for a slow cycle (per-host limits can queue a fetch behind another one).
  Before the first poll, the same allowance counts from the daemon's start.
  ``last_poll_error`` says why the last poll stopped (the database full, read-only ...)
  until one finishes, and the reason quotes it;
- **database**: the file is there and a write transaction can be opened now (``BEGIN
  IMMEDIATE``, a DELETE of nothing so that a read-only file shows, then a rollback), on the
  listener's own connection with a 5 s busy timeout. ``"writable"`` is healthy. So is
  ``"busy"``: another connection held the write lock through those 5 s (a `monitor poll` or
  `monitor replay` beside the daemon, the daemon's own long write), and a database that is
  busy is not broken. It stays healthy as long as the holder commits now and then (``PRAGMA
  data_version`` moves between two checks); held without a single commit for longer than
  the last poll's allowance (``database_busy_s``, counted from the first check that found
  it so), it is unhealthy: a transaction left open, a hung process, and the daemon cannot
  have written anything meanwhile either. Anything else (the file missing, read-only, an
  I/O error, not a database) is unhealthy at once.

``GET /metrics`` is the Prometheus text format of `monitor.metrics.registry()`, with the
gauges `DatabaseCollector` reads from the database at scrape time.

The container's health check is `monitor.healthcheck` (``python -m monitor.healthcheck
URL``; ``python -m monitor.service URL`` runs the same): exit 0 on a 200, else 1 with the
reason on stderr (no curl needed in a slim image).

This module reads the daemon's state and the database; it changes neither.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .config import Settings
from .errors import MonitorError
from .metrics import registry
from .storage import Storage, database_bytes, iso

DEFAULT_TICK = 30.0  # seconds; the daemon's `TICK` unless the host says otherwise
BUSY_TIMEOUT_MS = 5000


class StateLike(Protocol):
    """What the health check reads from `monitor.daemon.DaemonState`."""

    @property
    def started(self) -> datetime: ...
    @property
    def running(self) -> bool: ...
    @property
    def last_poll_finished(self) -> datetime | None: ...
    @property
    def last_poll_error(self) -> str | None: ...


class Host(Protocol):
    """What the listener reads from `monitor.daemon.Daemon`."""

    @property
    def state(self) -> StateLike: ...
    @property
    def settings(self) -> Settings: ...


def poll_allowance(tick: float, settings: Settings) -> float:
    """Seconds after which the last poll is no longer recent (see the module docstring)."""
    return 3 * tick + 2 * float(settings.polling.timeout)


@dataclass(slots=True)
class Health:
    healthy: bool
    checks: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.healthy else "unhealthy",
            "reasons": self.reasons,
            "checks": self.checks,
        }


@dataclass(slots=True)
class _Busy:
    """The write lock as the checks last found it held by another connection."""

    since: datetime  # the first check that found it held at this version
    version: int  # PRAGMA data_version then: it moves when another connection commits


class HealthCheck:
    """The three checks of ``/healthz``, on a connection of their own."""

    def __init__(
        self,
        host: Host,
        *,
        tick: float = DEFAULT_TICK,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.host = host
        self.tick = tick
        self.clock = clock
        self._storage: Storage | None = None
        self._busy: _Busy | None = None
        self._lock = threading.Lock()
        # the last database check: when it finished (time.monotonic()) and its answer
        self._latest: tuple[float, tuple[str, float | None]] | None = None

    def __call__(self) -> Health:
        now = self.clock()
        state = self.host.state
        health = Health(healthy=True)
        health.checks["scheduler"] = "running" if state.running else "stopped"
        if not state.running:
            health.reasons.append("the scheduler is not running")

        allowance = poll_allowance(self.tick, self.host.settings)
        last = state.last_poll_finished
        since = last or state.started
        age = (now - since).total_seconds()
        health.checks["last_poll"] = iso(last)
        health.checks["last_poll_age_s"] = round(age, 1) if last else None
        health.checks["last_poll_allowed_s"] = allowance
        health.checks["last_poll_error"] = state.last_poll_error
        if age > allowance:
            if last:
                reason = f"no poll finished in the last {age:.0f} s (allowed: {allowance:.0f} s)"
            else:
                reason = (
                    f"no poll has finished {age:.0f} s after the start (allowed: {allowance:.0f} s)"
                )
            if state.last_poll_error:
                reason += f"; the last one stopped: {state.last_poll_error}"
            health.reasons.append(reason)

        asked = time.monotonic()
        with self._lock:  # one check at a time on this connection
            latest = self._latest
            if latest is not None and latest[0] >= asked:
                # another probe's check ended while this one waited for it: its answer is
                # as fresh, and a second wait of up to the busy timeout (5 s) behind the
                # first could outlast the prober's own timeout
                database, busy = latest[1]
            else:
                database, busy = self._database(now)
                self._latest = (time.monotonic(), (database, busy))
        health.checks["database"] = database
        if busy is not None:
            health.checks["database_busy_s"] = round(busy, 1)
            if busy > allowance:
                health.reasons.append(
                    f"the database has been locked by another connection for {busy:.0f} s "
                    f"without a commit (allowed: {allowance:.0f} s)"
                )
        elif database != "writable":
            health.reasons.append(f"the database is not writable: {database}")
        health.healthy = not health.reasons
        return health

    def _database(self, now: datetime) -> tuple[str, float | None]:
        """("writable", None); ("busy", seconds the lock has been held without a commit, as
        far as the checks saw); or (what is wrong, None)."""
        path = self.host.settings.database_path
        if str(path) != ":memory:" and not path.exists():  # (opening would create an empty one)
            self.close_locked()
            self._busy = None
            return f"{path}: no such file", None
        try:
            if self._storage is None:
                storage = Storage(path)
                storage.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                self._storage = storage
            if self._storage.writable():
                self._busy = None
                return "writable", None
            (version,) = self._storage.db.execute("PRAGMA data_version").fetchone()
        except (MonitorError, sqlite3.Error, OSError) as error:  # the answer, not a crash
            self.close_locked()
            self._busy = None
            return str(error) if isinstance(error, MonitorError) else f"{path}: {error}", None
        if self._busy is None or self._busy.version != version:  # held afresh, or it committed
            self._busy = _Busy(now, int(version))
        return "busy", (now - self._busy.since).total_seconds()

    def close_locked(self) -> None:
        if self._storage is not None:
            self._storage.close()
            self._storage = None

    def close(self) -> None:
        with self._lock:
            self.close_locked()


def _handler(check: HealthCheck) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "monitor"
        timeout = 30  # a client that stops half way through its request is let go
        head_only = False

        def do_HEAD(self) -> None:  # (uptime probes and load balancers): GET without a body
            self.head_only = True
            self.do_GET()

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                health = check()
                body = json.dumps(health.body(), indent=2).encode() + b"\n"
                self._send(200 if health.healthy else 503, "application/json", body)
            elif path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry()))
            elif path == "/":
                self._send(200, "text/plain; charset=utf-8", b"monitor: /healthz /metrics\n")
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if not self.head_only:
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # scrapes every few seconds would drown the feed lines

    return Handler


def parse_listen(listen: str) -> tuple[str, int]:
    """'127.0.0.1:8080', '0.0.0.0:8080' or '[::]:8080' → (host, port)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


class Service:
    """A running listener; `stop()` shuts it down and releases its connection."""

    def __init__(
        self, server: ThreadingHTTPServer, check: HealthCheck, collector: DatabaseCollector
    ) -> None:
        self.server = server
        self.check = check
        self.collector = collector
        self.thread = threading.Thread(
            target=server.serve_forever, name="monitor-service", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
        with contextlib.suppress(KeyError):  # already unregistered
            registry().unregister(self.collector)
        self.check.close()


def start_service(listen: str, host: Host, *, tick: float | None = None) -> Service:
    """Serve /healthz and /metrics on `listen` ("host:port"; port 0 picks a free one)."""
    address, port = parse_listen(listen)
    if tick is None:
        tick = float(getattr(host, "tick", DEFAULT_TICK))
    check = HealthCheck(host, tick=tick)
    server_class = ThreadingHTTPServer
    if ":" in address:

        class V6Server(ThreadingHTTPServer):
            address_family = socket.AF_INET6

        server_class = V6Server
    server = server_class((address, port), _handler(check))
    server.daemon_threads = True
    collector = DatabaseCollector(Path(host.settings.database_path))
    registry().register(collector)
    service = Service(server, check, collector)
    service.thread.start()
    return service


class DatabaseCollector(Collector):
    """Gauges read from the database at scrape time: the outbox, the feeds' health and the
    file's size.

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
        size = GaugeMetricFamily(
            "monitor_database_bytes",
            "Size of the SQLite file and its write-ahead log (database.retention bounds "
            "what old unrelated stories add).",
        )
        size.add_metric([], float(database_bytes(self.path)))
        yield size


if __name__ == "__main__":  # the health check's old name; see `monitor.healthcheck`
    from .healthcheck import DEFAULT_URL, probe

    sys.exit(probe(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_URL))
