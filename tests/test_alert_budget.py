"""The alert budget: N immediate alerts per topic per (local) day; the rest wait for the
digest, which says so. Injected clock, real SQLite, real HTTP receiver."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.budget import apply_budget, day_window, over_budget
from monitor.channels import build_channels
from monitor.config import AlertSettings, Settings, TopicSettings, WebhookSettings
from monitor.deliver import deliver_pending
from monitor.digest import enqueue_digest
from monitor.render import render_text
from monitor.storage import Storage, iso
from tests.peers import WebhookReceiver

pytest_plugins = ["tests.peers"]

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ENV = {"HOOK_SECRET": "a-webhook-signing-secret"}


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    store = Storage(tmp_path / "monitor.db")
    store.db.table("topics").insert({"name": "taliban", "created_at": iso(T0 - timedelta(days=1))})
    yield store
    store.close()


def enqueue(storage: Storage, title: str, now: datetime, topic: str = "taliban") -> str:
    return storage.enqueue_alert(
        kind="development",
        topic=topic,
        now=now,
        payload={
            "type": "development.new",
            "topic": topic,
            "story": {
                "id": f"s_{title}",
                "url": f"https://news.example.org/{title}",
                "title": title,
                "source": "Example",
            },
            "development": {"id": f"d_{title}", "label": f"Label {title}"},
        },
    )


def test_day_window_is_the_topic_local_day() -> None:
    start, end = day_window(datetime(2026, 3, 2, 23, 30, tzinfo=UTC), "Asia/Tokyo")
    assert start == datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # 3 March 00:00 in Tokyo
    assert end - start == timedelta(days=1)
    assert day_window(T0, "UTC") == (
        datetime(2026, 3, 2, tzinfo=UTC),
        datetime(2026, 3, 3, tzinfo=UTC),
    )
    assert not over_budget(1, 2) and over_budget(2, 2) and over_budget(0, 0)


def test_budget_holds_the_extra_alert_and_the_digest_mentions_it(
    storage: Storage, webhook_receiver: WebhookReceiver
) -> None:
    topic = TopicSettings(name="taliban", seeds=(), alert_budget=2)
    settings = Settings(
        topics=(topic,),
        alerts=AlertSettings(
            webhooks=(WebhookSettings(url=webhook_receiver.url, secret_env="HOOK_SECRET"),)
        ),
    )
    channels = build_channels(settings.alerts, ENV)
    ids = [enqueue(storage, f"n{n}", T0 + timedelta(minutes=n)) for n in range(3)]
    other = enqueue(storage, "elsewhere", T0, topic="another")  # no configured budget

    summary = deliver_pending(storage, channels, settings, lambda: T0 + timedelta(minutes=5))
    assert summary.held == [ids[2]]
    assert summary.delivered == 3
    assert "1 held for the digest (alert budget)" in summary.text()
    assert [storage.alert_detail(i)["status"] for i in ids] == ["delivered", "delivered", "held"]
    assert storage.alert_detail(other)["status"] == "delivered"
    assert storage.alert_detail(ids[2])["deliveries"] == []
    assert storage.outbox_counts()["held"] == 1

    # the next day has a fresh budget
    tomorrow = enqueue(storage, "n3", T0 + timedelta(days=1))
    later = T0 + timedelta(days=1, minutes=1)
    summary = deliver_pending(storage, channels, settings, lambda: later)
    assert summary.held == [] and summary.delivered == 1
    assert storage.alert_detail(tomorrow)["status"] == "delivered"

    # the digest lists the held development and says why
    digest_id = enqueue_digest(storage, topic, T0 + timedelta(days=1, hours=1))
    assert digest_id is not None
    digest = storage.alert_detail(digest_id)["payload"]["digest"]
    assert [s["alert_id"] for s in digest["held_back"]] == [ids[2]]
    assert digest["held_back"][0]["title"] == "n2"
    assert digest["counts"]["held_back"] == 1
    text = render_text(storage.alert_detail(digest_id)["payload"])
    assert "Held back (alert budget reached)" in text and "n2" in text
    # digests are not subject to the budget
    summary = deliver_pending(storage, channels, settings, lambda: T0 + timedelta(days=1, hours=1))
    assert summary.delivered == 1 and summary.held == []


def test_budget_zero_sends_every_development_to_the_digest(storage: Storage) -> None:
    topic = TopicSettings(name="taliban", seeds=(), alert_budget=0)
    first = enqueue(storage, "a", T0)
    assert apply_budget(storage, [topic]) == [first]
    assert apply_budget(storage, [topic]) == []  # decided once


def test_budget_applies_even_without_channels_and_before_the_digest(storage: Storage) -> None:
    topic = TopicSettings(name="taliban", seeds=(), alert_budget=1)
    ids = [enqueue(storage, f"x{n}", T0 + timedelta(minutes=n)) for n in range(2)]
    # no deliver run happened: the digest holds the over-budget alert itself
    digest_id = enqueue_digest(storage, topic, T0 + timedelta(hours=1))
    assert digest_id is not None
    digest = storage.alert_detail(digest_id)["payload"]["digest"]
    assert [s["alert_id"] for s in digest["held_back"]] == [ids[1]]
    assert storage.alert_detail(ids[0])["status"] == "pending"
