"""Raw item digests on stories: the migration that adds them, and what updates re-index."""

from __future__ import annotations

from pathlib import Path

from monitor.storage import Storage
from tests.storage_helpers import database_before
from tests.storage_helpers import fts_hits as _fts_hits


def test_migration_adds_raw_hash_and_narrows_the_fts_update_trigger(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    database_before(path, "m004_raw_item_hash", {
        "id": "s_old", "title": "Harbour reopens", "summary": "Boats are back.",
        "content_hash": "h1",
    })  # fmt: skip

    store = Storage(path)
    row = store.db.execute("SELECT raw_hash FROM stories WHERE id = 's_old'").fetchone()
    assert row == (None,)  # filled in when its feed next repeats it
    assert store.known_raw("https://e.org/rss", [42]) == set()
    store.set_raw_hash("s_old", 42)
    assert store.known_raw("https://e.org/rss", [42, 43]) == {42}
    assert store.known_raw("https://other.example/rss", [42]) == set()  # per feed
    ran: list[str] = []
    store.db.conn.set_trace_callback(ran.append)
    store.known_raw("https://e.org/rss", [1, 2])
    store.db.conn.set_trace_callback(None)
    (sql,) = [s for s in ran if "raw_hash IN" in s]
    plan = " ".join(str(r[-1]) for r in store.db.execute(f"EXPLAIN QUERY PLAN {sql}"))
    assert "stories_raw_hash" in plan

    # the FTS row follows the indexed text, once, and only text changes rewrite it
    assert _fts_hits(store, "boats") == 1
    store.db.conn.execute("UPDATE stories SET title = 'Harbour shut' WHERE id = 's_old'")
    assert (_fts_hits(store, "reopens"), _fts_hits(store, "shut")) == (0, 1)
    trigger = store.db.execute("SELECT sql FROM sqlite_master WHERE name = 'stories_au'")
    assert "UPDATE OF title, summary, content" in trigger.fetchone()[0]
    store.close()
