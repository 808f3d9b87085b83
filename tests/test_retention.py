"""Story retention (`database.retention`): the text of old stories that every topic judged
unrelated is cleared; their titles, links, hashes and decisions stay, and so does every
story that is related, has feedback or has no decision."""

from __future__ import annotations

import json
import logging
import sqlite3
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor import pipeline as pipeline_module
from monitor.detect import explain, record_feedback
from monitor.models import Entry
from monitor.pipeline import Pipeline
from monitor.storage import Storage
from monitor.storage.stories import _PRUNABLE
from tests.feedserver import FeedServer, Reply
from tests.storage_helpers import database_before, fts_hits, table_bytes
from tests.test_pipeline import Clock, count, cycle, items, one_feed_pipeline, rss

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
RETENTION = timedelta(days=180)


def _entry(n: int, body: str = "") -> Entry:
    url = f"https://news.example/{n}"
    return Entry(
        key=url, url=url, canonical_url=url, title=f"Lighthouse report {n}",
        summary=f"Keepers logged storm number {n}.", content=body or f"Gravel barges {n}.",
        published=T0, content_hash=f"h{n}", source="Desk", language="en",
    )  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Storage:
    opened = Storage(tmp_path / "m.db")
    with opened.atomic():
        for topic in ("a", "b"):
            opened.db.execute(
                "INSERT INTO topics (name, created_at) VALUES (?, ?)", [topic, T0.isoformat()]
            )
    yield opened
    opened.close()


def _story(
    store: Storage, n: int, seen: datetime, decisions: dict[str, str], feedback: str | None = None
) -> str:
    """A stored story first seen at ``seen`` with a decision of each topic: status."""
    with store.atomic():
        sid = store.insert_story(_entry(n), origin="o", feed_id=None, now=seen)
        for topic, status in decisions.items():
            store.db.execute(
                "INSERT INTO decisions (story_id, topic, status, score, reasons, decided_at, "
                "feedback, feedback_at) VALUES (?, ?, ?, 0.1, '[]', ?, ?, ?)",
                [sid, topic, status, seen.isoformat(), feedback, feedback and seen.isoformat()],
            )
    return sid


def _row(store: Storage, sid: str) -> dict[str, object]:
    return next(iter(store.db.query("SELECT * FROM stories WHERE id = ?", [sid])))


def _cleared(store: Storage) -> set[str]:
    rows = store.db.execute("SELECT id FROM stories WHERE pruned_at IS NOT NULL").fetchall()
    return {row[0] for row in rows}


def test_only_old_stories_every_topic_judged_unrelated_lose_their_text(store: Storage) -> None:
    old = _story(store, 1, T0, {"a": "unrelated", "b": "unrelated"})
    mixed = _story(store, 2, T0, {"a": "unrelated", "b": "coverage"})
    related = _story(store, 3, T0, {"a": "development"})
    duplicate = _story(store, 4, T0, {"a": "duplicate"})
    marked = _story(store, 5, T0, {"a": "unrelated"}, feedback="irrelevant")
    undecided = _story(store, 6, T0, {})
    young = _story(store, 7, T0 + 10 * DAY, {"a": "unrelated"})
    store.db.execute("UPDATE stories SET full_text = 'The linked article.' WHERE id = ?", [old])
    store.index_stories()
    before = _row(store, old)
    now = T0 + 181 * DAY
    assert store.prunable(now - RETENTION)

    with store.foreign_keys_off(), store.atomic():
        assert store.prune_bodies(now - RETENTION, now, limit=100) == 1

    assert not store.prunable(now - RETENTION)

    assert _cleared(store) == {old}
    assert store.story_counts() == {"total": 7, "text_cleared": 1}
    after = _row(store, old)
    assert (after["summary"], after["content"], after["full_text"]) == ("", "", None)
    assert after["pruned_at"] == now.isoformat()
    kept = ("title", "url", "canonical_url", "published", "seen_at", "content_hash", "source")
    assert {k: after[k] for k in kept} == {k: before[k] for k in kept}
    assert count(store, "SELECT count(*) FROM decisions WHERE story_id = ?", old) == 2
    for sid in (mixed, related, duplicate, marked, undecided, young):
        assert _row(store, sid)["content"] != ""
    # the full-text index followed: the title is still found, the cleared text is not
    assert fts_hits(store, '"Lighthouse report 1"') == 1
    assert fts_hits(store, "barges") == 6 and fts_hits(store, "storm") == 6
    store.db.execute("INSERT INTO stories_fts (stories_fts, rank) VALUES ('integrity-check', 1)")
    # the young one's turn comes ten days later
    with store.foreign_keys_off(), store.atomic():
        assert store.prune_bodies(now - RETENTION + 10 * DAY, now, limit=100) == 1
    assert _cleared(store) == {old, young}


