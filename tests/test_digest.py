"""The digest: coverage and duplicates since the last one, grouped by development; nothing
when nothing happened. Rows are written straight into a real SQLite file; time is injected."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.channels import build_channels
from monitor.config import AlertSettings, EmailSettings, Settings, TopicSettings
from monitor.deliver import deliver_pending
from monitor.digest import build_digest, digest_trigger, enqueue_digest, missed_digest
from monitor.storage import Storage, iso
from tests.peers import SmtpPeer

pytest_plugins = ["tests.peers"]

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
TOPIC = TopicSettings(name="taliban", seeds=(), digest="0 8 * * *", timezone="Europe/Moscow")


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    store = Storage(tmp_path / "monitor.db")
    store.db.table("topics").insert({"name": "taliban", "created_at": iso(T0)})
    yield store
    store.close()


def add_development(storage: Storage, dev_id: str, label: str) -> None:
    storage.db.table("developments").insert(
        {
            "id": dev_id,
            "topic": "taliban",
            "label": label,
            "first_story": "seed:000.txt",
            "first_seen": iso(T0),
            "last_seen": iso(T0),
        }
    )


def add_story(
    storage: Storage,
    sid: str,
    status: str,
    at: datetime,
    *,
    source: str,
    development: str | None = None,
    duplicate_of: str | None = None,
) -> None:
    storage.db.table("stories").insert(
        {
            "id": sid,
            "origin": "https://feeds.example.org/rss",
            "entry_key": sid,
            "url": f"https://news.example.org/{sid}",
            "canonical_url": f"https://news.example.org/{sid}",
            "title": f"Title of {sid}",
            "source": source,
            "published": iso(at),
            "seen_at": iso(at),
            "content_hash": sid,
        }
    )
    storage.db.table("decisions").insert(
        {
            "story_id": sid,
            "topic": "taliban",
            "status": status,
            "score": 0.5,
            "development": development,
            "duplicate_of": duplicate_of,
            "decided_at": iso(at),
        }
    )


def test_nothing_happened_means_no_digest(storage: Storage) -> None:
    now = T0 + timedelta(days=1)
    assert build_digest(storage, TOPIC, now) is None
    assert enqueue_digest(storage, TOPIC, now) is None
    assert storage.alerts_list() == []
    # unrelated stories do not count either
    add_story(storage, "s_x", "unrelated", now + timedelta(hours=1), source="Elsewhere")
    assert enqueue_digest(storage, TOPIC, now + timedelta(days=1)) is None
    assert storage.alerts_list() == []


def test_digest_groups_coverage_and_duplicates_by_development(storage: Storage) -> None:
    add_development(storage, "d_1", "Russia delists the Taliban")
    add_development(storage, "d_2", "Embassy handed over")
    at = T0 + timedelta(hours=3)
    add_story(storage, "s_1", "coverage", at, source="TASS", development="d_1")
    add_story(
        storage, "s_2", "coverage", at + timedelta(minutes=5), source="Reuters", development="d_1"
    )
    add_story(
        storage,
        "s_3",
        "duplicate",
        at + timedelta(minutes=9),
        source="TASS",
        development="d_1",
        duplicate_of="s_1",
    )
    add_story(
        storage, "s_4", "coverage", at + timedelta(minutes=20), source="BBC", development="d_2"
    )
    add_story(storage, "s_5", "development", at, source="AP", development="d_2")
    before = T0 - timedelta(hours=1)  # decided before the window: not in this digest
    add_story(storage, "s_0", "coverage", before, source="Old", development="d_2")

    now = T0 + timedelta(days=1)
    alert_id = enqueue_digest(storage, TOPIC, now)
    assert alert_id is not None
    detail = storage.alert_detail(alert_id)
    assert detail["kind"] == "digest" and detail["status"] == "pending"
    payload = detail["payload"]
    assert payload["type"] == "digest" and payload["topic"] == "taliban"
    digest = payload["digest"]
    assert digest["since"] == iso(T0) and digest["until"] == iso(now)
    assert digest["counts"] == {"coverage": 3, "duplicate": 1, "held_back": 0}
    first, second = digest["developments"]
    assert (first["id"], first["label"], first["count"]) == ("d_1", "Russia delists the Taliban", 3)
    assert first["sources"] == ["TASS", "Reuters"]
    assert [s["id"] for s in first["stories"]] == ["s_1", "s_2", "s_3"]
    assert first["stories"][2]["status"] == "duplicate"
    assert (second["id"], second["count"], second["sources"]) == ("d_2", 1, ["BBC"])
    assert digest["held_back"] == []

    # the window moved on: the same stories are not reported twice
    row = storage.db.execute("SELECT last_digest_at FROM topics").fetchone()
    assert row[0] == iso(now)
    assert enqueue_digest(storage, TOPIC, now + timedelta(days=1)) is None


def test_digest_is_sent_as_one_email(storage: Storage, smtp_server: SmtpPeer) -> None:
    add_development(storage, "d_1", "Russia delists the Taliban")
    add_story(storage, "s_1", "coverage", T0 + timedelta(hours=1), source="TASS", development="d_1")
    now = T0 + timedelta(days=1)
    alert_id = enqueue_digest(storage, TOPIC, now)
    assert alert_id is not None
    settings = Settings(
        topics=(TOPIC,),
        alerts=AlertSettings(
            email=EmailSettings(
                host=smtp_server.host, port=smtp_server.port, recipients=("me@example.org",)
            )
        ),
    )
    summary = deliver_pending(storage, build_channels(settings.alerts, {}), settings, lambda: now)
    assert summary.delivered == 1
    [mail] = smtp_server.received
    text = mail.message.get_body(("plain",))
    assert text is not None
    content = text.get_content()
    assert "Russia delists the Taliban" in content and "Title of s_1" in content


def test_digest_trigger_fires_in_the_topic_time_zone() -> None:
    trigger = digest_trigger(TOPIC)  # 08:00 in Moscow (UTC+3) is 05:00 UTC
    fire = trigger.get_next_fire_time(None, datetime(2026, 3, 2, 6, 0, tzinfo=UTC))
    assert fire.astimezone(UTC) == datetime(2026, 3, 3, 5, 0, tzinfo=UTC)


def test_a_digest_due_while_nothing_ran_is_found(storage: Storage) -> None:
    """The topic started at T0 (08:00 UTC); its digest is due at 05:00 UTC each day. A daemon
    stopped over 05:00 and started again after it owes that digest, once."""
    due = datetime(2026, 3, 3, 5, 0, tzinfo=UTC)
    assert missed_digest(storage, TOPIC, due - timedelta(hours=1)) is None  # not due yet
    assert missed_digest(storage, TOPIC, due + timedelta(hours=1)) == due
    enqueue_digest(storage, TOPIC, due + timedelta(hours=1))  # (the catch-up, sent)
    assert missed_digest(storage, TOPIC, due + timedelta(hours=2)) is None
    assert missed_digest(storage, TOPIC, due + timedelta(days=1, hours=1)) == due + timedelta(
        days=1
    )
