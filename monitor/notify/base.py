"""The port every notification channel implements, and helpers the adapters share.

A ``Notifier`` delivers one alert payload on one channel, synchronously (the delivery loop
calls it in a worker thread). It returns a short confirmation from the peer ("250 OK ...",
"HTTP 204") or raises a ``DeliveryError`` subclass whose ``transient`` flag tells the loop
whether a retry may help (and, for a channel with several targets, which of them are
done). Adapters never import storage, fetching, or each other.
"""

from __future__ import annotations

import socket
import threading
from contextlib import suppress
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from monitor.render import AlertPayload

__all__ = ["ExchangeDeadline", "Notifier", "parse_retry_after", "redact"]

RETRY_AFTER_CAP = 24 * 3600.0


@runtime_checkable
class Notifier(Protocol):
    """One delivery channel."""

    #: Stable channel name recorded on each delivery: "email", "webhook:<host>", "apprise:<n>".
    channel: str

    def send(self, payload: AlertPayload, done: frozenset[str] = frozenset()) -> str:
        """Deliver ``payload``; return the peer's confirmation or raise ``DeliveryError``.

        ``done`` are the targets an earlier attempt settled (`DeliveryError.done`), not to
        be sent to again; a channel with one target never reports any, and ignores it.
        """


class ExchangeDeadline:
    """Shuts one exchange's connection down ``seconds`` after it started, unless closed first.

    A client's timeout bounds each connect, read and write, not their sum: a peer trickling
    its answer a byte at a time could hold a delivery as long as it liked (and past the
    claim on it, so another process could send it again). The socket is handed over with
    `watch` as soon as it is opened; at the deadline a duplicate of it is shut down, so the
    blocked read or write fails at once whatever wraps it (TLS), and the client closes the
    connection as usual. ``expired`` tells the caller why its exchange failed.
    """

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, opened: socket.socket) -> None:
        with self._lock:
            if self._socket is not None:
                self._socket.close()
            self._socket = opened.dup()
            if self.expired:
                self._shut()

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            self._shut()

    def _shut(self) -> None:
        if self._socket is not None:
            with suppress(OSError):  # already closed by the peer
                self._socket.shutdown(socket.SHUT_RDWR)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), capped.

    Returns None when the header is absent or unreadable; a date in the past gives 0.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return min(float(value), RETRY_AFTER_CAP)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return min(max((moment - now).total_seconds(), 0.0), RETRY_AFTER_CAP)


def redact(text: str, *secrets: str | None) -> str:
    """Remove every non-empty secret from ``text`` (belt and braces for error messages)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
