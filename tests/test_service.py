"""/healthz and /metrics against the real listener on 127.0.0.1 (port 0)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor import metrics, service
from monitor.config import Settings, settings_from_dict
from monitor.storage import Storage, database_bytes


@dataclass
class State:
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    running: bool = True
    last_poll_finished: datetime | None = None
    last_poll_error: str | None = None


@dataclass
class Host:
    settings: Settings
    state: State = field(default_factory=State)


@dataclass
class Report:
    feed: str = "Example"
    outcome: str = "ok"
    status: int | None = 200
    entries: int = 5
    new: int = 2
    edited: int = 1
    error: str | None = None
    duration_ms: float = 120.0


@dataclass
class Summary:
    decisions: Counter[str] = field(default_factory=Counter)
    alerts: int = 0


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Host:
    db = tmp_path / "monitor.db"
    monkeypatch.setenv("MONITOR_DB", str(db))
    settings = settings_from_dict({"polling": {"timeout": "30s"}}, tmp_path / "monitor.toml")
    Storage(db).close()
    return Host(settings)


@pytest.fixture
def listener(host: Host) -> Iterator[service.Service]:
    running = service.start_service("127.0.0.1:0", host, tick=30.0)
    try:
        yield running
    finally:
        running.stop()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def test_healthz_ok_when_polling_and_writable(host: Host, listener: service.Service) -> None:
    host.state.last_poll_finished = datetime.now(UTC)
    status, body = get(listener.url + "/healthz")
    assert status == 200
    data = json.loads(body)
    assert data["status"] == "ok"
    assert data["reasons"] == []
    assert data["checks"]["database"] == "writable"
    assert data["checks"]["scheduler"] == "running"


def test_head_requests_get_the_status_without_a_body(host: Host, listener: service.Service) -> None:
    """Uptime probes and load balancers often ask with HEAD (it was 501)."""
    host.state.last_poll_finished = datetime.now(UTC)
    for path, status in (("/healthz", 200), ("/metrics", 200), ("/nope", 404)):
        request = urllib.request.Request(listener.url + path, method="HEAD")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                got, body = response.status, response.read()
        except urllib.error.HTTPError as error:
            got, body = error.code, error.read()
        assert (got, body) == (status, b""), path


def test_healthz_names_the_stopped_scheduler(host: Host, listener: service.Service) -> None:
    host.state.last_poll_finished = datetime.now(UTC)
    host.state.running = False
    status, body = get(listener.url + "/healthz")
    assert status == 503
    assert json.loads(body)["reasons"] == ["the scheduler is not running"]


def test_healthz_names_a_stale_poll(host: Host, listener: service.Service) -> None:
    allowed = service.poll_allowance(30.0, host.settings)
    assert allowed == 3 * 30 + 2 * 30
    host.state.last_poll_finished = datetime.now(UTC) - timedelta(seconds=allowed + 60)
    status, body = get(listener.url + "/healthz")
    assert status == 503
    (reason,) = json.loads(body)["reasons"]
    assert reason.startswith("no poll finished in the last")


def test_healthz_quotes_why_the_last_poll_stopped(host: Host, listener: service.Service) -> None:
    allowed = service.poll_allowance(30.0, host.settings)
    host.state.last_poll_finished = datetime.now(UTC) - timedelta(seconds=allowed + 60)
    host.state.last_poll_error = "data/monitor.db: database or disk is full"
    status, body = get(listener.url + "/healthz")
    data = json.loads(body)
    assert status == 503
    assert data["checks"]["last_poll_error"] == "data/monitor.db: database or disk is full"
    (reason,) = data["reasons"]
    assert reason.endswith("; the last one stopped: data/monitor.db: database or disk is full")


def test_healthz_names_a_first_poll_that_never_came(host: Host, listener: service.Service) -> None:
    host.state.started = datetime.now(UTC) - timedelta(hours=1)
    status, body = get(listener.url + "/healthz")
    assert status == 503
    assert "no poll has finished" in json.loads(body)["reasons"][0]


def test_probes_that_arrive_during_a_check_share_its_answer(
    host: Host, listener: service.Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the database is busy a check waits the busy timeout (5 s) for the lock; a
    second probe queued behind it waited as long again, past a prober's timeout (8 s for
    the container's): it takes the answer of the check that ended while it waited."""
    monkeypatch.setattr(service, "BUSY_TIMEOUT_MS", 500)
    check = listener.check
    check.close()  # reopen with the short busy timeout
    real = check._database
    calls: list[datetime] = []

    def counted(now: datetime) -> tuple[str, float | None]:
        calls.append(now)
        return real(now)

    monkeypatch.setattr(check, "_database", counted)
    other = sqlite3.connect(str(host.settings.database_path), isolation_level=None)
    answers: list[service.Health] = []
    try:
        other.execute("BEGIN IMMEDIATE")
        first = threading.Thread(target=lambda: answers.append(check()))
        first.start()
        deadline = time.monotonic() + 10
        while not calls and time.monotonic() < deadline:
            time.sleep(0.01)
        assert calls, "the first check did not start"
        second = threading.Thread(target=lambda: answers.append(check()))
        second.start()  # while the first waits for the lock
        first.join(timeout=30)
        second.join(timeout=30)
    finally:
        other.close()
    later = check()  # asked after both ended: a check of its own
    assert [a.checks["database"] for a in answers] == ["busy", "busy"]
    assert len(calls) == 2 and later.checks["database"] == "writable"


