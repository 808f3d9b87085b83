"""The near-duplicate index in SQLite: integer LSH keys, re-signing, and the migration."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlite_utils import Database

from monitor import dedupe
from monitor.storage import Storage
from monitor.storage.schema import migrations

WIRE = (
    "The city council voted on Tuesday to close the old town to private cars from March, "
    "after two years of consultation with residents, traders and the transport authority, "
    "and said delivery vans would keep a morning window."
)


def _sig(text: str) -> dedupe.Signature:
    sig = dedupe.signature("", text)
    assert sig is not None
    return sig


def _add(store: Storage, story_id: str, sig: dedupe.Signature) -> None:
    store.add_signature(
        story_id, kind=sig.kind, size=sig.size, signature=sig.to_bytes(),
        bands=dedupe.band_keys(sig),
    )  # fmt: skip


def test_band_keys_are_distinct_64_bit_integers_per_band_and_kind() -> None:
    sig = _sig(WIRE)
    keys = dedupe.band_keys(sig)
    assert len(keys) == dedupe.BANDS == len(set(keys))
    assert all(-(2**63) <= k < 2**63 for k in keys)
    as_title = dedupe.Signature(sig.values, sig.size, "title")
    assert not set(keys) & set(dedupe.band_keys(as_title)), "kinds must never meet"


def test_candidates_oldest_first_without_the_story_itself(tmp_path: Path) -> None:
    store = Storage(tmp_path / "m.db")
    original, copy = _sig(WIRE), _sig(WIRE + " Read more on our site.")
    other = _sig(
        "A cycle race crosses the mountains on Sunday with two hundred riders from twelve "
        "countries, and the organisers expect thousands of visitors along the climbs."
    )
    _add(store, "a-original", original)
    _add(store, "b-other", other)
    _add(store, "c-copy", copy)
    found = store.dedupe_candidates(dedupe.band_keys(copy), exclude="c-copy")
    assert [row[0] for row in found] == ["a-original"]
    found = store.dedupe_candidates(dedupe.band_keys(copy))
    assert [row[0] for row in found] == ["a-original", "c-copy"]
    store.close()


def test_resigning_replaces_the_keys_and_keeps_the_place(tmp_path: Path) -> None:
    store = Storage(tmp_path / "m.db")
    first = _sig(WIRE)
    edited = _sig(
        "Completely different words: the council also doubled the tax on tourist flats, "
        "which hotel owners had asked for, and will spend it on the bus network next year."
    )
    _add(store, "s1", first)
    _add(store, "s2", _sig(WIRE + " An extra closing sentence for the second copy."))
    rowid = store.db.execute("SELECT id FROM story_signatures WHERE story_id = 's1'").fetchone()
    _add(store, "s1", edited)
    conn = store.db.conn
    assert conn.execute("SELECT id FROM story_signatures WHERE story_id = 's1'").fetchone() == (
        rowid
    )
    keys = {row[0] for row in conn.execute("SELECT band FROM story_lsh WHERE signature = ?", rowid)}
    assert keys == set(dedupe.band_keys(edited))
    # the old text now finds only s2
    found = store.dedupe_candidates(dedupe.band_keys(first))
    assert [row[0] for row in found] == ["s2"]
    store.close()


def test_migration_rebuilds_integer_keys_from_stored_signatures(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    old = Database(conn)
    migrations.apply(old, stop_before="m003_lsh_integer_keys")
    sig = _sig(WIRE)
    conn.execute(
        "INSERT INTO story_signatures (story_id, kind, size, signature) VALUES (?, ?, ?, ?)",
        ["old-story", sig.kind, sig.size, sig.to_bytes()],
    )
    conn.executemany(
        "INSERT INTO story_bands (band, story_id) VALUES (?, ?)",
        [(f"b{i}:legacy", "old-story") for i in range(dedupe.BANDS)],
    )
    conn.execute(  # a damaged signature must not stop the upgrade
        "INSERT INTO story_signatures (story_id, kind, size, signature) VALUES (?, ?, ?, ?)",
        ["damaged", "body", 3, b"\x01\x02\x03"],
    )
    conn.close()

    store = Storage(path)
    tables = set(store.db.table_names())
    assert "story_bands" not in tables and "story_lsh" in tables
    keys = [row[0] for row in store.db.execute("SELECT band FROM story_lsh ORDER BY band")]
    assert keys == sorted(dedupe.band_keys(sig))
    found = store.dedupe_candidates(dedupe.band_keys(_sig(WIRE + " Read more.")))
    assert [row[0] for row in found] == ["old-story"]
    _add(store, "new-story", _sig("Another text entirely: " + WIRE[::-1]))
    store.db.execute("DELETE FROM story_signatures WHERE story_id = 'damaged'")
    store.db.conn.execute("VACUUM")  # keys point at an INTEGER PRIMARY KEY: VACUUM keeps it
    found = store.dedupe_candidates(dedupe.band_keys(_sig(WIRE + " Read more.")))
    assert [row[0] for row in found] == ["old-story"]
    store.close()
