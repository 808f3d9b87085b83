"""Secrets come from the environment and go nowhere else: not into logs, not into what
`alerts show` / `status` print, not into the database file (its -wal and -shm included)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.channels import build_channels
from monitor.config import (
    AlertSettings,
    AppriseSettings,
    EmailSettings,
    Settings,
    TopicSettings,
    WebhookSettings,
)
from monitor.deliver import deliver_pending
from monitor.errors import ConfigError
from monitor.status import collect_status
from monitor.storage import Storage
from tests.peers import SMTP_PASSWORD, SMTP_USER, SmtpPeer, TlsFiles, WebhookReceiver

pytest_plugins = ["tests.peers"]

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HOOK_SECRET = "hook-secret-Zq8u2LkP0x"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "monitor.db"


@pytest.fixture
def storage(db_path: Path) -> Iterator[Storage]:
    store = Storage(db_path)
    yield store
    store.close()


def enqueue(storage: Storage, title: str) -> str:
    return storage.enqueue_alert(
        kind="development",
        topic="taliban",
        now=T0,
        payload={
            "type": "development.new",
            "topic": "taliban",
            "story": {"id": "s_1", "url": "https://news.example.org/1", "title": title},
        },
    )


def raw_database(db_path: Path) -> bytes:
    data = b""
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{db_path}{suffix}")
        if path.exists():
            data += path.read_bytes()
    return data


def test_no_secret_in_logs_output_or_database(
    storage: Storage,
    db_path: Path,
    smtp_tls_server: SmtpPeer,
    tls_files: TlsFiles,
    webhook_receiver: WebhookReceiver,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files.cert))  # trust the test certificate
    env = {"SMTP_USER": SMTP_USER, "SMTP_PASSWORD": SMTP_PASSWORD, "HOOK_SECRET": HOOK_SECRET}
    settings = Settings(
        topics=(TopicSettings(name="taliban", seeds=()),),
        alerts=AlertSettings(
            email=EmailSettings(
                host="localhost",
                port=smtp_tls_server.port,
                recipients=("me@example.org",),
                security="starttls",
                username_env="SMTP_USER",
                password_env="SMTP_PASSWORD",
                timeout=5,
            ),
            webhooks=(WebhookSettings(url=webhook_receiver.url, secret_env="HOOK_SECRET"),),
        ),
    )
    channels = build_channels(settings.alerts, env)
    webhook_receiver.program(500)  # one failure, so an error is logged and recorded
    alert_id = enqueue(storage, "A story")
    deliver_pending(storage, channels, settings, lambda: T0)
    deliver_pending(storage, channels, settings, lambda: T0 + timedelta(hours=2))

    detail = storage.alert_detail(alert_id)
    assert {d["channel"]: d["status"] for d in detail["deliveries"]} == {
        "email": "delivered",
        f"webhook:127.0.0.1:{webhook_receiver.port}": "delivered",
    }
    assert smtp_tls_server.received[0].authenticated_as == SMTP_USER

    shown = json.dumps(detail, default=str)
    listed = json.dumps(storage.alerts_list(), default=str)
    status = json.dumps(collect_status(storage, settings, T0), default=str)
    stored = raw_database(db_path)
    for secret in (SMTP_PASSWORD, HOOK_SECRET):
        assert secret not in caplog.text
        assert secret not in shown and secret not in listed and secret not in status
        assert secret.encode() not in stored
    assert repr(channels).count(SMTP_PASSWORD) == 0


def test_a_refused_login_does_not_leak_the_password(
    storage: Storage,
    db_path: Path,
    smtp_tls_server: SmtpPeer,
    tls_files: TlsFiles,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files.cert))
    wrong = "wrong-password-Hx71"
    settings = Settings(
        alerts=AlertSettings(
            email=EmailSettings(
                host="localhost",
                port=smtp_tls_server.port,
                recipients=("me@example.org",),
                security="starttls",
                username_env="U",
                password_env="P",
                timeout=5,
            )
        )
    )
    channels = build_channels(settings.alerts, {"U": SMTP_USER, "P": wrong})
    alert_id = enqueue(storage, "A story")
    summary = deliver_pending(storage, channels, settings, lambda: T0)
    assert summary.failed == 1
    detail = storage.alert_detail(alert_id)
    assert detail["status"] == "failed"
    assert "535" in detail["deliveries"][0]["last_error"]
    assert wrong not in caplog.text and wrong not in json.dumps(detail)
    assert wrong.encode() not in raw_database(db_path)


@pytest.mark.parametrize(
    ("alerts", "env", "message"),
    [
        (
            AlertSettings(
                email=EmailSettings(recipients=("a@b.c",), password_env="PW", username_env="USER")
            ),
            {"USER": "u"},
            "alerts.email.password_env: the environment variable PW is not set",
        ),
        (
            AlertSettings(
                webhooks=(WebhookSettings(url="https://h.example.org/x", secret_env="HOOK"),)
            ),
            {"HOOK": ""},
            "alerts.webhooks[0].secret_env: the environment variable HOOK is not set",
        ),
        (
            AlertSettings(webhooks=(WebhookSettings(url="https://h.example.org/x"),)),
            {},
            "alerts.webhooks[0].secret_env: missing",
        ),
        (
            AlertSettings(apprise=(AppriseSettings(urls=(), urls_env="APPRISE_URLS"),)),
            {},
            "alerts.apprise[0].urls_env: the environment variable APPRISE_URLS is not set",
        ),
        (
            AlertSettings(email=EmailSettings(recipients=())),
            {},
            "alerts.email: at least one recipient is needed",
        ),
    ],
)
def test_a_missing_secret_is_a_clear_config_error(
    alerts: AlertSettings, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        build_channels(alerts, env, source=Path("config/monitor.toml"))
    assert str(caught.value).startswith(f"config/monitor.toml: {message}")


def test_webhooks_on_one_host_get_distinct_channel_names() -> None:
    alerts = AlertSettings(
        webhooks=(
            WebhookSettings(url="https://hooks.example.org/a", secret_env="S"),
            WebhookSettings(url="https://hooks.example.org/b", secret_env="S"),
            WebhookSettings(url="https://other.example.org/c?token=abc", secret_env="S"),
        )
    )
    names = [c.channel for c in build_channels(alerts, {"S": "a-secret-value"})]
    assert names == [
        "webhook:hooks.example.org/0",
        "webhook:hooks.example.org/1",
        "webhook:other.example.org",
    ]
