"""Use cases on the outbox: `alerts` rows written with the decision that raised them,
`deliveries` (one per alert and channel) and `delivery_attempts` (every try)."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlite_utils import Database

from .base import dumps, iso


def new_alert_id() -> str:
    """A unique, stable alert ID; it becomes the email Message-ID and the webhook-id."""
    return f"a_{secrets.token_hex(8)}"


class AlertStore:
    db: Database

    def enqueue_alert(
        self,
        *,
        kind: str,
        payload: dict[str, Any],
        now: datetime,
        topic: str | None = None,
        story_id: str | None = None,
        development: str | None = None,
        feed_id: int | None = None,
        alert_id: str | None = None,
    ) -> str:
        """Write an alert into the outbox (call inside the transaction that raised it).

        The payload's ``id`` and ``created_at`` are filled in here so that the stored row
        and what channels receive always agree.
        """
        alert_id = alert_id or new_alert_id()
        body = {**payload, "id": alert_id, "created_at": iso(now)}
        self.db["alerts"].insert(
            {
                "id": alert_id,
                "kind": kind,
                "topic": topic,
                "story_id": story_id,
                "development": development,
                "feed_id": feed_id,
                "payload": dumps(body),
                "status": "pending",
                "created_at": iso(now),
            }
        )
        return alert_id
