"""config/datasette.yml: every table and column described, every canned query run through
Datasette's own Python API on a database that the real pipeline built from a replay."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import yaml
from datasette.app import Datasette

from monitor.config import FeedSettings, settings_from_dict
from monitor.pipeline import Pipeline
from monitor.storage import FeedUpdate, Storage
from monitor.storage.alerts import AttemptRecord

ROOT = Path(__file__).resolve().parent.parent
METADATA = yaml.safe_load((ROOT / "config" / "datasette.yml").read_text(encoding="utf-8"))
QUERIES: dict[str, Any] = METADATA["databases"]["monitor"]["queries"]
TOPIC = "taliban-delisting"
NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("datasette")
    path = folder / "monitor.db"  # the database is called "monitor", as in the container
    settings = settings_from_dict(
        {
            "database": {"path": str(path)},
            "topics": [{"name": TOPIC, "seeds": [str(ROOT / "seeds")]}],
        },
        folder / "monitor.toml",
    )
    storage = Storage(path)
    try:
        Pipeline(settings, storage, clock=lambda: NOW).replay(
            ROOT / "tests/data/service_story.jsonl"
        )
        storage.sync_feeds(
            [
                FeedSettings(url="https://ok.example.org/rss", name="Healthy"),
                FeedSettings(url="https://down.example.org/rss", name="Broken"),
            ],
            NOW,
        )
        broken = storage.find_feed("https://down.example.org/rss")
        with storage.atomic():
            storage.update_feed(
                FeedUpdate(
                    feed_id=broken.id,
                    polled_at=NOW,
                    outcome="error",
                    next_due=NOW + timedelta(minutes=30),
                    status=503,
                    failures=3,
                    error_kind="http",
                    error_message="HTTP 503 Service Unavailable",
                    error_since=NOW - timedelta(hours=2),
                )
            )
        with storage.atomic():
            test_alert = storage.enqueue_alert(
                kind="test", now=NOW, payload={"type": "test", "topic": None}
            )
        storage.open_deliveries(test_alert, ["email"], NOW)
        (due,) = [d for d in storage.pending_deliveries(NOW) if d.alert_id == test_alert]
        storage.record_attempt(
            AttemptRecord(
                delivery_id=due.id,
                attempted_at=NOW,
                outcome="delivered",
                status_code="250",
                error=None,
                duration_ms=12.0,
            )
        )
    finally:
        storage.close()
    return path


def run(store: Path, name: str, **params: str) -> list[dict[str, Any]]:
    async def fetch() -> list[dict[str, Any]]:
        ds = Datasette([str(store)], metadata=METADATA)
        query = urlencode({"_shape": "objects", **params})
        response = await ds.client.get(f"/monitor/{name}.json?{query}")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body.get("ok", True), body
        rows: list[dict[str, Any]] = body["rows"]
        return rows

    return asyncio.run(fetch())


def sql(store: Path, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    storage = Storage(store)
    try:
        return [tuple(row) for row in storage.db.execute(query, params).fetchall()]
    finally:
        storage.close()


def test_every_table_and_column_is_described(store: Path) -> None:
    tables = METADATA["databases"]["monitor"]["tables"]
    storage = Storage(store)
    try:
        names = [n for n in storage.db.table_names() if not n.startswith("stories_fts_")]
        for name in names:
            assert name in tables, f"{name}: no metadata"
            assert tables[name].get("title") and tables[name].get("description"), name
            described = tables[name].get("columns", {})
            for column in storage.db[name].columns_dict:
                assert described.get(column), f"{name}.{column}: no description"
            for column in described:
                assert column in storage.db[name].columns_dict, f"{name}.{column}: no such column"
    finally:
        storage.close()


def test_the_replay_made_developments(store: Path) -> None:
    statuses = dict(sql(store, "SELECT status, count(*) FROM decisions GROUP BY status"))
    assert statuses.get("development", 0) >= 1
    assert statuses.get("unrelated", 0) >= 1


def test_latest_developments(store: Path) -> None:
    rows = run(store, "latest_developments")
    expected = sql(store, "SELECT id FROM developments ORDER BY first_seen DESC, id")
    assert [row["development"] for row in rows] == [row[0] for row in expected]
    for row in rows:
        assert row["label"] and row["first_report"]
        count = sql(
            store,
            "SELECT count(*) FROM decisions WHERE development = ? "
            "AND status IN ('development', 'coverage')",
            (row["development"],),
        )[0][0]
        assert row["reports"] == count
        if count:
            assert row["sources"]


def test_development_stories(store: Path) -> None:
    for (development,) in sql(store, "SELECT id FROM developments"):
        rows = run(store, "development_stories", development=development)
        expected = sql(
            store, "SELECT story_id FROM decisions WHERE development = ?", (development,)
        )
        assert sorted(row["story"] for row in rows) == sorted(row[0] for row in expected)
        published = [row["published"] for row in rows]
        assert published == sorted(published)
    assert run(store, "development_stories", development="no-such-development") == []


def test_todays_alerts(store: Path) -> None:
    today = run(store, "todays_alerts")
    assert [row["kind"] for row in today] == ["test"]
    (row,) = today
    assert row["channel"] == "email" and row["delivery_status"] == "delivered"
    assert row["attempts"] == 1
    for day, count in sql(
        store, "SELECT date(created_at), count(*) FROM alerts WHERE kind = 'development' GROUP BY 1"
    ):
        rows = run(store, "todays_alerts", day=day)
        developments = [r for r in rows if r["kind"] == "development"]
        assert len(developments) == count
        assert all(r["delivery_status"] is None for r in developments)  # not dispatched yet


def test_failing_feeds(store: Path) -> None:
    rows = run(store, "failing_feeds")
    assert [row["feed"] for row in rows] == ["Broken"]
    assert rows[0]["error_kind"] == "http" and rows[0]["failures"] == 3


def test_search_stories(store: Path) -> None:
    rows = run(store, "search_stories", q="comet")
    assert len(rows) == 1 and "comet" in rows[0]["title"].lower()
    assert rows[0]["decisions"].startswith(f"{TOPIC}: ")
    rows = run(store, "search_stories", q="Taliban recognise")
    assert rows and all("taliban" in json.dumps(row).lower() for row in rows)
    assert run(store, "search_stories", q='Taliban "unbalanced') is not None
    # the page as first opened, with no word yet (or only a quote): no rows, no error
    for nothing in ("", "   ", '"'):
        assert run(store, "search_stories", q=nothing) == []


def test_every_canned_query_is_checked() -> None:
    checked = {
        "latest_developments",
        "development_stories",
        "todays_alerts",
        "failing_feeds",
        "search_stories",
    }
    assert set(QUERIES) == checked
    for name, query in QUERIES.items():
        assert query.get("title") and query.get("description"), name
