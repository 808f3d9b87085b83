"""The near-duplicate index's window (`database.dedupe_window`): a story's band keys leave
the index once it was signed longer ago than the window; the seeds' keys stay."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor import dedupe
from monitor.config import load_settings
from monitor.pipeline import Pipeline
from monitor.storage import Storage
from tests.feedserver import FeedServer, Reply
from tests.storage_helpers import database_before, table_bytes
from tests.test_pipeline import count, cycle, items, one_feed_pipeline, rss
from tests.test_storage_lsh import CYCLING, WIRE, _add, _sig

ROOT = Path(__file__).resolve().parents[1]
EVAL2 = ROOT / "tests/data/eval2"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
MINUTE = timedelta(minutes=1)
WINDOW = timedelta(days=90)
MARKET = (
    "The weekly market moves to the harbour square from next month while the old hall is "
    "repaired, and stallholders will pay the same fees until the work is finished."
)


def _found(store: Storage, text: str) -> list[str]:
    """The stored stories a copy of ``text`` would be compared with."""
    copy = _sig(text + " Read more on our site.")
    return [row[0] for row in store.dedupe_candidates(dedupe.band_keys(copy))]


def _keys(store: Storage) -> int:
    return int(store.db.execute("SELECT count(*) FROM story_lsh").fetchone()[0])


def _signatures(store: Storage) -> dict[str, bool]:
    """Each signature row's story, and whether it still holds its values."""
    rows = store.db.execute("SELECT story_id, length(signature) FROM story_signatures")
    return {story: size > 0 for story, size in rows}


@pytest.fixture
def store(tmp_path: Path) -> Storage:
    opened = Storage(tmp_path / "m.db")
    yield opened
    opened.close()


def _signed(store: Storage, story_id: str, text: str, at: datetime, window: timedelta) -> None:
    """A story signed and dated at ``at``, in one transaction, as the pipeline does it."""
    with store.atomic():
        _add(store, story_id, _sig(text))
        store.mark_lsh(at, window)


def test_old_stories_leave_the_index_seeds_and_younger_ones_stay(store: Storage) -> None:
    _add(store, "seed:wire.txt", _sig(WIRE))
    _signed(store, "s-old", CYCLING, T0, WINDOW)
    _signed(store, "s-young", MARKET, T0 + 30 * DAY, WINDOW)
    assert store.keep_lsh_window(T0 + 30 * DAY, WINDOW) == 0
    assert _found(store, CYCLING) == ["s-old"]  # still in the recent keys, not yet merged

    removed = store.keep_lsh_window(T0 + 100 * DAY, WINDOW)

    assert removed == dedupe.BANDS  # s-old's keys, merged from the recent ones first
    assert _found(store, CYCLING) == []
    assert _found(store, WIRE) == ["seed:wire.txt"]
    assert _found(store, MARKET) == ["s-young"]
    assert _keys(store) == 2 * dedupe.BANDS
    # nothing finds s-old's signature any more: its values went with its keys
    assert _signatures(store) == {"seed:wire.txt": True, "s-old": False, "s-young": True}
    stale = store.db.execute("SELECT stale FROM lsh_filter_state").fetchone()[0]
    assert stale == 0  # the lookups above rebuilt the filter without the removed keys
    assert store._lsh_filter is not None and sum(store._lsh_filter.counts) == 2 * dedupe.BANDS


def test_keys_leave_a_tenth_of_the_window_at_a_time(store: Storage) -> None:
    _signed(store, "s-old", CYCLING, T0, WINDOW)
    store.keep_lsh_window(T0, WINDOW)
    # 95 days on, s-old is past the window, but only by 5 of the 9 days that make a batch
    assert store.keep_lsh_window(T0 + 95 * DAY, WINDOW) == 0
    assert _found(store, CYCLING) == ["s-old"]
    assert store.keep_lsh_window(T0 + 99 * DAY + timedelta(hours=1), WINDOW) == dedupe.BANDS
    assert _found(store, CYCLING) == []


