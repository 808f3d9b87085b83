"""The outbox is drained exactly as promised, against a real SMTP server and HTTP receiver.

Time is injected: each `deliver_pending` call gets its own clock, set past the retry delay,
so no test sleeps to wait for a retry.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlite_utils import Database
from standardwebhooks import Webhook

from monitor.channels import build_channels
from monitor.config import (
    AlertSettings,
    AppriseSettings,
    EmailSettings,
    Settings,
    TopicSettings,
    WebhookSettings,
)
from monitor.deliver import claim_lease, deliver_pending, retry_delay, send_test
from monitor.errors import UserError
from monitor.storage import Storage
from monitor.storage.alerts import AttemptRecord, claim_owner
from monitor.storage.base import parse_iso
from monitor.storage.schema import migrations
from tests.peers import (
    ReceivedRequest,
    RecordingHandler,
    Reply,
    SmtpPeer,
    WebhookReceiver,
    free_port,
    running_receiver,
)

pytest_plugins = ["tests.peers"]

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LATER = timedelta(hours=2)  # more than retry_max (1h) plus jitter: any retry is due again
SECRET = "whsec_" + "c2VjcmV0LXNpZ25pbmcta2V5LWZvci10ZXN0cw=="
ENV = {"HOOK_SECRET": SECRET}


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    store = Storage(tmp_path / "monitor.db")
    yield store
    store.close()


class Clock:
    """The time `deliver_pending` reads: fixed until a test (or a peer, as it answers) moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def settings(**alerts: Any) -> Settings:
    topic = TopicSettings(name="taliban", seeds=())
    return Settings(topics=(topic,), alerts=AlertSettings(**alerts))


def email(port: int, timeout: float = 5.0) -> EmailSettings:
    return EmailSettings(
        host="127.0.0.1",
        port=port,
        sender="monitor@example.org",
        recipients=("me@example.org",),
        timeout=timeout,
    )


def webhook(url: str) -> WebhookSettings:
    return WebhookSettings(url=url, secret_env="HOOK_SECRET", timeout=5.0)


def enqueue(storage: Storage, title: str, now: datetime = T0, topic: str = "taliban") -> str:
    return storage.enqueue_alert(
        kind="development",
        topic=topic,
        now=now,
        payload={
            "type": "development.new",
            "topic": topic,
            "story": {
                "id": "s_1",
                "url": "https://news.example.org/a",
                "title": title,
                "source": "Example News",
                "published": T0.isoformat(),
                "summary": "...",
            },
            "development": {"id": "d_1", "sources": ["Example News"]},
            "score": 0.8,
            "reasons": [],
        },
    )