def test_stories_are_cleared_oldest_first_a_batch_at_a_time(store: Storage) -> None:
    sids = [_story(store, n, T0 + n * DAY, {"a": "unrelated"}) for n in (3, 1, 4, 2, 5)]
    by_age = [sids[1], sids[3], sids[0], sids[2], sids[4]]
    now = T0 + 400 * DAY
    cleared, floors = [], []
    for size in (2, 2, 1, 0):
        with store.foreign_keys_off(), store.atomic():
            assert store.prune_bodies(now - RETENTION, now, limit=2) == size
        cleared.append(_cleared(store))
        floors.append(_floor(store))
    assert cleared == [set(by_age[:2]), set(by_age[:4]), set(by_age), set(by_age)]
    # the next search starts at the last story cleared, then at the cutoff once none is left
    days = [(T0 + n * DAY).isoformat() for n in (2, 4)] + [(now - RETENTION).isoformat()] * 2
    assert floors == days


def _floor(store: Storage) -> str:
    return str(store.db.execute("SELECT kept_before FROM retention_state").fetchone()[0])


def test_the_stories_that_keep_their_text_are_not_read_again(store: Storage) -> None:
    """Past the floor, the next search starts there: the related, marked and undecided
    stories before it are not read again. A story stored as first seen before it (a clock
    set back, a replay) moves it back."""
    kept = [
        _story(store, 0, T0, {"a": "development"}),
        _story(store, 1, T0 + DAY, {"a": "unrelated"}, feedback="relevant"),
        _story(store, 2, T0 + 2 * DAY, {}),
    ]
    old = _story(store, 10, T0 + 10 * DAY, {"a": "unrelated"})
    now = T0 + 200 * DAY
    with store.foreign_keys_off(), store.atomic():
        assert store.prune_bodies(now - RETENTION, now, limit=10) == 1
    assert _cleared(store) == {old} and _floor(store) == (now - RETENTION).isoformat()
    plan = " ".join(
        str(step[-1])
        for step in store.db.execute(
            "EXPLAIN QUERY PLAN " + _PRUNABLE, [_floor(store), now.isoformat(), 1]
        )
    )
    assert "stories_unpruned (seen_at>? AND seen_at<?)" in plan and "TEMP B-TREE" not in plan
    # a row put below the floor behind the store's back is not found: the search starts there
    store.db.execute(
        "UPDATE stories SET seen_at = ? WHERE id = ?", [(T0 + 3 * DAY).isoformat(), kept[2]]
    )
    store.db.execute(
        "INSERT INTO decisions (story_id, topic, status, score, reasons, decided_at) "
        "VALUES (?, 'a', 'unrelated', 0.1, '[]', ?)",
        [kept[2], T0.isoformat()],
    )
    assert not store.prunable(now - RETENTION + DAY)
    # stored through the store, a story first seen before the floor moves it back
    late = _story(store, 11, T0 + 5 * DAY, {"a": "unrelated"})
    assert _floor(store) == (T0 + 5 * DAY).isoformat()
    with store.foreign_keys_off(), store.atomic():
        assert store.prune_bodies(now - RETENTION + DAY, now, limit=10) == 1
    assert _cleared(store) == {old, late}
    assert _floor(store) == (now - RETENTION + DAY).isoformat()
    _story(store, 12, now, {"a": "unrelated"})  # a later one never raises it
    assert _floor(store) == (now - RETENTION + DAY).isoformat()


def test_a_cleared_story_edited_in_place_keeps_its_text_cleared(store: Storage) -> None:
    sid = _story(store, 1, T0, {"a": "unrelated"})
    young = _story(store, 2, T0 + 100 * DAY, {"a": "unrelated"})
    store.index_stories()
    now = T0 + 200 * DAY
    with store.foreign_keys_off(), store.atomic():
        assert store.prune_bodies(now - RETENTION, now, limit=10) == 1
    moved = "The barges were moved upriver."
    for story, n in ((sid, 1), (young, 2)):
        edited = replace(_entry(n, moved), title=f"Corrected {n}", content_hash=f"h{n}-edited")
        with store.atomic():
            store.update_story(story, edited, now)
    row = _row(store, sid)
    assert (row["title"], row["content_hash"]) == ("Corrected 1", "h1-edited")
    assert (row["summary"], row["content"], row["pruned_at"]) == ("", "", now.isoformat())
    assert _row(store, young)["content"] == moved  # not cleared: edited as ever
    assert fts_hits(store, "corrected") == 2 and fts_hits(store, "upriver") == 1
    store.db.execute("INSERT INTO stories_fts (stories_fts, rank) VALUES ('integrity-check', 1)")


