"""The port every notification channel implements, and helpers the adapters share.

A ``Notifier`` delivers one alert payload on one channel, synchronously (the delivery loop
calls it in a worker thread). It returns a short confirmation from the peer ("250 OK ...",
"HTTP 204") or raises a ``DeliveryError`` subclass whose ``transient`` flag tells the loop
whether a retry may help (and, for a channel with several targets, which of them are
done). Adapters never import storage, fetching, or each other.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from monitor.render import AlertPayload

__all__ = ["Notifier", "parse_retry_after", "redact"]

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