def test_marks_close_a_hundredth_of_the_window_apart(store: Storage) -> None:
    """Signatures within a hundredth of the window share a mark whose time moves on (they
    leave a little later, never earlier); past that, a new mark starts."""
    window, minute = timedelta(hours=100), timedelta(minutes=1)  # a hundredth: 60 minutes
    _signed(store, "s-1", CYCLING, T0, window)
    _signed(store, "s-2", MARKET, T0 + 5 * minute, window)
    _signed(store, "s-3", WIRE, T0 + 30 * minute, window)  # extends the second mark
    _signed(store, "s-4", WIRE + " Again.", T0 + 70 * minute, window)  # a new one
    marks = [tuple(row) for row in store.db.execute("SELECT upto, at FROM lsh_marks")]
    assert marks == [
        (1, T0.isoformat()),
        (3, (T0 + 30 * minute).isoformat()),
        (4, (T0 + 70 * minute).isoformat()),
    ]
    # (removed all at once: the oldest is a tenth of the window, 10 hours, past it)
    assert store.keep_lsh_window(T0 + 110 * 60 * minute, window) == 4 * dedupe.BANDS


def test_a_story_edited_after_its_window_gets_no_keys_back(store: Storage) -> None:
    """Its window runs from its first signing: an edit months later does not renew it
    (its new keys would otherwise stay for good, below the ranges already removed)."""
    _add(store, "seed:wire.txt", _sig(WIRE))
    _signed(store, "s-old", CYCLING, T0, WINDOW)
    assert store.keep_lsh_window(T0 + 100 * DAY, WINDOW) == dedupe.BANDS
    _signed(store, "s-old", CYCLING + " Updated with a correction.", T0 + 101 * DAY, WINDOW)
    assert _found(store, CYCLING) == []
    assert _signatures(store)["s-old"] is False  # and no new values that nothing would read
    _add(store, "seed:wire.txt", _sig(WIRE + " The seed file was edited."))  # seeds: kept
    assert _found(store, WIRE) == ["seed:wire.txt"]
    _signed(store, "s-new", MARKET, T0 + 101 * DAY, WINDOW)
    _signed(store, "s-new", MARKET + " Updated.", T0 + 102 * DAY, WINDOW)  # within it
    assert _found(store, MARKET) == ["s-new"]


def test_a_window_of_zero_keeps_every_story(store: Storage) -> None:
    _signed(store, "s-old", CYCLING, T0, timedelta(0))
    assert store.keep_lsh_window(T0 + 1000 * DAY, timedelta(0)) == 0
    assert _found(store, CYCLING) == ["s-old"]
    assert store.db.execute("SELECT count(*) FROM lsh_marks").fetchone()[0] == 0


def test_the_window_is_kept_across_processes(tmp_path: Path) -> None:
    first = Storage(tmp_path / "m.db")
    _signed(first, "s-old", CYCLING, T0, WINDOW)
    first.close()
    second = Storage(tmp_path / "m.db")
    _signed(second, "s-young", MARKET, T0 + 100 * DAY, WINDOW)
    assert second.keep_lsh_window(T0 + 100 * DAY, WINDOW) == dedupe.BANDS
    assert _found(second, CYCLING) == [] and _found(second, MARKET) == ["s-young"]
    marks = second.db.execute("SELECT upto, pruned FROM lsh_marks ORDER BY upto").fetchall()
    assert [tuple(row) for row in marks] == [(1, 1), (2, 0)]  # pruned ones are folded away
    second.close()


