"""Deliver alerts as signed JSON POSTs (Standard Webhooks), with httpx.

This module only signs and posts the body from ``monitor.render.webhook_body`` and turns
the outcome into a confirmation or a ``WebhookError``. It must not import storage, fetching
or other notifiers, and the secret never appears in a message.

Signature (https://www.standardwebhooks.com/): headers ``webhook-id`` (the alert ID, the
same on every retry), ``webhook-timestamp`` (Unix seconds) and ``webhook-signature``
(``v1,`` + base64 of HMAC-SHA256 over ``f"{id}.{timestamp}.{body}"``).

The key: a secret written ``whsec_<base64>`` (the specification's form) is base64-decoded
and the bytes are the key. Any other secret is used as its UTF-8 bytes. Receivers that
verify with the ``standardwebhooks`` library should therefore use the ``whsec_`` form, or
pass the plain secret to it as *bytes* (``Webhook(secret.encode())``): given a plain *str*,
that library base64-decodes it.

Outcomes: any 2xx is delivered ("HTTP 204"). 408, 429, 5xx, timeouts and connection errors
are transient, with ``retry_after`` from a ``Retry-After`` header. Redirects are not
followed (a POST should go where it was configured) and, like other 4xx, are permanent.

The timeout bounds the whole exchange: connecting, sending, the status line and headers, and
the start of an error's body that is read for its message. httpx bounds each connect, read
and write, not their sum, so a receiver trickling its answer a byte at a time would hold the
delivery as long as it liked; a timer shuts the connection down at the deadline instead
(`ExchangeDeadline`). A request cut before its status arrived is a (transient) timeout; an error
whose body is cut keeps its status, with the part of the body that came.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import socket
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from monitor import PROJECT_URL, __version__
from monitor.errors import WebhookError
from monitor.render import AlertPayload, webhook_body

from .base import ExchangeDeadline, parse_retry_after, redact

__all__ = ["WebhookNotifier", "decode_secret", "sign"]

SECRET_PREFIX = "whsec_"
USER_AGENT = f"monitor/{__version__} (+{PROJECT_URL})"
SNIPPET = 200  # characters of a failed response's body kept in the error
READ_LIMIT = 64 * 1024  # bytes of a response body read at most


def decode_secret(secret: str) -> bytes:
    """The HMAC key for ``secret``: base64 after ``whsec_``, else the UTF-8 bytes."""
    if not secret:
        raise ValueError("the webhook secret is empty")
    if secret.startswith(SECRET_PREFIX):
        encoded = secret[len(SECRET_PREFIX) :]
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except binascii.Error as exc:
            raise ValueError("a whsec_ webhook secret must be base64 after the prefix") from exc
        if not key:
            raise ValueError("the webhook secret is empty")
        return key
    return secret.encode("utf-8")


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one message."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def _channel_for(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "unknown"
    return f"webhook:{host}:{parts.port}" if parts.port else f"webhook:{host}"


class WebhookNotifier:
    """POST each alert, signed, to one URL.

    ``client`` lets the daemon share one ``httpx.Client``; if omitted the notifier makes its
    own (close it with ``close()``). ``timeout`` bounds the whole exchange, which opens a
    connection of its own; share a client only among webhooks (a connection it kept from
    another use could be reused, and cut by nothing but httpx's per-step timeouts).
    ``name`` overrides the channel name (``webhook:<host>[:<port>]`` by default), for two
    webhooks on the same host. ``clock`` (Unix seconds) is for tests.
    """

    def __init__(
        self,
        url: str,
        secret: str,
        timeout: float = 15.0,
        client: httpx.Client | None = None,
        *,
        name: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("a webhook URL must start with http:// or https://")
        self.url = url
        self._key = decode_secret(secret)
        self._secret = secret
        self.timeout = timeout
        self.channel = f"webhook:{name}" if name else _channel_for(url)
        self._own_client = client is None
        self._client = client or httpx.Client(follow_redirects=False)
        self._clock = clock

    def __repr__(self) -> str:
        return f"WebhookNotifier(channel={self.channel!r})"

    def close(self) -> None:
        """Close the HTTP client if this notifier created it."""
        if self._own_client:
            self._client.close()

    def headers(self, msg_id: str, body: bytes) -> dict[str, str]:
        """The request headers, signature included, for one attempt."""
        timestamp = int(self._clock())
        return {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self._key, msg_id, timestamp, body),
        }

    def send(self, payload: AlertPayload, done: frozenset[str] = frozenset()) -> str:
        """Deliver one alert; return ``"HTTP <status>"`` or raise ``WebhookError``."""
        body = webhook_body(payload)
        # A connection of its own, opened in this exchange, is one the deadline can cut.
        headers = {**self.headers(str(payload["id"]), body), "connection": "close"}
        deadline = ExchangeDeadline(self.timeout)
        try:
            with self._client.stream(
                "POST",
                self.url,
                content=body,
                headers=headers,
                timeout=self.timeout,
                extensions={"trace": _watch_opened(deadline)},
            ) as response:
                status = response.status_code
                if 200 <= status < 300:
                    return f"HTTP {status}"
                snippet = _read_some(response)
                retry_after_header = response.headers.get("retry-after")
                location = response.headers.get("location")
        except httpx.TimeoutException as exc:
            raise self._error(f"timed out after {self.timeout:g}s", transient=True) from exc
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise self._error(f"bad URL: {exc}", transient=False) from exc
        except httpx.TransportError as exc:
            if deadline.expired:
                raise self._error(f"timed out after {self.timeout:g}s", transient=True) from exc
            raise self._error(f"connection failed: {exc}", transient=True) from exc
        finally:
            deadline.close()
        transient = status in (408, 429) or status >= 500
        detail = f"HTTP {status}"
        if 300 <= status < 400:
            detail += f" redirect to {location!r} (not followed; update the URL)"
        elif snippet:
            detail += f": {snippet}"
        now = datetime.fromtimestamp(self._clock(), UTC)
        retry_after = parse_retry_after(retry_after_header, now) if transient else None
        raise self._error(detail, transient=transient, status=str(status), retry_after=retry_after)

    def _error(
        self,
        detail: str,
        *,
        transient: bool,
        status: str | None = None,
        retry_after: float | None = None,
    ) -> WebhookError:
        message = redact(f"{self.channel}: {detail}", self._secret)
        return WebhookError(message, transient=transient, status=status, retry_after=retry_after)


def _watch_opened(deadline: ExchangeDeadline) -> Callable[[str, dict[str, Any]], None]:
    """httpcore's trace callback that hands the socket it opens to ``deadline``."""

    def trace(event: str, info: dict[str, Any]) -> None:
        if event.endswith("connect_tcp.complete"):
            opened = info["return_value"].get_extra_info("socket")
            if isinstance(opened, socket.socket):
                deadline.watch(opened)

    return trace


def _read_some(response: httpx.Response) -> str:
    """The start of a response body, on one line, for an error message (as much of it as
    came, should the connection fail or the deadline cut it: the status is the answer)."""
    chunks: list[bytes] = []
    size = 0
    with suppress(httpx.TransportError):
        for chunk in response.iter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size >= READ_LIMIT:
                break
    text = b"".join(chunks)[:READ_LIMIT].decode("utf-8", "replace")
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET else text[: SNIPPET - 1] + "…"
