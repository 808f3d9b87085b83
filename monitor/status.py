"""What `monitor status`, `feeds list` and `alerts list` show: data first, then tables.

`collect_*` gather plain dicts (also printed with --json); `render_*` draw them with rich,
which prints plain aligned text when the output is not a terminal.
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from .config import Settings, format_duration
from .storage import Storage, database_bytes, iso, parse_iso
from .text import counted


def _console() -> Console:
    """A terminal console, or a wide one when the output goes to a pipe or a file."""
    return Console() if sys.stdout.isatty() else Console(width=200)


def feed_rows(storage: Storage) -> list[dict[str, Any]]:
    rows = []
    for row in storage.db.query("SELECT * FROM feeds ORDER BY id"):
        rows.append(
            {
                "id": row["id"],
                "name": row["name"] or row["title"],
                "url": row["url"],
                "enabled": bool(row["enabled"]),
                "last_polled": row["last_polled"],
                "last_outcome": row["last_outcome"],
                "last_status": row["last_status"],
                "entries": row["entries_total"],
                "failures": row["failures"],
                "error": (
                    f"{row['error_kind']}: {row['error_message']}" if row["error_kind"] else None
                ),
                "error_since": row["error_since"],
                "next_due": row["next_due"],
                "disabled_reason": row["disabled_reason"],
            }
        )
    return rows


def collect_status(storage: Storage, settings: Settings, now: datetime) -> dict[str, Any]:
    storage.sync_feeds(settings.feeds, now)
    feeds = feed_rows(storage)
    return {
        "now": iso(now),
        "database": str(settings.database_path),
        "database_bytes": database_bytes(settings.database_path),
        "stories": storage.story_counts(),
        "retention_s": settings.database.retention,
        "feeds": feeds,
        "feeds_failing": sum(1 for feed in feeds if feed["error"] and feed["enabled"]),
        "decisions": storage.counts_by_status(),
        "alerts": storage.outbox_counts(),
    }


def _when(value: str | None, now: datetime | None = None) -> str:
    moment = parse_iso(value)
    if moment is None:
        return "-"
    if now is not None:
        seconds = (moment - now).total_seconds()
        sign = "in " if seconds > 0 else ""
        ago = "" if seconds > 0 else " ago"
        seconds = abs(seconds)
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if seconds >= size:
                return f"{sign}{seconds / size:.0f}{unit}{ago}"
        return f"{sign}{seconds:.0f}s{ago}"
    return moment.strftime("%Y-%m-%d %H:%M")


def _next_due(row: dict[str, Any], now: datetime | None) -> str:
    if not row["enabled"]:
        return row["disabled_reason"] or "-"
    if row["next_due"] is None:  # never polled, or enabled again: the next tick takes it
        return "now"
    return _when(row["next_due"], now)


def render_feeds(
    rows: list[dict[str, Any]], now: datetime | None = None, console: Console | None = None
) -> None:
    console = console or _console()
    table = Table(title="Feeds", title_justify="left")
    for column in ("id", "feed", "on", "last poll", "outcome", "entries", "next due", "error"):
        table.add_column(column, overflow="fold")
    for row in rows:
        outcome = row["last_outcome"] or "-"
        if row["last_status"]:
            outcome += f" {row['last_status']}"
        table.add_row(
            str(row["id"]),
            row["name"] or row["url"],
            "yes" if row["enabled"] else "no",
            _when(row["last_polled"], now),
            outcome,
            str(row["entries"]),
            _next_due(row, now),
            row["error"] or "",
        )
    console.print(table)


def render_status(data: dict[str, Any], console: Console | None = None) -> None:
    console = console or _console()
    now = parse_iso(data["now"])
    console.print(f"database {data['database']} ({data['database_bytes'] / 1e6:,.1f} MB)")
    stories = data["stories"]
    retention = data["retention_s"]
    kept = f"kept {format_duration(retention)}" if retention else "kept for ever"
    console.print(
        f"stories {stories['total']:,}, text cleared for {stories['text_cleared']:,} "
        f"(unrelated stories' text is {kept}: database.retention)"
    )
    render_feeds(data["feeds"], now, console)
    decisions = Table(title="Decisions", title_justify="left")
    statuses = ("development", "coverage", "duplicate", "unrelated")
    decisions.add_column("topic")
    for status in statuses:
        decisions.add_column(status, justify="right")
    for topic, counts in sorted(data["decisions"].items()):
        decisions.add_row(topic, *(str(counts.get(status, 0)) for status in statuses))
    console.print(decisions)
    outbox = Table(title="Alerts", title_justify="left")
    for column in ("pending", "held", "delivered", "failed"):
        outbox.add_column(column, justify="right")
    counts = data["alerts"]
    outbox.add_row(
        *(str(counts.get(column, 0)) for column in ("pending", "held", "delivered", "failed"))
    )
    console.print(outbox)
    # An alert counts as delivered once one channel confirmed it: a channel still retrying,
    # or given up on, would show nowhere above.
    waiting, failed = counts.get("deliveries_pending", 0), counts.get("deliveries_failed", 0)
    if waiting or failed:
        console.print(
            f"deliveries by channel: {waiting} pending, {failed} failed "
            "(`monitor alerts list` names them)"
        )
    if data["feeds_failing"]:
        console.print(f"{counted(data['feeds_failing'], 'feed')} failing")


def render_alerts(rows: list[dict[str, Any]], console: Console | None = None) -> None:
    console = console or _console()
    table = Table(title="Alerts", title_justify="left")
    for column in ("id", "created", "kind", "topic", "status", "title", "channels"):
        table.add_column(column, overflow="fold")
    for row in rows:
        channels = ", ".join(
            f"{d['channel']}: {d['status']}"
            + (
                f" ({d['last_error']})"
                if d.get("last_error") and d["status"] != "delivered"
                else ""
            )
            for d in row.get("deliveries", [])
        )
        table.add_row(
            row["id"],
            _when(row["created_at"]),
            row["kind"],
            row.get("topic") or "",
            row["status"],
            row.get("title") or "",
            channels or "-",
        )
    console.print(table)
