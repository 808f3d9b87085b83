"""The digest: one message per topic and period with what did not deserve an alert of its own.

A digest covers the window (last digest, now] — from the topic's `last_digest_at`, or its
creation for the first one. It lists the coverage and duplicate decisions made in that
window, grouped by development, with counts and sources, and the developments the alert
budget held back (`budget`). When nothing happened, there is no digest: nothing is sent.

`enqueue_digest` writes the digest into the outbox and moves the window on in one
transaction, so a digest is neither lost nor doubled by a crash; `deliver` sends it like any
other alert. `digest_trigger` gives the daemon the topic's cron schedule in its time zone.
This module does not send anything and does not read the clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.triggers.cron import CronTrigger

from .budget import apply_budget
from .config import TopicSettings
from .storage import Storage, iso

#: The window start when the topic has no row yet (nothing was ever decided for it).
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

UNLINKED = "Not linked to a development"


def digest_trigger(topic: TopicSettings) -> CronTrigger:
    """APScheduler's cron trigger for the topic's digest, in the topic's time zone."""
    return CronTrigger.from_crontab(topic.digest, timezone=topic.timezone)


def missed_digest(storage: Storage, topic: TopicSettings, now: datetime) -> datetime | None:
    """When the topic's digest was due while nothing ran (a daemon stopped over its time),
    if it was: the first time its trigger fired after the last digest (or the topic's
    start) and before ``now``. None if none was missed."""
    since = storage.digest_window_start(topic.name)
    if since is None:
        return None
    due: datetime | None = digest_trigger(topic).get_next_fire_time(
        None, since + timedelta(seconds=1)
    )
    return due if due is not None and due <= now else None


def build_digest(storage: Storage, topic: TopicSettings, now: datetime) -> dict[str, Any] | None:
    """The digest payload for (last digest, now], or None when nothing happened."""
    since = storage.digest_window_start(topic.name) or EPOCH
    if since >= now:
        return None
    decisions = storage.digest_decisions(topic.name, since, now)
    held = storage.held_alerts(topic.name, since, now)
    if not decisions and not held:
        return None

    groups: dict[str | None, dict[str, Any]] = {}
    counts: dict[str, int] = {"coverage": 0, "duplicate": 0}
    for row in decisions:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
        key = row["development"]
        group = groups.get(key)
        if group is None:
            group = groups[key] = {
                "id": key,
                "label": row["development_label"] or (None if key else UNLINKED),
                "stories": [],
                "sources": [],
                "count": 0,
            }
        group["stories"].append(
            {
                "id": row["id"],
                "title": row["title"],
                "url": row["url"],
                "source": row["source"],
                "status": row["status"],
            }
        )
        group["count"] += 1
        if row["source"] and row["source"] not in group["sources"]:
            group["sources"].append(row["source"])

    held_back: list[dict[str, Any]] = []
    for alert in held:
        story = dict(alert.payload.get("story") or {})
        development = alert.payload.get("development") or {}
        story["alert_id"] = alert.id
        if isinstance(development, dict) and development.get("label"):
            story["development"] = development["label"]
        held_back.append(story)
    counts["held_back"] = len(held_back)

    return {
        "type": "digest",
        "topic": topic.name,
        "digest": {
            "since": iso(since),
            "until": iso(now),
            # developments with the most stories first; ties keep their first appearance
            "developments": sorted(groups.values(), key=lambda g: -int(g["count"])),
            "held_back": held_back,
            "counts": counts,
        },
    }


def enqueue_digest(storage: Storage, topic: TopicSettings, now: datetime) -> str | None:
    """Put the topic's digest into the outbox and start the next window at `now`.

    Over-budget developments are held first, so the digest that closes their window lists
    them. Returns the digest's alert ID, or None when nothing happened (the window still
    moves on, and nothing is sent).
    """
    apply_budget(storage, [topic])
    with storage.atomic():
        payload = build_digest(storage, topic, now)
        alert_id = None
        if payload is not None:
            alert_id = storage.enqueue_alert(
                kind="digest", topic=topic.name, payload=payload, now=now
            )
        storage.mark_digested(topic.name, now)
    return alert_id
