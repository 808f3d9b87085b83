"""WebhookNotifier and AppriseNotifier against a real local HTTP receiver (tests/peers.py)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from standardwebhooks import Webhook

from monitor.errors import DeliveryError, WebhookError
from monitor.notify.apprise import AppriseNotifier
from monitor.notify.base import Notifier, parse_retry_after
from monitor.notify.webhook import WebhookNotifier, decode_secret
from monitor.render import webhook_body
from tests.peers import Reply, WebhookReceiver
from tests.test_render import development_alert

WHSEC = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
NOW = 1_750_000_000.0


@pytest.fixture
def hook(webhook_receiver: WebhookReceiver) -> Iterator[WebhookNotifier]:
    notifier = WebhookNotifier(webhook_receiver.url, WHSEC, timeout=2.0)
    yield notifier
    notifier.close()


def test_is_a_notifier(hook: WebhookNotifier, webhook_receiver: WebhookReceiver) -> None:
    assert isinstance(hook, Notifier)
    assert hook.channel == f"webhook:127.0.0.1:{webhook_receiver.port}"
    assert (
        WebhookNotifier("https://hooks.example.org/x", "s").channel == "webhook:hooks.example.org"
    )
    assert WebhookNotifier("https://h.example/x", "s", name="two").channel == "webhook:two"


def test_delivery_is_signed_per_standard_webhooks(
    hook: WebhookNotifier, webhook_receiver: WebhookReceiver
) -> None:
    assert hook.send(development_alert()) == "HTTP 204"
    [request] = webhook_receiver.requests
    assert request.path == "/hook"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == "a_0123456789abcdef"
    assert request.headers["user-agent"].startswith("monitor/")
    assert request.body == webhook_body(development_alert())
    verified = Webhook(WHSEC).verify(request.body, request.headers)
    assert verified == development_alert()


def test_plain_secret_uses_its_utf8_bytes(webhook_receiver: WebhookReceiver) -> None:
    secret = "not base64 — plain pass phrase"
    notifier = WebhookNotifier(webhook_receiver.url, secret, timeout=2.0)
    try:
        notifier.send(development_alert())
    finally:
        notifier.close()
    request = webhook_receiver.requests[0]
    Webhook(secret.encode("utf-8")).verify(request.body, request.headers)


def test_tampered_body_does_not_verify(
    hook: WebhookNotifier, webhook_receiver: WebhookReceiver
) -> None:
    hook.send(development_alert())
    request = webhook_receiver.requests[0]
    with pytest.raises(Exception, match="signature"):
        Webhook(WHSEC).verify(request.body.replace(b"Taliban", b"Talibam"), request.headers)


def test_retries_keep_the_webhook_id_and_re_sign(webhook_receiver: WebhookReceiver) -> None:
    clock = iter([NOW, NOW, NOW + 60, NOW + 60]).__next__
    webhook_receiver.program(500)
    notifier = WebhookNotifier(webhook_receiver.url, WHSEC, timeout=2.0, clock=clock)
    try:
        with pytest.raises(WebhookError):
            notifier.send(development_alert())
        assert notifier.send(development_alert()) == "HTTP 204"
    finally:
        notifier.close()
    first, second = webhook_receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == "a_0123456789abcdef"
    assert first.headers["webhook-timestamp"] == str(int(NOW))
    assert second.headers["webhook-timestamp"] == str(int(NOW + 60))


def test_sequence_of_failures_then_success(
    hook: WebhookNotifier, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.program(500, 500, 500, 200)
    outcomes: list[str] = []
    for _ in range(4):
        try:
            outcomes.append(hook.send(development_alert()))
        except WebhookError as error:
            assert error.transient
            outcomes.append(f"error {error.status}")
    assert outcomes == ["error 500", "error 500", "error 500", "HTTP 200"]
    assert len(webhook_receiver.requests) == 4


def test_500_is_transient_with_status(
    hook: WebhookNotifier, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.program(Reply(500, body=b"database is down\n\nsorry"))
    with pytest.raises(WebhookError) as caught:
        hook.send(development_alert())
    error = caught.value
    assert error.transient and error.status == "500" and error.retry_after is None
    assert "HTTP 500: database is down sorry" in str(error)


def test_429_with_retry_after_seconds(
    hook: WebhookNotifier, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.program(Reply(429, headers={"Retry-After": "120"}))
    with pytest.raises(WebhookError) as caught:
        hook.send(development_alert())
    assert caught.value.transient
    assert caught.value.status == "429"
    assert caught.value.retry_after == 120.0


def test_503_with_retry_after_date(webhook_receiver: WebhookReceiver) -> None:
    later = datetime.fromtimestamp(NOW, UTC) + timedelta(seconds=90)
    webhook_receiver.program(Reply(503, headers={"Retry-After": format_datetime(later, True)}))
    notifier = WebhookNotifier(webhook_receiver.url, WHSEC, timeout=2.0, clock=lambda: NOW)
    try:
        with pytest.raises(WebhookError) as caught:
            notifier.send(development_alert())
    finally:
        notifier.close()
    assert caught.value.transient
    assert caught.value.retry_after == 90.0


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
def test_other_4xx_is_permanent(
    hook: WebhookNotifier, webhook_receiver: WebhookReceiver, status: int
) -> None:
    webhook_receiver.program(Reply(status, headers={"Retry-After": "5"}))
    with pytest.raises(WebhookError) as caught:
        hook.send(development_alert())
    assert not caught.value.transient
    assert caught.value.status == str(status)
    assert caught.value.retry_after is None


def test_408_is_transient(hook: WebhookNotifier, webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.program(408)
    with pytest.raises(WebhookError) as caught:
        hook.send(development_alert())
    assert caught.value.transient


def test_redirect_is_not_followed(hook: WebhookNotifier, webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.program(Reply(308, headers={"Location": "http://127.0.0.1:1/elsewhere"}))
    with pytest.raises(WebhookError) as caught:
        hook.send(development_alert())
    assert not caught.value.transient
    assert "not followed" in str(caught.value)
    assert len(webhook_receiver.requests) == 1


def refused(receiver: WebhookReceiver, timeout: float) -> WebhookError:
    """The error one send to ``receiver`` raises (its notifier closed afterwards)."""
    notifier = WebhookNotifier(receiver.url, WHSEC, timeout=timeout)
    try:
        with pytest.raises(WebhookError) as caught:
            notifier.send(development_alert())
    finally:
        notifier.close()
    return caught.value


def test_timeout_is_transient(webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.program(Reply(hang=True))
    started = time.monotonic()
    caught = refused(webhook_receiver, timeout=0.5)
    assert caught.transient
    assert "timed out" in str(caught)
    assert time.monotonic() - started < 5.0


def test_a_receiver_trickling_its_answer_is_cut_at_the_timeout(
    webhook_receiver: WebhookReceiver,
) -> None:
    """Each byte of the status line and headers comes well within the timeout, but the
    answer as a whole would take eight times as long: the request is a timed-out one."""
    padding = {"x-padding": "p" * 40}
    webhook_receiver.program(Reply(200, headers=padding, drip=0.05))
    caught = refused(webhook_receiver, timeout=0.5)
    assert caught.transient
    assert "timed out after 0.5s" in str(caught)


def test_an_error_trickling_its_body_keeps_its_status_and_what_came(
    webhook_receiver: WebhookReceiver,
) -> None:
    webhook_receiver.program(Reply(503, body=b"x" * 40, drip_body=0.05))
    caught = refused(webhook_receiver, timeout=0.5)
    assert caught.transient and caught.status == "503"
    detail = str(caught).split("HTTP 503: ", 1)[1]
    assert 0 < len(detail) < 40 and set(detail) == {"x"}


def test_connection_refused_is_transient(closed_port: int) -> None:
    notifier = WebhookNotifier(f"http://127.0.0.1:{closed_port}/hook", WHSEC, timeout=1.0)
    try:
        with pytest.raises(WebhookError) as caught:
            notifier.send(development_alert())
    finally:
        notifier.close()
    assert caught.value.transient
    assert caught.value.status is None


def test_shared_client_is_used_and_not_closed(webhook_receiver: WebhookReceiver) -> None:
    with httpx.Client() as client:
        notifier = WebhookNotifier(webhook_receiver.url, "plain", client=client)
        assert notifier.send(development_alert()) == "HTTP 204"
        notifier.close()
        assert not client.is_closed


def test_secret_never_in_errors(webhook_receiver: WebhookReceiver) -> None:
    secret = "s3cr3t-token"
    webhook_receiver.program(Reply(400, body=f"bad signature for {secret}".encode()))
    notifier = WebhookNotifier(webhook_receiver.url, secret, timeout=2.0)
    try:
        with pytest.raises(WebhookError) as caught:
            notifier.send(development_alert())
    finally:
        notifier.close()
    assert secret not in str(caught.value)
    assert secret not in repr(notifier)


def test_secret_decoding() -> None:
    assert decode_secret(WHSEC) == b"0123456789abcdef0123456789abcdef"
    assert decode_secret("whsec_" + base64.b64encode(b"key!").decode().rstrip("=")) == b"key!"
    assert decode_secret("plain") == b"plain"
    for bad in ["", "whsec_", "whsec_***not base64***"]:
        with pytest.raises(ValueError):
            decode_secret(bad)
    with pytest.raises(ValueError, match="http"):
        WebhookNotifier("ftp://example.org/x", "s")


def test_parse_retry_after() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("", now) is None
    assert parse_retry_after("30", now) == 30.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("-5", now) is None
    assert parse_retry_after("Wed, 01 Jan 2025 00:01:00 GMT", now) == 60.0
    assert parse_retry_after("Tue, 31 Dec 2024 00:00:00 GMT", now) == 0.0
    assert parse_retry_after("99999999", now) == 24 * 3600.0


# --- apprise, through the same receiver ----------------------------------------------------


def test_apprise_json_to_local_receiver(webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.default = Reply(200)
    url = f"json://127.0.0.1:{webhook_receiver.port}/apprise?cto=2&rto=2"
    notifier = AppriseNotifier([url], 0)
    assert isinstance(notifier, Notifier)
    assert notifier.channel == "apprise:0"
    assert notifier.send(development_alert()) == "apprise: sent to 1 service"
    [request] = webhook_receiver.requests
    assert request.path == "/apprise"
    sent = json.loads(request.body)
    assert sent["title"] == "[taliban-delisting] Russia's Supreme Court lifts ban on the Taliban"
    assert "monitor feedback s_42 not-new" in sent["message"]


def test_apprise_failure_is_transient_and_hides_the_url(
    webhook_receiver: WebhookReceiver,
) -> None:
    webhook_receiver.program(500)
    url = f"json://user:tok3n@127.0.0.1:{webhook_receiver.port}/apprise?cto=2&rto=2"
    notifier = AppriseNotifier([url], 3)
    with pytest.raises(DeliveryError) as caught:
        notifier.send(development_alert())
    assert caught.value.transient
    assert "tok3n" not in str(caught.value) and "tok3n" not in repr(notifier)
    assert "json" in str(caught.value)


def test_apprise_rejects_an_invalid_url() -> None:
    with pytest.raises(ValueError, match="#1"):
        AppriseNotifier(["nonsense-scheme://x"], 0)


def test_apprise_url_listed_twice_is_one_service(webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.default = Reply(200)
    url = f"json://127.0.0.1:{webhook_receiver.port}/apprise?cto=2&rto=2"
    notifier = AppriseNotifier([url, url], 0)
    assert notifier.send(development_alert()) == "apprise: sent to 1 service"
    assert len(webhook_receiver.requests) == 1
