"""`Storage.sync_feeds`: the config's feeds in the `feeds` table, written only where changed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from monitor.config import Duration, FeedSettings
from monitor.storage import Storage

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
A = "https://a.example/feed.xml"
B = "https://b.example/rss"
C = "https://c.example/atom"


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    opened = Storage(tmp_path / "monitor.db")
    yield opened
    opened.close()


def rows(storage: Storage) -> dict[str, dict[str, Any]]:
    return {row["config_url"] or row["url"]: row for row in storage.db.query("SELECT * FROM feeds")}


def changes_made_by(storage: Storage, feeds: list[FeedSettings]) -> int:
    before = storage.db.conn.total_changes
    storage.sync_feeds(feeds, T0)
    return storage.db.conn.total_changes - before


def test_a_config_synced_again_unchanged_writes_nothing(storage: Storage) -> None:
    feeds = [FeedSettings(url=A, name="a"), FeedSettings(url=B, interval=Duration(600))]
    assert changes_made_by(storage, feeds) == 2
    assert changes_made_by(storage, feeds) == 0
    table = rows(storage)
    assert table[A]["name"] == "a" and table[A]["enabled"] == 1 and table[A]["from_config"] == 1
    assert table[B]["interval_s"] == 600 and table[B]["name"] is None


def test_changed_options_are_written_and_nothing_else(storage: Storage) -> None:
    storage.sync_feeds([FeedSettings(url=A, name="a"), FeedSettings(url=B)], T0)
    storage.db.execute("UPDATE feeds SET etag = 'e1', failures = 2 WHERE config_url = ?", [A])
    feeds = [
        FeedSettings(url=A, name="renamed", full_text=True, topics=("t",)),
        FeedSettings(url=B),
    ]
    assert changes_made_by(storage, feeds) == 1
    row = rows(storage)[A]
    assert (row["name"], row["fetch_full_text"], row["topics"]) == ("renamed", 1, '["t"]')
    assert (row["etag"], row["failures"]) == ("e1", 2)  # the poller's state is not the config's


def test_disabled_in_the_config_and_removed_from_it(storage: Storage) -> None:
    storage.sync_feeds([FeedSettings(url=A), FeedSettings(url=B), FeedSettings(url=C)], T0)
    storage.sync_feeds([FeedSettings(url=A), FeedSettings(url=B, enabled=False)], T0)
    table = rows(storage)
    assert table[A]["enabled"] == 1
    assert (table[B]["enabled"], table[B]["disabled_reason"]) == (0, "disabled in the config")
    assert (table[C]["enabled"], table[C]["disabled_reason"]) == (0, "removed from the config")
    # syncing the same config again changes nothing more
    assert changes_made_by(storage, [FeedSettings(url=A), FeedSettings(url=B, enabled=False)]) == 0
    # enabled again and put back in the config: both are polled again
    assert (
        changes_made_by(storage, [FeedSettings(url=A), FeedSettings(url=B), FeedSettings(url=C)])
        == 2
    )
    table = rows(storage)
    assert all((table[u]["enabled"], table[u]["disabled_reason"]) == (1, None) for u in (B, C))


def test_a_feed_the_user_disabled_stays_disabled_whatever_the_config_says(
    storage: Storage,
) -> None:
    storage.sync_feeds([FeedSettings(url=A)], T0)
    storage.set_enabled(storage.find_feed(A), False)
    assert changes_made_by(storage, [FeedSettings(url=A)]) == 0
    assert rows(storage)[A]["disabled_reason"] == "disabled by user"
    # disabled in the config, then enabled there again: still the user's choice
    storage.sync_feeds([FeedSettings(url=A, enabled=False)], T0)
    storage.sync_feeds([FeedSettings(url=A)], T0)
    assert (rows(storage)[A]["enabled"], rows(storage)[A]["disabled_reason"]) == (
        0,
        "disabled by user",
    )


def test_a_feed_the_config_added_disabled_is_polled_once_the_config_enables_it(
    storage: Storage,
) -> None:
    storage.sync_feeds([FeedSettings(url=A, enabled=False)], T0)
    storage.sync_feeds([FeedSettings(url=A, enabled=False)], T0)
    assert (rows(storage)[A]["enabled"], rows(storage)[A]["disabled_reason"]) == (
        0,
        "disabled in the config",
    )
    storage.sync_feeds([FeedSettings(url=A)], T0)
    assert (rows(storage)[A]["enabled"], rows(storage)[A]["disabled_reason"]) == (1, None)
    # a row from before the reason was written on insert (NULL) is the config's too
    storage.db.execute("UPDATE feeds SET enabled = 0, disabled_reason = NULL")
    storage.sync_feeds([FeedSettings(url=A)], T0)
    assert rows(storage)[A]["enabled"] == 1


def test_a_feed_the_poller_disabled_stays_disabled(storage: Storage) -> None:
    storage.sync_feeds([FeedSettings(url=A)], T0)
    storage.db.execute(
        "UPDATE feeds SET enabled = 0, disabled_reason = 'HTTP 410 Gone' WHERE config_url = ?", [A]
    )
    assert changes_made_by(storage, [FeedSettings(url=A)]) == 0
    assert rows(storage)[A]["disabled_reason"] == "HTTP 410 Gone"


def test_a_moved_feed_is_found_by_its_config_url(storage: Storage) -> None:
    storage.sync_feeds([FeedSettings(url=A, name="a")], T0)
    moved = "https://a.example/new-feed.xml"  # a 301 updated the URL polled
    storage.db.execute("UPDATE feeds SET url = ? WHERE config_url = ?", [moved, A])
    storage.sync_feeds([FeedSettings(url=A, name="a2")], T0)
    (row,) = storage.db.query("SELECT * FROM feeds")
    assert (row["url"], row["config_url"], row["name"]) == (moved, A, "a2")


def test_a_feed_added_on_the_command_line_is_adopted_by_the_config(storage: Storage) -> None:
    storage.add_feed(A, "by hand", None, T0)
    storage.sync_feeds([FeedSettings(url=A, name="from config")], T0)
    (row,) = storage.db.query("SELECT * FROM feeds")
    assert (row["name"], row["from_config"], row["config_url"]) == ("from config", 1, A)
    # a feed that only the command line added is left alone when the config does not list it
    storage.add_feed(B, None, None, T0)
    storage.sync_feeds([FeedSettings(url=A, name="from config")], T0)
    assert rows(storage)[B]["enabled"] == 1


def test_a_feed_listed_at_its_old_and_new_address_gets_two_rows(storage: Storage) -> None:
    """After A moved to B (301), a config that lists B and A: B takes the moved row, A gets
    a row of its own (as when each feed was looked up in the table), and a second sync
    changes nothing."""
    storage.sync_feeds([FeedSettings(url=A, name="a")], T0)
    storage.db.execute("UPDATE feeds SET url = ? WHERE config_url = ?", [B, A])
    feeds = [FeedSettings(url=B, name="b"), FeedSettings(url=A, name="a")]
    storage.sync_feeds(feeds, T0)
    table = sorted(storage.db.execute("SELECT url, config_url, name FROM feeds").fetchall())
    assert table == [(A, A, "a"), (B, B, "b")]
    assert changes_made_by(storage, feeds) == 0


def test_the_daemon_s_connection_loads_no_sqlite_utils_plugins(tmp_path: Path) -> None:
    """Loading them reads every installed distribution's entry points (~10 ms a process);
    the daemon's own connection needs none (a fresh process: another test may load them)."""
    code = (
        "import sys; from monitor.storage import Storage; import sqlite_utils.plugins as p; "
        "s = Storage(sys.argv[1]); print(p._plugins_loaded); s.close()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "m.db")],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert done.stdout.strip() == "False"