def test_healthz_says_busy_while_another_connection_holds_the_write_lock(
    host: Host, listener: service.Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `monitor poll` or `replay` beside the daemon holds SQLite's write lock for longer
    than the check waits: the database is busy, not broken, and the container healthy (it
    answered 503, and compose's health check would have had it restarted). Held without a
    single commit for longer than a poll's allowance, the lock is a fault."""
    monkeypatch.setattr(service, "BUSY_TIMEOUT_MS", 50)
    listener.check.close()  # reopen with the short busy timeout
    moment = [datetime.now(UTC)]
    listener.check.clock = lambda: moment[0]
    allowed = service.poll_allowance(30.0, host.settings)

    def healthz(after: float = 0.0) -> tuple[int, dict[str, Any]]:
        moment[0] += timedelta(seconds=after)
        host.state.last_poll_finished = moment[0]  # the daemon itself keeps polling
        status, body = get(listener.url + "/healthz")
        return status, json.loads(body)

    other = sqlite3.connect(str(host.settings.database_path), isolation_level=None)
    try:
        other.execute("CREATE TABLE elsewhere (x)")
        other.execute("BEGIN IMMEDIATE")
        status, data = healthz()
        assert (status, data["reasons"]) == (200, [])
        assert data["checks"]["database"] == "busy"
        assert data["checks"]["database_busy_s"] == 0
        probe = [sys.executable, "-m", "monitor.healthcheck", listener.url + "/healthz"]
        probed = subprocess.run(probe, capture_output=True, text=True, timeout=60)
        assert probed.returncode == 0, probed.stderr  # the container's own health check
        status, data = healthz(allowed - 1)
        assert (status, data["checks"]["database_busy_s"]) == (200, allowed - 1)

        status, data = healthz(2)  # held, with no commit, past the allowance
        assert status == 503
        assert data["checks"]["database"] == "busy"
        assert data["reasons"] == [
            f"the database has been locked by another connection for {allowed + 1:.0f} s "
            f"without a commit (allowed: {allowed:.0f} s)"
        ]

        other.execute("INSERT INTO elsewhere VALUES (1)")
        other.execute("COMMIT")  # a writer that commits now and then is working
        other.execute("BEGIN IMMEDIATE")
        status, data = healthz(60)
        assert (status, data["reasons"], data["checks"]["database"]) == (200, [], "busy")
        assert data["checks"]["database_busy_s"] == 0
    finally:
        if other.in_transaction:
            other.execute("ROLLBACK")
        other.close()
    status, data = healthz(allowed * 2)
    assert (status, data["checks"]["database"]) == (200, "writable")
    assert "database_busy_s" not in data["checks"]


def test_healthz_names_a_database_that_cannot_be_written(
    host: Host, listener: service.Service
) -> None:
    """Told apart from a busy one: unhealthy at once, and never replaced by an empty
    database that the check itself would create (its connection went on writing into the
    deleted file, and said "writable")."""
    host.state.last_poll_finished = datetime.now(UTC)
    assert get(listener.url + "/healthz")[0] == 200
    path = host.settings.database_path
    path.unlink()
    status, body = get(listener.url + "/healthz")
    assert status == 503
    assert json.loads(body)["reasons"] == [f"the database is not writable: {path}: no such file"]
    assert not path.exists()
    path.write_bytes(b"not a database " * 512)
    status, body = get(listener.url + "/healthz")
    assert status == 503
    assert json.loads(body)["reasons"] == [
        f"the database is not writable: {path}: cannot open the database: file is not a database"
    ]


def test_healthz_names_a_read_only_database(host: Host, listener: service.Service) -> None:
    """SQLite opens a file it may not write read-only, and ``BEGIN IMMEDIATE`` succeeds on
    such a connection: the check said "writable". The file is made read-only with the
    immutable attribute, which binds root too (skipped where it cannot be set)."""
    host.state.last_poll_finished = datetime.now(UTC)
    path = host.settings.database_path
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode:
        pytest.skip("cannot make a file immutable here (chattr, CAP_LINUX_IMMUTABLE)")
    try:
        status, body = get(listener.url + "/healthz")
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)
    assert status == 503
    assert json.loads(body)["reasons"] == [
        f"the database is not writable: {path}: attempt to write a readonly database"
    ]


def test_probe_command_exit_status(host: Host, listener: service.Service) -> None:
    host.state.last_poll_finished = datetime.now(UTC)
    command = [sys.executable, "-m", "monitor.healthcheck", listener.url + "/healthz"]
    assert subprocess.run(command, capture_output=True, timeout=60).returncode == 0
    host.state.running = False
    failed = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1
    assert "scheduler is not running" in failed.stderr


def test_health_check_loads_only_the_standard_library() -> None:
    """Docker runs it every 30 s: no storage layer, NumPy or prometheus_client."""
    code = (
        "import sys, monitor.healthcheck; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'numpy', 'sqlite_utils', 'prometheus_client', 'httpx', 'click'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_metrics_move_after_a_poll(listener: service.Service) -> None:
    before = get(listener.url + "/metrics")[1]
    metrics.observe_feed(Report())
    metrics.observe_feed(Report(outcome="error", status=503, entries=0, new=0, edited=0))
    metrics.observe_poll(Summary(Counter(development=1, unrelated=3), alerts=1), 2.5)
    status, after = get(listener.url + "/metrics")
    assert status == 200

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("monitor_polls_total") == 1
    assert moved("monitor_feed_polls_total", outcome="ok", http_status="200") == 1
    assert moved("monitor_feed_polls_total", outcome="error", http_status="503") == 1
    assert moved("monitor_entries_total", kind="new") == 2
    assert moved("monitor_entries_total", kind="edited") == 1
    assert moved("monitor_decisions_total", status="development") == 1
    assert moved("monitor_decisions_total", status="unrelated") == 3
    assert moved("monitor_alerts_raised_total") == 1
    assert moved("monitor_poll_duration_seconds_count") == 1
    assert moved("monitor_poll_duration_seconds_sum") == pytest.approx(2.5)
    assert moved("monitor_feed_poll_duration_seconds_count") == 2
    assert value(after, "monitor_last_poll_timestamp_seconds") > 0


def test_metrics_move_after_a_delivery(host: Host, listener: service.Service) -> None:
    before = get(listener.url + "/metrics")[1]
    metrics.observe_delivery("email", "delivered", 0.2)
    metrics.observe_delivery("webhook:hooks.example.org", "retry", 1.0)
    metrics.observe_delivery("webhook:hooks.example.org", "failed", 1.5)
    after = get(listener.url + "/metrics")[1]

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("monitor_delivery_attempts_total", channel="email", outcome="delivered") == 1
    assert moved("monitor_alerts_delivered_total", channel="email") == 1
    hook = "webhook:hooks.example.org"
    assert moved("monitor_delivery_attempts_total", channel=hook, outcome="retry") == 1
    assert moved("monitor_alerts_failed_total", channel=hook) == 1
    assert moved("monitor_delivery_duration_seconds_count", channel=hook) == 2
    with pytest.raises(ValueError):
        metrics.observe_delivery("email", "lost", 0.1)


def test_outbox_depth_is_read_from_the_database(host: Host, listener: service.Service) -> None:
    assert value(get(listener.url + "/metrics")[1], "monitor_outbox_alerts", status="pending") == 0
    storage = Storage(host.settings.database_path)
    try:
        with storage.atomic():
            storage.enqueue_alert(
                kind="test", now=datetime.now(UTC), payload={"type": "test", "topic": None}
            )
    finally:
        storage.close()
    text = get(listener.url + "/metrics")[1]
    assert value(text, "monitor_outbox_alerts", status="pending") == 1
    assert value(text, "monitor_outbox_oldest_pending_timestamp_seconds") > 0
    assert value(text, "monitor_feeds", state="failing") == 0
    path = host.settings.database_path
    files = (path, path.with_name(path.name + "-wal"))
    on_disk = sum(f.stat().st_size for f in files if f.exists())
    assert value(text, "monitor_database_bytes") == on_disk > 0


def test_unknown_path_is_404(listener: service.Service) -> None:
    assert get(listener.url + "/nope")[0] == 404


def test_database_bytes_counts_a_missing_file_as_empty(tmp_path: Path) -> None:
    """The WAL comes and goes with checkpoints: a scrape or `status` between its check and
    its size must not fail."""
    path = tmp_path / "m.db"
    assert database_bytes(path) == 0
    path.write_bytes(b"x" * 4096)
    assert database_bytes(path) == 4096
    path.with_name("m.db-wal").write_bytes(b"y" * 100)
    assert database_bytes(path) == 4196


def test_an_ipv6_listener_gives_a_url_that_reaches_it(host: Host) -> None:
    """The daemon logs this URL (the only place a port 0 listener's port is named)."""
    try:
        running = service.start_service("[::1]:0", host, tick=30.0)
    except OSError as error:  # no IPv6 loopback on this machine
        pytest.skip(f"no [::1]: {error}")
    try:
        assert running.url.startswith("http://[::1]:")
        assert get(running.url + "/healthz")[0] in (200, 503)
    finally:
        running.stop()
