"""The alert budget: at most `alert_budget` immediate development alerts per topic per day.

The day is the topic's own calendar day, in its configured `timezone` (the zone its digest
is scheduled in), so "20 a day" means what the reader expects. An alert belongs to the day
it was created (`alerts.created_at`), not the day it is delivered: a backlog that waited for
an SMTP server to come back is not held back again. Within a day, alerts are let through in
outbox order (creation time, then insertion order); the rest are marked ``held`` and wait
for the next digest, which lists them.

Deciding is pure (`day_window`, `over_budget`); `apply_budget` reads and marks the outbox.
It must not send anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from .config import TopicSettings
from .storage import Storage


def day_window(moment: datetime, timezone: str) -> tuple[datetime, datetime]:
    """The [start, end) of the calendar day holding `moment` in `timezone`, as UTC datetimes."""
    zone = ZoneInfo(timezone)
    local = moment.astimezone(zone)
    start = datetime.combine(local.date(), time(0), tzinfo=zone)
    end = datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def over_budget(released_today: int, budget: int) -> bool:
    """True when one more immediate alert would exceed the budget (0 or less: hold all)."""
    return released_today >= max(budget, 0)


def apply_budget(storage: Storage, topics: Iterable[TopicSettings]) -> list[str]:
    """Mark as held the development alerts, not yet handed to any channel, that exceed their
    topic's daily budget; return their IDs. Alerts of unconfigured topics are left alone."""
    by_name = {topic.name: topic for topic in topics}
    held: list[str] = []
    for alert in storage.undispatched_alerts(kind="development"):
        topic = by_name.get(alert.topic or "")
        if topic is None:
            continue
        start, end = day_window(alert.created_at, topic.timezone)
        released = storage.released_alerts_between(topic.name, start, end, before=alert)
        if over_budget(released, topic.alert_budget):
            storage.hold_alert(alert.id)
            held.append(alert.id)
    return held
