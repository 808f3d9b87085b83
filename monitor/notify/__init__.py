"""Notification adapters: one ``Notifier`` per delivery channel.

    EmailNotifier     SMTP (smtplib), multipart text + HTML          monitor.notify.email
    WebhookNotifier   signed JSON POST (Standard Webhooks, httpx)    monitor.notify.webhook
    AppriseNotifier   title + text through the apprise library       monitor.notify.apprise

Each takes a rendered payload (``monitor.render.AlertPayload``), delivers it synchronously
and returns the peer's confirmation, or raises a ``DeliveryError`` subclass with
``transient`` set. Adapters never import storage, fetching or each other. The concrete
classes live in their submodules (imported on demand, as apprise and httpx are slow to
import); this package exports the port.
"""

from __future__ import annotations

from .base import Notifier, parse_retry_after

__all__ = ["Notifier", "parse_retry_after"]