def test_a_replay_beside_the_daemon_dates_and_removes_only_its_own_stories(
    tmp_path: Path,
) -> None:
    daemon, replay = Storage(tmp_path / "m.db"), Storage(tmp_path / "m.db")
    _signed(daemon, "live", CYCLING, T0, WINDOW)
    assert daemon.keep_lsh_window(T0, WINDOW) == 0  # nothing due for ~99 days, it knows
    _signed(replay, "archived", MARKET, T0 - 300 * DAY, WINDOW)
    assert replay.keep_lsh_window(T0 - 190 * DAY, WINDOW) == dedupe.BANDS
    assert _found(replay, MARKET) == [] and _found(daemon, CYCLING) == ["live"]
    _signed(replay, "archived-2", WIRE, T0 - 300 * DAY, WINDOW)
    # the daemon learns of the replay's old range at its next cycle, not in 99 days
    assert daemon.lsh_window_due(T0 + DAY, WINDOW)
    assert daemon.keep_lsh_window(T0 + DAY, WINDOW) == dedupe.BANDS
    assert _found(daemon, WIRE) == [] and _found(daemon, CYCLING) == ["live"]
    daemon.close()
    replay.close()


def test_a_replay_after_the_daemon_s_marks_keeps_marks_of_its_own(store: Storage) -> None:
    """A replay of an old archive into a database the daemon has marked: each day of the
    archive gets a mark at its own time, and the archive's stories leave in turn."""
    _signed(store, "live-1", CYCLING, T0, WINDOW)
    _signed(store, "live-2", WIRE, T0 + 2 * DAY, WINDOW)
    start = T0 - 400 * DAY
    for day in range(200):
        store.keep_lsh_window(start + day * DAY, WINDOW)
        _signed(
            store,
            f"archived-{day}",
            f"{MARKET} Day {day} of the archive.",
            start + day * DAY,
            WINDOW,
        )
    left = _found(store, MARKET + " Day 0 of the archive.")  # (its near-copies too)
    assert "archived-0" not in left and "archived-99" not in left  # gone after ~100 days
    assert "archived-199" in left and "archived-110" in left
    assert _found(store, CYCLING) == ["live-1"] and _found(store, WIRE) == ["live-2"]


def test_the_daemon_never_extends_a_replay_s_mark(tmp_path: Path) -> None:
    """The daemon and a replay taking turns: neither extends the other's mark, so the
    replay's stories keep their archive times and leave as such."""
    daemon, replay = Storage(tmp_path / "m.db"), Storage(tmp_path / "m.db")
    _signed(daemon, "live-0", CYCLING, T0, WINDOW)
    for turn in range(1, 6):
        _signed(replay, f"archived-{turn}", f"{MARKET} Item {turn}.", T0 - 300 * DAY, WINDOW)
        _signed(daemon, f"live-{turn}", f"{WIRE} Item {turn}.", T0 + turn * 5 * MINUTE, WINDOW)
    assert replay.keep_lsh_window(T0 - 190 * DAY, WINDOW) == 5 * dedupe.BANDS
    assert _found(daemon, f"{MARKET} Item 1.") == []
    assert _found(daemon, f"{WIRE} Item 1.") == [f"live-{turn}" for turn in range(1, 6)]
    daemon.close()
    replay.close()


@contextmanager
def _pipeline(tmp_path: Path, window: str, seeds: Path) -> Iterator[Pipeline]:
    """A pipeline on ``tmp_path/m.db`` with this window and one topic on ``seeds``."""
    config = tmp_path / "monitor.toml"
    config.write_text(
        f'[database]\npath = "m.db"\ndedupe_window = "{window}"\n\n'
        f'[[topics]]\nname = "t"\nseeds = ["{seeds}"]\n'
    )
    settings = load_settings(config)
    storage = Storage(settings.database_path)
    pipeline = Pipeline(settings, storage)
    try:
        yield pipeline
    finally:
        pipeline.close()
        storage.close()


