"""Deliver alerts through Apprise (chat, push and many other services), title + plain text.

This module only hands ``monitor.render.alert_text`` to the apprise library. It must not
import storage, fetching or other notifiers.

Each URL of a channel is a service of its own, sent to by its own ``apprise.Apprise``
object: one call for several services answers one boolean for all of them, and a retry
would then send again to those that had the alert. A service that took it is ``done``
(`DeliveryError.done`) and is left out of the next attempts, so that a failing service is
retried alone and every other gets each alert once. Its key there (and in the database) is
its scheme and a short hash of its URL: stable across restarts and reorderings of the
config, and free of the tokens that URLs carry. A URL listed twice in a channel is one
service.

Apprise reports success or failure per call, not why a service failed or whether trying
again could help, so every failure is a transient ``DeliveryError``: the delivery loop
retries with backoff and gives up after its attempt limit. Apprise URLs often carry tokens,
so errors name only the URLs' schemes and positions, never the URLs. The services are sent
to one after the other, each bounded by its own timeouts, set in the URLs themselves
(apprise's ``?cto=<connect seconds>&rto=<read seconds>``, default 4 and 4).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import apprise

from monitor.errors import DeliveryError
from monitor.render import AlertPayload, alert_text

__all__ = ["AppriseNotifier"]


def _service_key(url: str) -> str:
    """The name of the service at ``url`` in `DeliveryError.done` and the database."""
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:12]
    return f"{urlsplit(url).scheme or '?'}:{digest}"


@dataclass(frozen=True, slots=True)
class _Service:
    key: str
    label: str  # "json #2": what messages may say of it
    apprise: Any  # an apprise.Apprise holding this one URL


class AppriseNotifier:
    """Send each alert to every Apprise URL in ``urls``; ``index`` names the channel."""

    def __init__(self, urls: list[str], index: int, config: str | None = None) -> None:
        if not urls:
            raise ValueError("at least one apprise URL is needed")
        self.channel = f"apprise:{index}"
        self.config = config  # the config file the alerts' suggested commands name
        self._schemes = sorted({urlsplit(url).scheme or "?" for url in urls})
        self._services: list[_Service] = []
        keys: set[str] = set()
        for position, url in enumerate(urls, start=1):
            one = apprise.Apprise()
            if not one.add(url):
                # the URL is not repeated: it may hold a token
                raise ValueError(f"apprise URL #{position} of {self.channel} is not valid")
            key = _service_key(url)
            if key not in keys:
                keys.add(key)
                label = f"{urlsplit(url).scheme or '?'} #{position}"
                self._services.append(_Service(key, label, one))

    def __repr__(self) -> str:
        return f"AppriseNotifier(channel={self.channel!r}, schemes={self._schemes!r})"

    def send(self, payload: AlertPayload, done: frozenset[str] = frozenset()) -> str:
        """Deliver one alert to the services not in ``done``; return ``"apprise: sent to N
        service(s)"`` or raise a transient ``DeliveryError`` (whose ``done`` are the services
        that took it, when some did)."""
        title, body = alert_text(payload, config=self.config)
        services = [service for service in self._services if service.key not in done]
        if not services:
            return "apprise: every service done in earlier attempts"
        sent: list[_Service] = []
        failed: list[str] = []  # what the message says of each service that failed
        cause: Exception | None = None
        silent = False  # a service failed without an exception: apprise only logged why
        for service in services:
            try:
                ok = bool(service.apprise.notify(body=body, title=title))
            except Exception as exc:  # a library bug or an unexpected plugin error
                failed.append(f"{service.label} (apprise raised {type(exc).__name__})")
                cause = cause or exc
                continue
            if ok:
                sent.append(service)
            else:
                failed.append(service.label)
                silent = True
        earlier = len(self._services) - len(services)
        confirmation = f"apprise: sent to {_services(len(sent))}"
        if earlier:
            confirmation += f" ({earlier} in earlier attempts)"
        if not failed:
            return confirmation
        message = f"{self.channel}: apprise could not deliver to {', '.join(failed)}"
        if silent:
            message += " (it does not say why; see the apprise log)"
        if sent:
            message += f"; sent to {', '.join(service.label for service in sent)}"
        # While some of its services take alerts, the channel goes on with the other alerts
        # of the run: a failing one costs its timeout per alert, not the others their alerts.
        raise DeliveryError(
            message,
            transient=True,
            done=frozenset(service.key for service in sent),
            confirmation=confirmation if sent else None,
            channel_works=len(failed) < len(self._services),
        ) from cause


def _services(count: int) -> str:
    return f"{count} service{'s' if count != 1 else ''}"