def test_stories_cleared_before_they_were_indexed_are_indexed_without_their_text(
    store: Storage,
) -> None:
    sid = _story(store, 1, T0, {"a": "unrelated"})
    now = T0 + 200 * DAY
    with store.foreign_keys_off(), store.atomic():
        assert store.prune_bodies(now - RETENTION, now, limit=10) == 1
    store.index_stories()
    assert fts_hits(store, "lighthouse") == 1 and fts_hits(store, "barges") == 0
    store.db.execute("INSERT INTO stories_fts (stories_fts, rank) VALUES ('integrity-check', 1)")
    assert _row(store, sid)["content"] == ""


def test_cleared_stories_are_no_examples_of_what_is_unrelated(store: Storage) -> None:
    old = _story(store, 1, T0, {"a": "unrelated"})
    young = _story(store, 2, T0 + 100 * DAY, {"a": "unrelated"})
    pool = [row["id"] for row in store.judged_stories("a", ("unrelated",), limit=600)]
    assert pool == [old, young]
    now = T0 + 200 * DAY
    with store.foreign_keys_off(), store.atomic():
        store.prune_bodies(now - RETENTION, now, limit=10)
    assert [row["id"] for row in store.judged_stories("a", ("unrelated",), limit=600)] == [young]


def test_explain_and_feedback_say_the_text_was_cleared(store: Storage) -> None:
    sid = _story(store, 1, T0, {"a": "unrelated"})
    now = T0 + 200 * DAY
    with store.foreign_keys_off(), store.atomic():
        store.prune_bodies(now - RETENTION, now, limit=10)
    assert f"Its text was cleared at {now.isoformat()} (database.retention)" in explain(store, sid)
    assert "only its title counts" in record_feedback(store, sid, "irrelevant", now)
    assert "only its title" not in record_feedback(store, sid, "not-new", now)  # no example
    other = _story(store, 2, T0 + 100 * DAY, {"a": "unrelated"})
    assert "cleared" not in explain(store, other)
    assert "only its title" not in record_feedback(store, other, "relevant", now)


def test_an_upgraded_database_gets_the_column_and_its_stories_can_be_cleared(
    tmp_path: Path,
) -> None:
    path = tmp_path / "m.db"
    database_before(path, "m013_story_retention", {
        "title": "Harbour", "summary": "Boats came back.",
        "published": T0.isoformat(), "seen_at": T0.isoformat(),
    })  # fmt: skip
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO topics (name, created_at) VALUES ('a', ?)", [T0.isoformat()])
    conn.execute(
        "INSERT INTO decisions (story_id, topic, status, score, decided_at) "
        "VALUES ('s-old', 'a', 'unrelated', 0.0, ?)",
        [T0.isoformat()],
    )
    conn.commit()
    conn.close()
    store = Storage(path)
    try:
        assert _floor(store) == ""  # every story is searched the first time
        now = T0 + 365 * DAY
        with store.foreign_keys_off(), store.atomic():
            assert store.prune_bodies(now - RETENTION, now, limit=10) == 1
        assert _row(store, "s-old")["summary"] == ""
    finally:
        store.close()


# -- the daemon's path: the end of each poll cycle ----------------------------------------


def _opened(
    tmp_path: Path, feed_server: FeedServer, retention: str, entries: int
) -> AbstractContextManager[tuple[Storage, Clock, Pipeline]]:
    """`one_feed_pipeline` with this retention, from T0."""
    return one_feed_pipeline(tmp_path, feed_server, f'retention = "{retention}"', entries, T0)


CLEARED = "SELECT count(*) FROM stories WHERE pruned_at IS NOT NULL"