def test_an_email_every_recipient_refused_is_sent_by_alerts_retry_once_the_server_accepts(
    storage: Storage, smtp_server: SmtpPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A "554 Relay access denied" until the login is set up: nobody received the alert, so
    `monitor alerts retry` afterwards sends it (it used to be marked delivered, unsent)."""
    config = settings(email=email(smtp_server.port))
    channels = build_channels(config.alerts, ENV)
    alert_id = enqueue(storage, "Refused, then sent")

    async def relay_denied(*args: Any) -> str:
        return "554 5.7.1 Relay access denied"

    with monkeypatch.context() as patch:
        patch.setattr(smtp_server.handler, "handle_RCPT", relay_denied)
        assert deliver_pending(storage, channels, config, Clock(T0)).failed == 1
    assert storage.alert_detail(alert_id)["status"] == "failed"
    storage.retry_alert(alert_id, T0 + LATER)  # the server fixed, the user retries
    assert deliver_pending(storage, channels, config, Clock(T0 + LATER)).delivered == 1
    assert [mail.message["Subject"] for mail in smtp_server.received] == [
        "[taliban] Refused, then sent"
    ]


def test_the_storage_needs_no_sqlite_newer_than_3_31() -> None:
    """Distributions still ship SQLite 3.31 to 3.34 (Ubuntu 20.04, Debian 11): no RETURNING
    (3.35), which made every delivery fail there."""
    package = Path(__file__).resolve().parents[1] / "monitor"
    for source in package.rglob("*.py"):
        assert "RETURNING" not in source.read_text(encoding="utf-8"), source


def test_smtp_down_then_up_every_alert_arrives_exactly_once(storage: Storage) -> None:
    port = free_port()  # nothing listens yet: connection refused
    config = settings(email=email(port))
    channels = build_channels(config.alerts, ENV)
    ids = [enqueue(storage, f"Story {n}") for n in range(3)]

    first = deliver_pending(storage, channels, config, Clock(T0))
    assert (first.delivered, first.retried, first.deferred) == (0, 1, 2)

    handler = RecordingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=port, ready_timeout=10.0)
    controller.start()
    try:
        second = deliver_pending(storage, channels, config, Clock(T0 + LATER))
        third = deliver_pending(storage, channels, config, Clock(T0 + 2 * LATER))
    finally:
        controller.stop()

    assert second.delivered == 3
    assert third.delivered == third.retried == third.failed == 0
    assert len(handler.received) == 3
    message_ids = [mail.message["Message-ID"] for mail in handler.received]
    assert len(set(message_ids)) == 3
    for alert_id in ids:
        detail = storage.alert_detail(alert_id)
        assert detail["status"] == "delivered"
        assert sum(alert_id in mid for mid in message_ids) == 1
    first_attempts = storage.alert_detail(ids[0])["attempts"]
    assert [a["outcome"] for a in first_attempts] == ["retry", "delivered"]
    assert "connection failed" in first_attempts[0]["error"]
    assert first_attempts[1]["status_code"].startswith("250")


def test_webhook_500_three_times_then_200(
    storage: Storage, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.program(500, 500, 500, 200)
    config = settings(webhooks=(webhook(webhook_receiver.url),))
    channels = build_channels(config.alerts, ENV)
    alert_id = enqueue(storage, "Russia removes the Taliban from its list")

    now = T0
    outcomes = []
    for _ in range(5):
        summary = deliver_pending(storage, channels, config, Clock(now))
        outcomes.append((summary.delivered, summary.retried))
        now += LATER
    assert outcomes == [(0, 1), (0, 1), (0, 1), (1, 0), (0, 0)]

    assert len(webhook_receiver.requests) == 4
    assert {r.headers["webhook-id"] for r in webhook_receiver.requests} == {alert_id}
    verifier = Webhook(SECRET)
    for request in webhook_receiver.requests:
        assert verifier.verify(request.body, request.headers)["id"] == alert_id
    detail = storage.alert_detail(alert_id)
    assert detail["status"] == "delivered"
    assert [a["outcome"] for a in detail["attempts"]] == ["retry"] * 3 + ["delivered"]
    assert [a["status_code"] for a in detail["attempts"]][:3] == ["500"] * 3
    assert all(a["duration_ms"] is not None for a in detail["attempts"])
    assert detail["deliveries"][0]["attempts"] == 4


def test_first_retry_waits_base_plus_jitter_and_retry_after_is_a_floor(
    storage: Storage, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.program(500, Reply(429, headers={"retry-after": "7200"}))
    config = settings(webhooks=(webhook(webhook_receiver.url),))
    channels = build_channels(config.alerts, ENV)
    first, second = enqueue(storage, "one"), enqueue(storage, "two")

    deliver_pending(storage, channels, config, Clock(T0))  # first: 500; second deferred
    due = parse_iso(storage.alert_detail(first)["deliveries"][0]["next_attempt_at"])
    assert due is not None
    assert T0 + timedelta(seconds=60) <= due <= T0 + timedelta(seconds=120)

    deliver_pending(storage, channels, config, Clock(T0 + timedelta(seconds=30)))  # second: 429
    due = parse_iso(storage.alert_detail(second)["deliveries"][0]["next_attempt_at"])
    assert due is not None
    assert due >= T0 + timedelta(seconds=30 + 7200)


def test_a_retry_after_holds_back_the_channels_other_alerts_until_then(
    storage: Storage, webhook_receiver: WebhookReceiver, smtp_server: SmtpPeer
) -> None:
    """A 429 asks the sender to wait: the next run does not send the receiver the alert
    that waited behind it (found by bench/durability.py), nor one raised during the wait
    (found by a review), though email carries on."""
    webhook_receiver.program(Reply(429, headers={"retry-after": "600"}))
    config = settings(webhooks=(webhook(webhook_receiver.url),), email=email(smtp_server.port))
    channels = build_channels(config.alerts, ENV)
    first, second = enqueue(storage, "one"), enqueue(storage, "two")

    deliver_pending(storage, channels, config, Clock(T0))  # first: 429; second deferred
    third = enqueue(storage, "three", now=T0 + timedelta(seconds=30))  # raised meanwhile
    summary = deliver_pending(storage, channels, config, Clock(T0 + timedelta(seconds=60)))
    assert [r.headers["webhook-id"] for r in webhook_receiver.requests] == [first]
    assert summary.delivered == 1 and len(smtp_server.received) == 3  # (the third's email)
    for waiting in (second, third):
        deliveries = storage.alert_detail(waiting)["deliveries"]
        hook = next(d for d in deliveries if d["channel"].startswith("webhook"))
        assert (hook["attempts"], hook["next_attempt_at"]) == (
            0,
            (T0 + timedelta(seconds=600)).isoformat(),
        )

    deliver_pending(storage, channels, config, Clock(T0 + LATER))
    sent = [r.headers["webhook-id"] for r in webhook_receiver.requests]
    assert sent == [first, first, second, third]
    assert {storage.alert_detail(a)["status"] for a in (first, second, third)} == {"delivered"}


def test_each_attempt_is_timed_from_its_reply_not_from_the_start_of_the_run(
    storage: Storage, webhook_receiver: WebhookReceiver
) -> None:
    """A run that spends ten minutes on each reply: the second alert's 429 asks for two
    minutes from its own reply, twenty minutes into the run."""
    clock = Clock(T0)
    webhook_receiver.on_request = lambda request: clock.advance(timedelta(minutes=10))
    webhook_receiver.program(204, Reply(429, headers={"retry-after": "120"}))
    config = settings(webhooks=(webhook(webhook_receiver.url),))
    channels = build_channels(config.alerts, ENV)
    first, second = enqueue(storage, "one"), enqueue(storage, "two")

    summary = deliver_pending(storage, channels, config, clock)
    assert (summary.delivered, summary.retried) == (1, 1)
    delivered = storage.alert_detail(first)
    assert delivered["delivered_at"] == (T0 + timedelta(minutes=10)).isoformat()
    assert delivered["attempts"][0]["attempted_at"] == (T0 + timedelta(minutes=10)).isoformat()
    retried = storage.alert_detail(second)
    assert retried["attempts"][0]["attempted_at"] == (T0 + timedelta(minutes=20)).isoformat()
    due = parse_iso(retried["deliveries"][0]["next_attempt_at"])
    assert due is not None and due >= T0 + timedelta(minutes=20, seconds=120)


def test_a_400_fails_at_once_and_shows_in_the_list_then_retry(
    storage: Storage, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.program(400)
    config = settings(webhooks=(webhook(webhook_receiver.url),))
    channels = build_channels(config.alerts, ENV)
    alert_id = enqueue(storage, "Bad request")

    summary = deliver_pending(storage, channels, config, Clock(T0))
    assert (summary.failed, summary.retried) == (1, 0)
    listed = storage.alerts_list(status="failed")
    assert [row["id"] for row in listed] == [alert_id]
    assert listed[0]["deliveries"][0]["status"] == "failed"
    assert "400" in listed[0]["deliveries"][0]["last_error"]
    assert storage.outbox_counts()["failed"] == 1

    assert storage.retry_alert(alert_id, T0 + LATER) == 1
    assert storage.alert_detail(alert_id)["status"] == "pending"
    summary = deliver_pending(storage, channels, config, Clock(T0 + LATER))
    assert summary.delivered == 1
    detail = storage.alert_detail(alert_id)
    assert detail["status"] == "delivered"
    assert [a["outcome"] for a in detail["attempts"]] == ["failed", "delivered"]
    with pytest.raises(UserError):
        storage.retry_alert(alert_id, T0 + LATER)
    with pytest.raises(UserError):
        storage.alert_detail("a_nope")


def test_black_hole_smtp_times_out_and_the_webhook_still_delivers(
    storage: Storage, smtp_blackhole: int, webhook_receiver: WebhookReceiver
) -> None:
    config = settings(
        email=email(smtp_blackhole, timeout=1.0), webhooks=(webhook(webhook_receiver.url),)
    )
    channels = build_channels(config.alerts, ENV)
    ids = [enqueue(storage, "one"), enqueue(storage, "two")]

    summary = deliver_pending(storage, channels, config, Clock(T0))
    assert (summary.delivered, summary.retried, summary.deferred) == (2, 1, 1)
    assert len(webhook_receiver.requests) == 2
    for alert_id in ids:
        detail = storage.alert_detail(alert_id)
        assert detail["status"] == "delivered"  # a channel confirmed it
        states = {d["channel"]: d["status"] for d in detail["deliveries"]}
        assert states["email"] == "pending"
    attempt = storage.alert_detail(ids[0])["attempts"][0]
    assert attempt["channel"] == "email" and attempt["outcome"] == "retry"
    assert "timed out" in attempt["error"]
    assert 900 <= attempt["duration_ms"] < 10_000
    assert storage.outbox_counts()["deliveries_pending"] == 2


def test_transient_failures_give_up_after_max_attempts(
    storage: Storage, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.default = Reply(503)
    config = settings(webhooks=(webhook(webhook_receiver.url),), max_attempts=3)
    channels = build_channels(config.alerts, ENV)
    alert_id = enqueue(storage, "never")
    for step in range(4):
        deliver_pending(storage, channels, config, Clock(T0 + step * LATER))
    detail = storage.alert_detail(alert_id)
    assert detail["status"] == "failed"
    assert [a["outcome"] for a in detail["attempts"]] == ["retry", "retry", "failed"]
    assert detail["deliveries"][0]["last_error"].startswith("gave up after 3 attempts")


def test_without_channels_alerts_wait(storage: Storage) -> None:
    enqueue(storage, "waiting")
    summary = deliver_pending(storage, [], settings(), Clock(T0))
    assert summary.no_channels and summary.waiting == 1
    assert "no alert channel is configured: 1 alerts wait" in summary.text()
    assert storage.outbox_counts()["pending"] == 1


class Broken:
    channel = "broken"

    def send(self, payload: Any, done: frozenset[str] = frozenset()) -> str:
        raise RuntimeError("a bug in a notifier")


def test_a_notifier_bug_is_recorded_and_does_not_stop_the_others(
    storage: Storage, webhook_receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    config = settings(webhooks=(webhook(webhook_receiver.url),))
    channels = [Broken(), *build_channels(config.alerts, ENV)]
    alert_id = enqueue(storage, "bug")
    summary = deliver_pending(storage, channels, config, Clock(T0))
    assert (summary.delivered, summary.failed, summary.bugs) == (1, 1, 1)
    states = {d["channel"]: d for d in storage.alert_detail(alert_id)["deliveries"]}
    assert states["broken"]["status"] == "failed"
    assert "RuntimeError: a bug in a notifier" in states["broken"]["last_error"]
    assert "Traceback" in caplog.text


def test_alerts_test_reports_every_channel(
    webhook_receiver: WebhookReceiver, closed_port: int
) -> None:
    config = settings(email=email(closed_port), webhooks=(webhook(webhook_receiver.url),))
    results = send_test(build_channels(config.alerts, ENV), T0)
    assert [(channel, ok) for channel, ok, _ in results] == [
        ("email", False),
        (f"webhook:127.0.0.1:{webhook_receiver.port}", True),
    ]
    assert results[1][2] == "HTTP 204"
    body = json.loads(webhook_receiver.requests[0].body)
    assert body["type"] == "test"


def test_retry_delay_grows_is_capped_and_respects_retry_after() -> None:
    alerts = AlertSettings(retry_base=60, retry_max=3600)
    for attempt, low in [(1, 60), (2, 120), (3, 240)]:
        assert low <= retry_delay(attempt, alerts) <= low + 60
    assert retry_delay(20, alerts) == 3600
    assert retry_delay(1, alerts, retry_after=900) == 900
    assert retry_delay(1, alerts, retry_after=10**9) == 86400


def test_cli_helpers_return_data_and_text(
    storage: Storage, webhook_receiver: WebhookReceiver
) -> None:
    from monitor.alerts_cli import check_channels, list_alerts, retry_alert, show_alert

    webhook_receiver.program(400)
    config = settings(webhooks=(webhook(webhook_receiver.url),))
    channels = build_channels(config.alerts, ENV)
    alert_id = enqueue(storage, "Shown story")
    _, text = show_alert(storage, alert_id)
    assert "deliveries: none yet" in text and "attempts:" not in text
    deliver_pending(storage, channels, config, Clock(T0))

    rows, text = list_alerts(storage, status="failed")
    assert [row["id"] for row in rows] == [alert_id]
    assert alert_id in text and "Shown story" in text and "failed" in text
    detail, text = show_alert(storage, alert_id)
    assert detail["id"] == alert_id
    assert "attempts:" in text and "400" in text and SECRET not in text
    message = text.split("\nmessage:\n", 1)[1]  # what the alert says, as sent
    assert "    Subject: [taliban] Shown story\n" in message
    assert f"    -- monitor · alert {alert_id}" in message
    count, text = retry_alert(storage, alert_id, T0 + LATER)
    assert count == 1 and "1 failed delivery queued again" in text
    results, text = check_channels(channels, T0)
    assert results[0]["ok"] and "OK HTTP 204" in text
    assert list_alerts(storage, status="held") == ([], "no alerts with status held")


class Crash(BaseException):
    """Stands for SIGKILL: nothing after it runs, not even `except Exception`."""


def test_a_crash_after_sending_resends_with_the_same_webhook_id(
    storage: Storage, webhook_receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = settings(webhooks=(webhook(webhook_receiver.url),))
    channels = build_channels(config.alerts, ENV)
    alert_id = enqueue(storage, "Sent, never recorded")

    def crash(record: Any) -> str:
        raise Crash

    with monkeypatch.context() as patch:
        patch.setattr(storage, "record_attempt", crash)
        with pytest.raises(Crash):
            deliver_pending(storage, channels, config, Clock(T0))
    assert storage.alert_detail(alert_id)["status"] == "pending"  # not recorded: not alerted

    summary = deliver_pending(storage, channels, config, Clock(T0 + timedelta(minutes=1)))
    assert summary.delivered == 1
    ids = [request.headers["webhook-id"] for request in webhook_receiver.requests]
    assert ids == [alert_id, alert_id]  # at least once, and recognisably the same alert


def test_two_processes_delivering_at_once_send_each_alert_once(
    tmp_path: Path, storage: Storage, webhook_receiver: WebhookReceiver
) -> None:
    """The daemon and a `monitor poll` on one database (two connections): while the first
    sends alert one, the second delivers what is left; the first then finds alert two,
    which it had read as due, already sent."""
    config = settings(webhooks=(webhook(webhook_receiver.url),))
    ids = [enqueue(storage, "one"), enqueue(storage, "two")]
    other = Storage(tmp_path / "monitor.db")
    runs = []

    def meanwhile(request: ReceivedRequest) -> None:
        if len(runs) == 0 and request.headers["webhook-id"] == ids[0]:
            runs.append(None)
            channels = build_channels(config.alerts, ENV)
            runs.append(deliver_pending(other, channels, config, Clock(T0)))

    webhook_receiver.on_request = meanwhile
    try:
        first = deliver_pending(storage, build_channels(config.alerts, ENV), config, Clock(T0))
    finally:
        other.close()

    sent = [request.headers["webhook-id"] for request in webhook_receiver.requests]
    assert sorted(sent) == sorted(ids)
    second = runs[1]
    assert (first.delivered, first.elsewhere) == (1, 1)
    assert (second.delivered, second.elsewhere) == (1, 0)
    assert "1 left to another process" in first.text()
    for alert_id in ids:
        detail = storage.alert_detail(alert_id)
        assert detail["status"] == "delivered"
        assert [a["outcome"] for a in detail["attempts"]] == ["delivered"]


def test_a_claim_left_by_a_dead_process_lapses_and_nothing_is_lost(
    storage: Storage, webhook_receiver: WebhookReceiver
) -> None:
    config = settings(webhooks=(webhook(webhook_receiver.url),))
    channels = build_channels(config.alerts, ENV)
    alert_id = enqueue(storage, "claimed, then the claimer died")
    storage.open_deliveries(alert_id, [channels[0].channel], T0)
    [due] = storage.pending_deliveries(T0)
    lease = claim_lease(config.alerts)
    assert storage.claim_delivery(due, "cli:1:dead", T0, T0 + lease) == due
    assert storage.claim_delivery(due, "cli:2:late", T0, T0 + lease) is None

    during = deliver_pending(storage, channels, config, Clock(T0 + lease / 2))
    assert during.delivered == 0 and webhook_receiver.requests == []
    after = deliver_pending(storage, channels, config, Clock(T0 + lease))
    assert after.delivered == 1
    assert [r.headers["webhook-id"] for r in webhook_receiver.requests] == [alert_id]

    # the dead process's attempt, were it recorded after all, changes nothing: its claim
    # had lapsed, and the delivery was confirmed since
    storage.record_attempt(
        AttemptRecord(
            delivery_id=due.id, attempted_at=T0 + lease, outcome="failed", owner="cli:1:dead"
        )
    )
    detail = storage.alert_detail(alert_id)
    assert (detail["status"], detail["deliveries"][0]["status"]) == ("delivered", "delivered")
    assert [a["outcome"] for a in detail["attempts"]] == ["delivered", "failed"]


def test_a_starting_daemon_takes_back_what_a_dead_daemon_claimed(storage: Storage) -> None:
    alert_id = enqueue(storage, "claimed by a daemon killed while sending")
    storage.open_deliveries(alert_id, ["email", "webhook:x"], T0)
    by_daemon, by_poll = storage.pending_deliveries(T0)
    until = T0 + timedelta(hours=1)
    storage.claim_delivery(by_daemon, claim_owner(daemon=True), T0, until)
    storage.claim_delivery(by_poll, claim_owner(), T0, until)
    assert storage.release_daemon_claims() == 1
    assert storage.pending_deliveries(T0) == [by_daemon]


def test_deliveries_pending_before_the_claims_existed_are_sent(
    tmp_path: Path, webhook_receiver: WebhookReceiver
) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        migrations.apply(Database(conn), stop_before="m015_delivery_claims")
        conn.execute(
            "INSERT INTO alerts (id, kind, payload, status, created_at) "
            "VALUES ('a_old', 'test', '{\"type\": \"test\", \"id\": \"a_old\"}', 'pending', ?)",
            [T0.isoformat()],
        )
        conn.execute(
            "INSERT INTO deliveries (alert_id, channel, status, attempts, next_attempt_at) "
            "VALUES ('a_old', ?, 'pending', 1, ?)",
            [f"webhook:127.0.0.1:{webhook_receiver.port}", T0.isoformat()],
        )
    finally:
        conn.close()
    config = settings(webhooks=(webhook(webhook_receiver.url),))
    store = Storage(path)
    try:
        summary = deliver_pending(store, build_channels(config.alerts, ENV), config, Clock(T0))
        assert summary.delivered == 1
        assert store.alert_detail("a_old")["deliveries"][0]["attempts"] == 2
    finally:
        store.close()
    assert [r.headers["webhook-id"] for r in webhook_receiver.requests] == ["a_old"]


def recipients(port: int, *addresses: str) -> EmailSettings:
    return replace(email(port), recipients=addresses)


def test_a_greylisted_recipient_gets_the_alert_on_retry_and_the_others_once(
    storage: Storage, smtp_server: SmtpPeer
) -> None:
    smtp_server.handler.greylist["boss@example.org"] = 1
    everyone = ("me@example.org", "boss@example.org", "refuse-x@example.org")
    config = settings(email=recipients(smtp_server.port, *everyone))
    channels = build_channels(config.alerts, ENV)
    alert_id = enqueue(storage, "Greylisted")

    first = deliver_pending(storage, channels, config, Clock(T0))
    assert (first.delivered, first.retried) == (0, 1)
    detail = storage.alert_detail(alert_id)
    assert detail["status"] == "delivered"  # me has it: a channel confirmed it
    assert detail["deliveries"][0]["status"] == "pending"
    second = deliver_pending(storage, channels, config, Clock(T0 + LATER))
    third = deliver_pending(storage, channels, config, Clock(T0 + 2 * LATER))
    assert (second.delivered, third.delivered, third.retried) == (1, 0, 0)

    assert [mail.rcpt_tos for mail in smtp_server.received] == [
        ["me@example.org"],
        ["boss@example.org"],
    ]
    assert smtp_server.handler.rcpts.count("refuse-x@example.org") == 1  # 550: never again
    detail = storage.alert_detail(alert_id)
    assert [a["outcome"] for a in detail["attempts"]] == ["retry", "delivered"]
    assert "boss@example.org (450" in detail["attempts"][0]["error"]
    assert "refuse-x@example.org (550" in detail["attempts"][0]["error"]
    assert detail["deliveries"][0]["status"] == "delivered"


def test_a_recipient_deferred_does_not_hold_back_the_other_alerts_of_the_run(
    storage: Storage, smtp_server: SmtpPeer
) -> None:
    """A greylisting server answers and refuses one recipient for now: the channel works,
    so the run goes on with the other alerts (a server that does not answer costs one
    attempt a run, as before)."""
    config = settings(email=recipients(smtp_server.port, "defer-boss@example.org"))
    channels = build_channels(config.alerts, ENV)
    for n in range(3):
        enqueue(storage, f"Deferred {n}")
    summary = deliver_pending(storage, channels, config, Clock(T0))
    assert (summary.retried, summary.deferred) == (3, 0)
    assert smtp_server.handler.rcpts == ["defer-boss@example.org"] * 3


def test_a_recipient_deferred_to_the_end_fails_alone(
    storage: Storage, smtp_server: SmtpPeer
) -> None:
    config = settings(
        email=recipients(smtp_server.port, "me@example.org", "defer-boss@example.org"),
        max_attempts=2,
    )
    channels = build_channels(config.alerts, ENV)
    alert_id = enqueue(storage, "Never for the boss")
    for step in range(3):
        deliver_pending(storage, channels, config, Clock(T0 + step * LATER))

    assert [mail.rcpt_tos for mail in smtp_server.received] == [["me@example.org"]]
    assert smtp_server.handler.rcpts == ["me@example.org", *["defer-boss@example.org"] * 2]
    detail = storage.alert_detail(alert_id)
    assert detail["status"] == "delivered"
    delivery = detail["deliveries"][0]
    assert delivery["status"] == "failed"
    assert delivery["last_error"].startswith("gave up after 2 attempts")
    assert "defer-boss@example.org (450" in delivery["last_error"]
    assert [a["outcome"] for a in detail["attempts"]] == ["retry", "failed"]


# --- apprise: each URL a service of its own ------------------------------------------------


@pytest.fixture
def second_receiver() -> Iterator[WebhookReceiver]:
    yield from running_receiver()


def apprise_urls(*receivers: WebhookReceiver) -> tuple[str, ...]:
    """Apprise's json:// posts to the local receivers (with a token, which must stay out
    of the database and the messages)."""
    return tuple(
        f"json://user:tok3n-{n}@127.0.0.1:{r.port}/svc{n}?cto=2&rto=2"
        for n, r in enumerate(receivers)
    )


def titles(receiver: WebhookReceiver) -> list[str]:
    return [json.loads(request.body)["title"] for request in receiver.requests]


def test_an_apprise_service_failing_is_retried_alone_and_the_other_gets_the_alert_once(
    tmp_path: Path, webhook_receiver: WebhookReceiver, second_receiver: WebhookReceiver
) -> None:
    """Two services on one channel, the second answering 500 once: its retry, after a
    restart and with the URLs listed the other way round, goes to it alone."""
    working, failing = webhook_receiver, second_receiver
    working.default = failing.default = Reply(200)
    failing.program(500)
    urls = apprise_urls(working, failing)
    config = settings(apprise=(AppriseSettings(urls=urls),))
    path = tmp_path / "monitor.db"

    store = Storage(path)
    try:
        alert_id = enqueue(store, "Half delivered")
        first = deliver_pending(store, build_channels(config.alerts, ENV), config, Clock(T0))
        assert (first.delivered, first.retried) == (0, 1)
        detail = store.alert_detail(alert_id)
        assert detail["status"] == "delivered"  # the working service has it
        assert detail["deliveries"][0]["status"] == "pending"
        error = detail["attempts"][0]["error"]
        assert "could not deliver to json #2" in error and "sent to json #1" in error
    finally:
        store.close()
    assert titles(working) == titles(failing) == ["[taliban] Half delivered"]

    reordered = settings(apprise=(AppriseSettings(urls=urls[::-1]),))
    store = Storage(path)  # a restart: a new process on the same database
    try:
        later = Clock(T0 + LATER)
        second = deliver_pending(store, build_channels(reordered.alerts, ENV), reordered, later)
        third = deliver_pending(store, build_channels(reordered.alerts, ENV), reordered, later)
        assert (second.delivered, third.delivered, third.retried) == (1, 0, 0)
        detail = store.alert_detail(alert_id)
        [delivery] = detail["deliveries"]
        assert delivery["status"] == "delivered"
        assert delivery["confirmation"] == "apprise: sent to 1 service (1 in earlier attempts)"
        assert [a["outcome"] for a in detail["attempts"]] == ["retry", "delivered"]
        (done,) = store.db.execute("SELECT recipients_done FROM deliveries").fetchone()
    finally:
        store.close()
    assert titles(working) == ["[taliban] Half delivered"]  # once, in total
    assert titles(failing) == ["[taliban] Half delivered"] * 2
    assert len(json.loads(done)) == 1
    assert "tok3n" not in done and "127.0.0.1" not in done and "svc" not in done
    assert "tok3n" not in error
    assert b"tok3n" not in path.read_bytes()  # closed: everything is in the main file

    # once both work, an alert reaches each of them once
    store = Storage(path)
    try:
        enqueue(store, "Everyone", now=T0 + LATER)
        summary = deliver_pending(
            store, build_channels(config.alerts, ENV), config, Clock(T0 + LATER)
        )
        assert summary.delivered == 1
        assert store.alerts_list(limit=1)[0]["deliveries"][0]["confirmation"] == (
            "apprise: sent to 2 services"
        )
    finally:
        store.close()
    assert titles(working).count("[taliban] Everyone") == 1
    assert titles(failing).count("[taliban] Everyone") == 1


def test_apprise_services_all_failing_settle_none_then_each_gets_the_alert_once(
    storage: Storage, webhook_receiver: WebhookReceiver, second_receiver: WebhookReceiver
) -> None:
    first, second = webhook_receiver, second_receiver
    first.default = second.default = Reply(200)
    first.program(500)
    second.program(500, 500)
    config = settings(apprise=(AppriseSettings(urls=apprise_urls(first, second)),))
    channels = build_channels(config.alerts, ENV)
    alert_id = enqueue(storage, "Nobody at first")

    runs = [deliver_pending(storage, channels, config, Clock(T0 + n * LATER)) for n in range(4)]
    assert [(run.delivered, run.retried) for run in runs] == [(0, 1), (0, 1), (1, 0), (0, 0)]
    assert len(first.requests) == 2  # 500, then 200; never again
    assert len(second.requests) == 3  # 500, 500, 200
    detail = storage.alert_detail(alert_id)
    assert [a["outcome"] for a in detail["attempts"]] == ["retry", "retry", "delivered"]
    assert "json #1, json #2" in detail["attempts"][0]["error"]  # neither took it
    assert "sent to" not in detail["attempts"][0]["error"]


def test_an_apprise_service_failing_does_not_hold_back_the_others_alerts(
    storage: Storage, webhook_receiver: WebhookReceiver, second_receiver: WebhookReceiver
) -> None:
    """While one service of a channel takes alerts, the run goes on with the channel's other
    alerts (a channel whose every service fails is still left for the next run)."""
    working, failing = webhook_receiver, second_receiver
    working.default, failing.default = Reply(200), Reply(500)
    config = settings(apprise=(AppriseSettings(urls=apprise_urls(working, failing)),))
    channels = build_channels(config.alerts, ENV)
    for n in range(3):
        enqueue(storage, f"Alert {n}")

    summary = deliver_pending(storage, channels, config, Clock(T0))
    assert (summary.retried, summary.deferred) == (3, 0)
    assert sorted(titles(working)) == [f"[taliban] Alert {n}" for n in range(3)]
    later = deliver_pending(storage, channels, config, Clock(T0 + LATER))
    assert (later.retried, later.deferred) == (3, 0)  # the failing one alone, for each
    assert len(working.requests) == 3 and len(failing.requests) == 6
