"""`monitor run` as a real process: signals, the run lock, crashes and hung peers."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.storage import Storage, iso
from tests.feedserver import FeedServer
from tests.feedserver import Reply as FeedReply
from tests.peers import ReceivedRequest, Reply, WebhookReceiver
from tests.test_pipeline import items, rss

ROOT = Path(__file__).resolve().parents[1]
SECRET = "whsec_" + "c2VjcmV0LWZvci10ZXN0cy1vbmx5LTEyMzQ1Ng=="


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def stderr_lines(process: subprocess.Popen[str]) -> tuple[list[str], threading.Thread]:
    """The daemon's log lines as they come, read by a thread (join it once it exited)."""
    lines: list[str] = []

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)

    reader = threading.Thread(target=read)
    reader.start()
    return lines, reader


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []


class Daemons:
    """Start `monitor run` processes and make sure none outlives the test."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.db = tmp_path / "daemon.db"
        self.processes: list[subprocess.Popen[str]] = []

    def config(self, text: str) -> Path:
        path = self.tmp_path / "monitor.toml"
        path.write_text(
            f'[[topics]]\nname = "taliban-delisting"\nseeds = ["{ROOT / "seeds"}"]\n' + text
        )
        return path

    def start(self, config: Path) -> subprocess.Popen[str]:
        env = {**os.environ, "MONITOR_DB": str(self.db), "MONITOR_WEBHOOK_SECRET": SECRET}
        process = subprocess.Popen(
            [sys.executable, "-m", "monitor", "--config", str(config), "run"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.processes.append(process)
        return process

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=30)


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    manager = Daemons(tmp_path)
    yield manager
    manager.close()


def test_run_polls_stops_on_sigterm_and_refuses_a_second_daemon(
    daemons: Daemons, feed_server: FeedServer
) -> None:
    url = feed_server.route("/feed.xml", FeedReply(200, rss(items("d", 4))))
    config = daemons.config(f'[polling]\ntick = "1s"\n[[feeds]]\nurl = "{url}"\ninterval = "2s"\n')
    first = daemons.start(config)
    wait_for(lambda: query(daemons.db, "SELECT count(*) FROM decisions") == [(4,)], "the poll")
    second = daemons.start(config)
    _, err = second.communicate(timeout=60)
    assert second.returncode == 2
    assert "already" in err and "Traceback" not in err
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=30)
    assert first.returncode == 0, err
    # the lock went with the process: a new daemon starts, and SIGINT stops it too
    polled = len(feed_server.requests_for("/feed.xml"))
    third = daemons.start(config)
    wait_for(lambda: len(feed_server.requests_for("/feed.xml")) > polled, "the third daemon's poll")
    third.send_signal(signal.SIGINT)
    third.communicate(timeout=30)
    assert third.returncode == 0


def test_sigterm_during_a_poll_ends_it_quietly(daemons: Daemons, feed_server: FeedServer) -> None:
    """A poll in progress at SIGTERM is cut short without an error in the log: the feeds
    written so far stay written, and the others are polled again at the next start."""
    slow = feed_server.route("/slow.xml", FeedReply(200, rss(items("s", 2)), delay=20.0))
    config = daemons.config(f'[polling]\ntick = "1s"\n[[feeds]]\nurl = "{slow}"\n')
    process = daemons.start(config)
    wait_for(lambda: bool(feed_server.requests_for("/slow.xml")), "the poll's request")
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Traceback" not in err and "ERROR" not in err, err
    assert "poll interrupted by the stop" in err


def _pending_alert(db: Path) -> str:
    storage = Storage(db)
    try:
        with storage.atomic():
            return storage.enqueue_alert(
                kind="development",
                topic="taliban-delisting",
                now=datetime.now(UTC),
                payload={
                    "type": "development.new",
                    "topic": "taliban-delisting",
                    "story": {
                        "id": "s_x",
                        "url": "https://news.example/x",
                        "title": "A step",
                        "source": "Example",
                        "published": "2026-11-01T00:00:00+00:00",
                        "summary": "Something happened.",
                    },
                    "development": {
                        "id": "dev_x",
                        "label": "step",
                        "sources": ["Example"],
                        "story_count": 1,
                    },
                    "score": 0.9,
                    "reasons": [],
                },
            )
    finally:
        storage.close()


def test_a_digest_due_while_the_daemon_was_stopped_is_sent_when_it_starts(
    daemons: Daemons,
) -> None:
    """The daily digest's time passed while no daemon ran: the next one to start queues
    it at once, instead of the coverage waiting a day more."""
    yesterday = datetime.now(UTC) - timedelta(days=1)
    storage = Storage(daemons.db)
    try:
        with storage.atomic():
            db = storage.db
            db["topics"].insert({"name": "taliban-delisting", "created_at": iso(yesterday)})
            db["stories"].insert(
                {"id": "s_c", "origin": "test", "entry_key": "c", "url": "https://n.example/c",
                 "canonical_url": "https://n.example/c", "title": "More on the step",
                 "published": iso(yesterday), "seen_at": iso(yesterday), "content_hash": "c"}
            )  # fmt: skip
            db["decisions"].insert(
                {"story_id": "s_c", "topic": "taliban-delisting", "status": "coverage",
                 "score": 0.5, "decided_at": iso(yesterday + timedelta(minutes=1))}
            )  # fmt: skip
    finally:
        storage.close()
    # a digest every day at this hour: yesterday's start was before today's time
    config = daemons.config(f'digest = "{yesterday.minute} {yesterday.hour} * * *"\n')
    process = daemons.start(config)
    try:
        wait_for(
            lambda: (
                query(daemons.db, "SELECT count(*) FROM alerts WHERE kind = 'digest'") == [(1,)]
            ),
            "the digest that was due",
        )
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0 and "digest for taliban-delisting was due at" in err, err


def test_killed_after_sending_before_recording_resends_the_same_id(
    daemons: Daemons, webhook_receiver: WebhookReceiver
) -> None:
    config = daemons.config(
        f'[alerts]\ndeliver_every = "1s"\n[[alerts.webhooks]]\nurl = "{webhook_receiver.url}"\n'
        'secret_env = "MONITOR_WEBHOOK_SECRET"\ntimeout = "20s"\n'
    )
    alert_id = _pending_alert(daemons.db)
    webhook_receiver.program(Reply(hang=True))
    first = daemons.start(config)
    wait_for(lambda: len(webhook_receiver.requests) == 1, "the first send")
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    assert query(daemons.db, f"SELECT status FROM alerts WHERE id = '{alert_id}'") == [("pending",)]
    second = daemons.start(config)
    wait_for(
        lambda: (
            query(daemons.db, f"SELECT status FROM alerts WHERE id = '{alert_id}'")
            == [("delivered",)]
        ),
        "the resend",
    )
    second.send_signal(signal.SIGTERM)
    second.communicate(timeout=30)
    ids = [request.headers["webhook-id"] for request in webhook_receiver.requests]
    assert ids == [alert_id, alert_id]
    bodies = [json.loads(request.body) for request in webhook_receiver.requests]
    assert bodies[0] == bodies[1]


def test_sigterm_during_a_backlog_finishes_the_current_delivery_and_leaves_the_rest(
    daemons: Daemons, webhook_receiver: WebhookReceiver
) -> None:
    """SIGTERM while the receiver is slow to answer the first of three alerts: that one is
    answered, recorded and delivered; the daemon then exits without sending the others."""
    config = daemons.config(
        f'[alerts]\ndeliver_every = "1s"\n[[alerts.webhooks]]\nurl = "{webhook_receiver.url}"\n'
        'secret_env = "MONITOR_WEBHOOK_SECRET"\ntimeout = "20s"\n'
    )
    ids = [_pending_alert(daemons.db) for _ in range(3)]
    arrived, answer = threading.Event(), threading.Event()

    def slow(request: ReceivedRequest) -> None:
        arrived.set()
        answer.wait(20)

    webhook_receiver.on_request = slow
    process = daemons.start(config)
    lines, reader = stderr_lines(process)
    try:
        assert arrived.wait(30), "the first send never came"
        process.send_signal(signal.SIGTERM)
        wait_for(lambda: any("stopping after" in line for line in lines), "the stop")
    finally:
        answer.set()
    process.wait(timeout=30)
    reader.join(timeout=10)
    err = "".join(lines)
    assert process.returncode == 0, err
    assert [r.headers["webhook-id"] for r in webhook_receiver.requests] == ids[:1]
    statuses = query(daemons.db, "SELECT id, status FROM alerts")
    assert sorted(statuses) == sorted(
        [(ids[0], "delivered"), (ids[1], "pending"), (ids[2], "pending")]
    )
    assert query(daemons.db, "SELECT alert_id, outcome FROM delivery_attempts") == [
        (ids[0], "delivered")
    ]
    assert query(daemons.db, "SELECT count(*) FROM deliveries WHERE claimed_by IS NOT NULL") == [
        (0,)
    ]
    assert "stopped: 2 left for the next start" in err
    assert err.count("deliveries: ") == 1, err  # the run's summary, logged once
    assert "Traceback" not in err and "ERROR" not in err, err


def test_hung_smtp_server_does_not_stop_polling(
    daemons: Daemons, feed_server: FeedServer, smtp_blackhole: int
) -> None:
    url = feed_server.route("/feed.xml", FeedReply(200, rss(items("h", 2))))
    config = daemons.config(
        f'[polling]\ntick = "1s"\n[[feeds]]\nurl = "{url}"\ninterval = "1s"\n'
        f'[alerts]\ndeliver_every = "1s"\n[alerts.email]\nhost = "127.0.0.1"\n'
        f'port = {smtp_blackhole}\nrecipients = ["me@example.org"]\ntimeout = "2s"\n'
    )
    _pending_alert(daemons.db)
    process = daemons.start(config)
    wait_for(
        lambda: (
            query(daemons.db, "SELECT count(*) FROM delivery_attempts WHERE outcome = 'retry'")
            >= [(1,)]
        ),
        "a timed-out delivery attempt",
    )
    polls_before = len(feed_server.requests_for("/feed.xml"))
    wait_for(
        lambda: len(feed_server.requests_for("/feed.xml")) >= polls_before + 2,
        "polls while SMTP hangs",
    )
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    error = query(daemons.db, "SELECT error FROM delivery_attempts WHERE outcome = 'retry'")[0][0]
    assert "timed out" in error or "timeout" in error.lower()


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{key}="{val}"' in head for key, val in labels.items()):
            total += float(value)
    return total


def test_health_and_metrics_of_a_running_daemon(
    daemons: Daemons, feed_server: FeedServer, webhook_receiver: WebhookReceiver
) -> None:
    import urllib.error
    import urllib.request

    url = feed_server.route("/feed.xml", FeedReply(200, rss(items("m", 3))))
    config = daemons.config(
        f'[polling]\ntick = "1s"\n[[feeds]]\nurl = "{url}"\ninterval = "1s"\n'
        '[service]\nlisten = "127.0.0.1:0"\n'  # its own port, named in its log
        f'[alerts]\ndeliver_every = "1s"\n[[alerts.webhooks]]\nurl = "{webhook_receiver.url}"\n'
        'secret_env = "MONITOR_WEBHOOK_SECRET"\n'
    )
    _pending_alert(daemons.db)
    process = daemons.start(config)
    lines, reader = stderr_lines(process)

    def listening() -> str | None:
        found = [re.search(r"health and metrics at (http://\S+)/healthz", line) for line in lines]
        return next((match.group(1) for match in found if match), None)

    wait_for(lambda: listening() is not None, "the service's address in the log")
    base = listening()

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"{base}{path}", timeout=5) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError:
            return 0, ""

    wait_for(lambda: get("/healthz")[0] == 200, "a healthy daemon")
    wait_for(lambda: len(webhook_receiver.requests) >= 1, "the delivery")
    first = get("/metrics")[1]
    wait_for(
        lambda: (
            _metric(get("/metrics")[1], "monitor_feed_polls_total")
            > _metric(first, "monitor_feed_polls_total")
        ),
        "polls counted",
    )
    text = get("/metrics")[1]
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    reader.join(timeout=10)
    err = "".join(lines)
    assert process.returncode == 0, err
    polls = [line for line in text.splitlines() if line.startswith("monitor_feed_polls_total")]
    assert _metric(text, "monitor_feed_polls_total", outcome="ok") >= 1, (polls, err[-3000:])
    channel = f"webhook:127.0.0.1:{webhook_receiver.port}"
    assert (
        _metric(text, "monitor_delivery_attempts_total", channel=channel, outcome="delivered") == 1
    )


def test_a_running_daemon_clears_old_unrelated_text_and_keeps_the_decisions(
    daemons: Daemons, feed_server: FeedServer
) -> None:
    """`database.retention` end to end: the daemon's own cycles clear the text, and the
    decisions stay (taken out and put back, a story would take them with it if the
    foreign keys' actions were on)."""
    url = feed_server.route("/feed.xml", FeedReply(200, rss(items("r", 3))))
    config = daemons.config(
        '[database]\nretention = "2s"\n'
        f'[polling]\ntick = "1s"\n[[feeds]]\nurl = "{url}"\ninterval = "1s"\n'
    )
    process = daemons.start(config)
    wait_for(
        lambda: (
            query(daemons.db, "SELECT count(*) FROM stories WHERE pruned_at IS NOT NULL") == [(3,)]
        ),
        "the text of the three stories cleared",
    )
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "retention: cleared the text of" in err and "retention not applied" not in err
    assert query(daemons.db, "SELECT count(*), min(status) FROM decisions") == [(3, "unrelated")]
    assert query(daemons.db, "SELECT DISTINCT summary, content FROM stories") == [("", "")]
    with sqlite3.connect(daemons.db) as conn:  # its foreign keys are whole
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
