"""Deliver alerts through Apprise (chat, push and many other services), title + plain text.

This module only hands ``monitor.render.alert_text`` to the apprise library. It must not
import storage, fetching or other notifiers.

Apprise reports success or failure per call, not why a service failed or whether trying
again could help, so every failure is a transient ``DeliveryError``: the delivery loop
retries with backoff and gives up after its attempt limit. Apprise URLs often carry tokens,
so errors name only the URL schemes, never the URLs. Timeouts are set in the URLs
themselves (apprise's ``?cto=<connect seconds>&rto=<read seconds>``, default 4 and 4).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import apprise

from monitor.errors import DeliveryError
from monitor.render import AlertPayload, alert_text

__all__ = ["AppriseNotifier"]


class AppriseNotifier:
    """Send each alert to every Apprise URL in ``urls``; ``index`` names the channel."""

    def __init__(self, urls: list[str], index: int) -> None:
        if not urls:
            raise ValueError("at least one apprise URL is needed")
        self.channel = f"apprise:{index}"
        self._schemes = sorted({urlsplit(url).scheme or "?" for url in urls})
        self._apprise = apprise.Apprise()
        for position, url in enumerate(urls, start=1):
            if not self._apprise.add(url):
                # the URL is not repeated: it may hold a token
                raise ValueError(f"apprise URL #{position} of {self.channel} is not valid")

    def __repr__(self) -> str:
        return f"AppriseNotifier(channel={self.channel!r}, schemes={self._schemes!r})"

    def send(self, payload: AlertPayload, done: frozenset[str] = frozenset()) -> str:
        """Deliver one alert; return ``"apprise: sent to N service(s)"`` or raise."""
        title, body = alert_text(payload)
        try:
            result = self._apprise.notify(body=body, title=title)
        except Exception as exc:  # a library bug or an unexpected plugin error
            raise DeliveryError(
                f"{self.channel}: apprise raised {type(exc).__name__}", transient=True
            ) from exc
        if not result:
            raise DeliveryError(
                f"{self.channel}: apprise could not deliver to {', '.join(self._schemes)}"
                " (it does not say why; see the apprise log)",
                transient=True,
            )
        count = len(self._apprise)
        return f"apprise: sent to {count} service{'s' if count != 1 else ''}"