def _replay_wire_copy_days_later(tmp_path: Path, days: int, window: str) -> str:
    """Replay eval2's G01 pair (a story and its wire copy) with the copy ``days`` later,
    after an unrelated item an hour before the original; the copy's decision status."""
    rows = [json.loads(line) for line in (EVAL2 / "stream.jsonl").read_text().splitlines()]
    original, copy = (row for row in rows if row.get("dup_group") == "G01")
    start = datetime.fromisoformat(original["published"])
    other = {**rows[0], "published": (start - timedelta(hours=1)).isoformat()}
    assert other["id"] not in (original["id"], copy["id"]) and not other.get("dup_group")
    moved = datetime.fromisoformat(copy["published"]) + timedelta(days=days)
    copy = {**copy, "published": moved.isoformat()}
    archive = tmp_path / "pair.jsonl"
    archive.write_text("".join(json.dumps(row) + "\n" for row in (other, original, copy)))
    with _pipeline(tmp_path, window, EVAL2 / "seeds") as pipeline:
        pipeline.replay(archive)
    db = sqlite3.connect(tmp_path / "m.db")
    status = db.execute(
        "SELECT d.status FROM decisions d JOIN stories s ON s.id = d.story_id WHERE s.url = ?",
        [copy["url"]],
    ).fetchone()[0]
    db.close()
    return str(status)


def test_a_wire_copy_within_the_window_is_a_duplicate(tmp_path: Path) -> None:
    assert _replay_wire_copy_days_later(tmp_path, 10, "90d") == "duplicate"


@pytest.mark.parametrize(("days", "window"), [(10, "2d"), (120, "90d")])
def test_a_wire_copy_after_the_window_is_judged_afresh(
    tmp_path: Path, days: int, window: str
) -> None:
    """Each replayed story is marked with its own time, as a daemon marks it at the end of
    its cycle: the original leaves the index once the window (and a tenth) has passed."""
    assert _replay_wire_copy_days_later(tmp_path, days, window) != "duplicate"


def test_an_upgraded_database_marks_its_stories_with_the_time_of_the_upgrade(
    tmp_path: Path,
) -> None:
    path = tmp_path / "m.db"
    database_before(path, "m011_lsh_window", {"title": "Cycle race", "summary": CYCLING})
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO story_signatures (story_id, kind, size, signature) VALUES (?, ?, ?, ?)",
        ["s-old", "body", 1, _sig(CYCLING).to_bytes()],
    )
    conn.executemany(
        "INSERT INTO story_lsh (band, signature) VALUES (?, 1)",
        [(band,) for band in dedupe.band_keys(_sig(CYCLING))],
    )
    conn.commit()
    conn.close()
    before = datetime.now(UTC).replace(microsecond=0)
    store = Storage(path)
    [(upto, at)] = store.db.execute("SELECT upto, at FROM lsh_marks").fetchall()
    assert upto == 1 and datetime.fromisoformat(at) >= before
    # a replay of a two-year-old archive, a year long, must not date the story back
    assert store.keep_lsh_window(T0 - 700 * DAY, WINDOW) == 0
    _signed(store, "s-replayed", MARKET, T0 - 700 * DAY, WINDOW)  # dated at its own time
    assert store.keep_lsh_window(T0 - 500 * DAY, WINDOW) == dedupe.BANDS  # its keys only
    assert _found(store, CYCLING) == ["s-old"] and _found(store, MARKET) == []
    store.close()


def test_an_upgrade_empties_the_signatures_whose_keys_left_before_it(tmp_path: Path) -> None:
    """m014: signatures of ranges removed by an earlier version lose their values; the
    seeds' (even inside a removed range) and the ones still indexed keep theirs."""
    path = tmp_path / "m.db"
    database_before(path, "m014_signatures_leave_with_their_keys", {
        "id": "s-young", "title": "Market", "summary": MARKET,
        "published": T0.isoformat(), "seen_at": T0.isoformat(),
    })  # fmt: skip
    conn = sqlite3.connect(path)
    for story, text in (("s-old", CYCLING), ("seed:wire.txt", WIRE), ("s-young", MARKET)):
        conn.execute(
            "INSERT INTO story_signatures (story_id, kind, size, signature) VALUES (?, ?, ?, ?)",
            [story, "body", 1, _sig(text).to_bytes()],
        )
    conn.execute("DELETE FROM lsh_marks")
    conn.execute("INSERT INTO lsh_marks (upto, at, pruned) VALUES (2, ?, 1)", [T0.isoformat()])
    conn.execute("INSERT INTO lsh_marks (upto, at) VALUES (3, ?)", [(T0 + DAY).isoformat()])
    conn.commit()
    conn.close()
    store = Storage(path)
    assert _signatures(store) == {"s-old": False, "seed:wire.txt": True, "s-young": True}
    store.close()