def test_a_poll_cycle_clears_old_unrelated_stories_once_an_hour(
    tmp_path: Path, feed_server: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:
    with _opened(tmp_path, feed_server, "180d", 3) as (storage, clock, pipeline):
        cycle(pipeline)
        statuses = "SELECT DISTINCT status FROM decisions"
        assert [r[0] for r in storage.db.execute(statuses)] == ["unrelated"]
        feed_server.route("/a.xml", Reply(200, rss(items("b", 1))))
        clock.now = T0 + 181 * DAY
        caplog.set_level(logging.INFO, logger="monitor.pipeline")
        cycle(pipeline)
        assert count(storage, CLEARED) == 3
        assert count(storage, "SELECT count(*) FROM stories WHERE summary = ''") == 3
        assert "retention: cleared the text of 3 unrelated stories" in caplog.text
        # one more story comes of age a minute later: not looked for until an hour has passed
        _old_unrelated(storage, clock.now - RETENTION + timedelta(minutes=1))
        clock.now += timedelta(minutes=30)
        cycle(pipeline)
        assert count(storage, CLEARED) == 3
        clock.now += timedelta(minutes=31)
        cycle(pipeline)
        assert count(storage, CLEARED) == 4


def _old_unrelated(storage: Storage, seen: datetime) -> str:
    with storage.atomic():
        sid = storage.insert_story(_entry(99), origin="elsewhere", feed_id=None, now=seen)
        storage.db.execute(
            "INSERT INTO decisions (story_id, topic, status, score, decided_at) "
            "VALUES (?, 't', 'unrelated', 0.0, ?)",
            [sid, seen.isoformat()],
        )
    return sid


def test_a_large_backlog_is_cleared_over_several_cycles(
    tmp_path: Path, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Turned on for a database of years: each cycle clears for at most PRUNE_SECONDS and
    the next cycle goes on, without waiting an hour."""
    with _opened(tmp_path, feed_server, "30d", 3) as (storage, clock, pipeline):
        cycle(pipeline)
        monkeypatch.setattr(pipeline_module, "PRUNE_BATCH", 1)
        monkeypatch.setattr(pipeline_module, "PRUNE_SECONDS", 0.0)
        clock.now = T0 + 31 * DAY
        cleared = []
        for _ in range(4):
            cycle(pipeline)
            clock.now += timedelta(minutes=1)
            cleared.append(count(storage, CLEARED))
        assert cleared == [1, 2, 3, 3]


def test_a_retention_of_zero_keeps_every_story(tmp_path: Path, feed_server: FeedServer) -> None:
    with _opened(tmp_path, feed_server, "0", 2) as (storage, clock, pipeline):
        cycle(pipeline)
        clock.now = T0 + 3650 * DAY
        cycle(pipeline)
        assert count(storage, CLEARED) == 0


def test_a_database_error_while_clearing_is_logged_not_raised(
    tmp_path: Path, feed_server: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:
    with _opened(tmp_path, feed_server, "1d", 2) as (storage, _, pipeline):
        storage.db.execute("DROP INDEX stories_unpruned")
        storage.db.execute("ALTER TABLE stories RENAME COLUMN pruned_at TO cleared")  # damaged
        pipeline._keep_retention(T0 + 10 * DAY)
    assert "retention not applied" in caplog.text and "pruned_at" in caplog.text


def test_a_short_retention_is_checked_ten_times_as_often(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    """A retention shorter than ten hours is looked at every tenth of it, not hourly."""
    with _opened(tmp_path, feed_server, "1h", 2) as (storage, clock, pipeline):
        cycle(pipeline)
        clock.now = T0 + timedelta(minutes=61)
        cycle(pipeline)
        assert count(storage, CLEARED) == 2
        _old_unrelated(storage, clock.now - timedelta(minutes=59))  # of age a minute later
        clock.now += timedelta(minutes=5)
        cycle(pipeline)
        assert count(storage, CLEARED) == 2
        clock.now += timedelta(minutes=2)
        cycle(pipeline)
        assert count(storage, CLEARED) == 3


def test_a_replay_of_an_old_archive_is_cleared_by_the_next_cycle(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    """Replayed items are first seen at their own time, before the floor the daemon had
    reached: storing them moves the floor back, so they are not skipped."""
    archive = tmp_path / "old.jsonl"
    archive.write_text(
        "".join(
            json.dumps({
                "url": f"https://archive.example/{n}", "title": f"Quarry report {n}",
                "published": (T0 - (100 - n) * DAY).isoformat(),
                "summary": f"Gravel lorries left the quarry {n} times, the council said.",
            }) + "\n"
            for n in range(3)
        )
    )  # fmt: skip
    with _opened(tmp_path, feed_server, "180d", 2) as (storage, clock, pipeline):
        cycle(pipeline)
        clock.now = T0 + 181 * DAY
        cycle(pipeline)
        assert count(storage, CLEARED) == 2 and _floor(storage) == (T0 + DAY).isoformat()
        pipeline.replay(archive)
        assert _floor(storage) == (T0 - 100 * DAY).isoformat()
        clock.now += timedelta(minutes=61)
        cycle(pipeline)
        assert count(storage, CLEARED) == 5


def test_stories_stored_after_the_clock_was_set_back_are_cleared_in_their_turn(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    """The clock ran a year ahead for one cycle (a bad RTC corrected by NTP), in the same
    running daemon: neither the floor it set nor its next check, a year ahead too, may hide
    the stories polled once the clock is right again."""
    with _opened(tmp_path, feed_server, "180d", 2) as (storage, clock, pipeline):
        cycle(pipeline)
        clock.now = T0 + 400 * DAY
        cycle(pipeline)
        assert count(storage, CLEARED) == 2
        clock.now = T0 + DAY
        feed_server.route("/a.xml", Reply(200, rss(items("c", 3))))
        cycle(pipeline)
        assert _floor(storage) == (T0 + DAY).isoformat()
        clock.now = T0 + 182 * DAY
        cycle(pipeline)
        assert count(storage, CLEARED) == 5


def test_clearing_frees_the_pages_the_text_held(store: Storage) -> None:
    """A row made shorter in place keeps its pages; a cleared story is taken out and put
    back, so the pages its text held are free for the next stories."""
    text = "Gravel barges moored below the weir while the lock gates were mended. " * 20
    with store.atomic():
        for n in range(300):
            entry = replace(_entry(n, text), summary=text[:400])
            sid = store.insert_story(entry, origin="o", feed_id=None, now=T0)
            store.db.execute(
                "INSERT INTO decisions (story_id, topic, status, score, decided_at) "
                "VALUES (?, 'a', 'unrelated', 0.0, ?)",
                [sid, T0.isoformat()],
            )
    store.index_stories()
    before = table_bytes(store, "stories")
    now = T0 + 200 * DAY
    with store.foreign_keys_off(), store.atomic():
        assert store.prune_bodies(now - RETENTION, now, limit=1000) == 300
    assert before - table_bytes(store, "stories") >= 0.8 * 300 * (len(text) + 400)
    assert count(store, "SELECT count(*) FROM decisions") == 300
    store.db.execute("INSERT INTO stories_fts (stories_fts, rank) VALUES ('integrity-check', 1)")


def test_clearing_needs_the_foreign_keys_off_and_they_come_back_on(store: Storage) -> None:
    """With them on, taking a story out would take its decisions with it."""
    sid = _story(store, 1, T0, {"a": "unrelated"})
    now = T0 + 200 * DAY
    with pytest.raises(RuntimeError, match="foreign keys must be off"), store.atomic():
        store.prune_bodies(now - RETENTION, now, limit=10)
    assert count(store, "SELECT count(*) FROM decisions WHERE story_id = ?", sid) == 1
    with (
        pytest.raises(RuntimeError, match="outside a transaction"),
        store.atomic(),
        store.foreign_keys_off(),
    ):
        pass
    with pytest.raises(ValueError), store.foreign_keys_off():
        assert store.db.execute("PRAGMA foreign_keys").fetchone()[0] == 0
        raise ValueError("a failure inside")
    assert store.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_a_column_another_process_adds_keeps_its_values(store: Storage, tmp_path: Path) -> None:
    """A newer version's migration, or a user's `sqlite-utils add-column`, while this
    process runs: a cleared story is put back with every column the table has now."""
    first = _story(store, 1, T0, {"a": "unrelated"})
    second = _story(store, 2, T0 + DAY, {"a": "unrelated"})
    now = T0 + 200 * DAY
    with store.foreign_keys_off(), store.atomic():
        assert store.prune_bodies(T0 + DAY / 2, now, limit=10) == 1
    other = sqlite3.connect(tmp_path / "m.db")
    other.execute('ALTER TABLE stories ADD COLUMN "reader note" TEXT')
    other.execute("UPDATE stories SET \"reader note\" = 'keep me'")
    other.commit()
    other.close()
    with store.foreign_keys_off(), store.atomic():
        assert store.prune_bodies(now - RETENTION, now, limit=10) == 1
    notes = dict(store.db.execute('SELECT id, "reader note" FROM stories').fetchall())
    assert notes == {first: "keep me", second: "keep me"}
    assert _cleared(store) == {first, second}
