"""What `monitor alerts list|show|retry|test` do: each returns its data (for --json) and a
plain-text rendering. The click commands stay thin: call one function, print one of the two.

Nothing here reads the clock or the configuration; it must not print.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .deliver import send_test
from .notify.base import Notifier
from .render import alert_text
from .storage import Storage
from .text import counted


def _channels_line(deliveries: list[dict[str, Any]]) -> str:
    parts = []
    for delivery in deliveries:
        part = f"{delivery['channel']}: {delivery['status']}"
        if delivery["status"] != "delivered" and delivery.get("last_error"):
            part += f" ({delivery['last_error']})"
        parts.append(part)
    return "; ".join(parts) or "-"


def list_alerts(
    storage: Storage, *, status: str | None = None, limit: int = 50
) -> tuple[list[dict[str, Any]], str]:
    """The newest alerts with their per-channel states."""
    rows = storage.alerts_list(status=status, limit=limit)
    if not rows:
        return rows, "no alerts" + (f" with status {status}" if status else "")
    lines = [
        f"{row['id']}  {row['created_at']}  {row['kind']:<14} {row['status']:<9} "
        f"{row['topic'] or '-'}  {row['title']}\n    {_channels_line(row['deliveries'])}"
        for row in rows
    ]
    return rows, "\n".join(lines)


def show_alert(
    storage: Storage, alert_id: str, config: str | None = None
) -> tuple[dict[str, Any], str]:
    """One alert: each channel's state, every attempt, and what it says (its subject and
    plain text, as an email or a chat message carries them, sent by a daemon reading
    ``config``)."""
    detail = storage.alert_detail(alert_id)
    lines = [
        f"alert {detail['id']} ({detail['kind']}, topic {detail['topic'] or '-'}): "
        f"{detail['status']}",
        f"created {detail['created_at']}"
        + (f", delivered {detail['delivered_at']}" if detail["delivered_at"] else ""),
    ]
    story = detail["payload"].get("story") or {}
    if story:
        lines.append(
            f"story {story.get('id', '-')}: {story.get('title', '')} {story.get('url', '')}"
        )
    lines.append("deliveries:" if detail["deliveries"] else "deliveries: none yet")
    for delivery in detail["deliveries"]:
        line = f"  {delivery['channel']}: {delivery['status']}"
        if delivery.get("attempts") is not None:
            line += f" after {counted(delivery['attempts'], 'attempt')}"
        if delivery["status"] == "pending" and delivery.get("next_attempt_at"):
            line += f", next at {delivery['next_attempt_at']}"
        if delivery.get("confirmation"):
            line += f" — {delivery['confirmation']}"
        elif delivery.get("last_error"):
            line += f" — {delivery['last_error']}"
        lines.append(line)
    if detail["attempts"]:
        lines.append("attempts:")
        for attempt in detail["attempts"]:
            duration = attempt["duration_ms"]
            took = "" if duration is None else f"{duration:.0f} ms"
            line = (
                f"  {attempt['attempted_at']}  {attempt['channel']:<24} {attempt['outcome']:<9} "
                f"{attempt['status_code'] or '-':<8} {took}  {attempt['error'] or ''}"
            )
            lines.append(line.rstrip())
    title, body = alert_text(detail["payload"], config=config)
    lines += ["message:", f"    Subject: {title}", ""]
    lines += [f"    {line}".rstrip() for line in body.splitlines()]
    return detail, "\n".join(lines)


def retry_alert(storage: Storage, alert_id: str, now: datetime) -> tuple[int, str]:
    """Queue an alert's failed deliveries again; UserError when there is none."""
    count = storage.retry_alert(alert_id, now)
    return (
        count,
        f"alert {alert_id}: {counted(count, 'failed delivery', 'failed deliveries')} queued again",
    )


def check_channels(channels: Sequence[Notifier], now: datetime) -> tuple[list[dict[str, Any]], str]:
    """Send a test message through every channel; report each one's result."""
    results = [
        {"channel": channel, "ok": ok, "detail": detail}
        for channel, ok, detail in send_test(channels, now)
    ]
    lines = [f"{r['channel']}: {'OK' if r['ok'] else 'FAILED'} {r['detail']}" for r in results]
    return results, "\n".join(lines) or "no alert channel is configured"