def test_a_rolled_back_removal_is_tried_again(store: Storage) -> None:
    _signed(store, "s-old", CYCLING, T0, WINDOW)
    store.keep_lsh_window(T0, WINDOW)
    with pytest.raises(RuntimeError), store.atomic():
        assert store.keep_lsh_window(T0 + 100 * DAY, WINDOW) == dedupe.BANDS
        raise RuntimeError("the transaction fails")
    assert _found(store, CYCLING) == ["s-old"]
    assert store.keep_lsh_window(T0 + 100 * DAY, WINDOW) == dedupe.BANDS
    assert _found(store, CYCLING) == []


def test_a_poll_cycle_keeps_the_window(tmp_path: Path, feed_server: FeedServer) -> None:
    """The daemon's path: the end of each poll cycle marks and removes."""
    with one_feed_pipeline(tmp_path, feed_server, 'dedupe_window = "1h"', 2, T0) as (
        storage,
        clock,
        pipeline,
    ):
        cycle(pipeline)
        signed = storage.db.execute("SELECT max(id) FROM story_signatures").fetchone()[0]
        assert [tuple(r) for r in storage.db.execute("SELECT upto, at FROM lsh_marks")] == [
            (signed, T0.isoformat())
        ]
        assert count(storage, "SELECT count(*) FROM story_lsh_recent") == 3  # seed + 2
        feed_server.route("/a.xml", Reply(200, rss(items("b", 1))))
        clock.now = T0 + timedelta(hours=2)
        cycle(pipeline)
        stories = "SELECT id FROM story_signatures WHERE story_id NOT LIKE 'seed:%' AND id <= ?"
        left = f"SELECT count(*) FROM story_lsh WHERE signature IN ({stories})"
        assert count(storage, left, signed) == 0
        assert count(storage, "SELECT count(*) FROM story_lsh_recent") <= 1  # the new one


def test_a_database_error_while_keeping_the_window_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with _pipeline(tmp_path, "90d", ROOT / "seeds") as pipeline:
        _add(pipeline.storage, "s-old", _sig(CYCLING))
        pipeline.storage.db.execute("DROP TABLE lsh_marks")  # damaged, as far as this goes
        pipeline._keep_window(T0)
    assert "near-duplicate index window not kept" in caplog.text and "lsh_marks" in caplog.text


def test_emptied_signatures_free_their_pages(store: Storage) -> None:
    """Emptied in place they would keep their pages: taken out and put back, they do not."""
    with store.atomic():
        for n in range(200):
            _add(store, f"s-{n}", _sig(f"{CYCLING} Stage {n} of the race."))
        store.mark_lsh(T0, WINDOW)
    store.keep_lsh_window(T0, WINDOW)
    before = table_bytes(store, "story_signatures")
    with store.atomic():
        assert store.keep_lsh_window(T0 + 100 * DAY, WINDOW) == 200 * dedupe.BANDS
    values = 200 * len(_sig(CYCLING).to_bytes())
    assert before - table_bytes(store, "story_signatures") >= 0.8 * values
    assert set(_signatures(store).values()) == {False}


def test_an_emptied_signature_keeps_a_column_another_process_added(
    store: Storage, tmp_path: Path
) -> None:
    _signed(store, "s-old", CYCLING, T0, WINDOW)
    store.keep_lsh_window(T0, WINDOW)
    other = sqlite3.connect(tmp_path / "m.db")
    other.execute('ALTER TABLE story_signatures ADD COLUMN "checked by" TEXT')
    other.execute("UPDATE story_signatures SET \"checked by\" = 'a reviewer'")
    other.commit()
    other.close()
    assert store.keep_lsh_window(T0 + 100 * DAY, WINDOW) == dedupe.BANDS
    row = store.db.execute('SELECT length(signature), "checked by" FROM story_signatures')
    assert row.fetchall() == [(0, "a reviewer")]
