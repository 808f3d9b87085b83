"""The near-duplicate index in SQLite: integer LSH keys, re-signing, and the migration."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import numpy as np
from sqlite_utils import Database

from monitor import dedupe
from monitor.storage import Storage
from monitor.storage.schema import migrations

WIRE = (
    "The city council voted on Tuesday to close the old town to private cars from March, "
    "after two years of consultation with residents, traders and the transport authority, "
    "and said delivery vans would keep a morning window."
)

CYCLING = (
    "A cycle race crosses the mountains on Sunday with two hundred riders from twelve "
    "countries, and the organisers expect thousands of visitors along the climbs."
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


def test_band_keys_keep_the_stored_scheme() -> None:
    # Keys already in story_lsh must still be found: each key is the signed little-endian
    # 8-byte blake2b of the band's four rows, personalised with the kind's initial and the
    # band's number (computed here from that definition, not by the module).
    for kind in ("body", "title"):
        sig = dedupe.Signature(_sig(WIRE).values, 40, kind)
        raw = sig.values.astype("<u8").tobytes()
        expected = [
            int.from_bytes(
                hashlib.blake2b(
                    raw[band * 32 : band * 32 + 32], digest_size=8,
                    person=kind[0].encode() + bytes([band]),
                ).digest(),
                "little",
                signed=True,
            )
            for band in range(32)
        ]  # fmt: skip
        assert dedupe.band_keys(sig) == expected


def test_candidates_oldest_first_without_the_story_itself(tmp_path: Path) -> None:
    store = Storage(tmp_path / "m.db")
    original, copy = _sig(WIRE), _sig(WIRE + " Read more on our site.")
    other = _sig(CYCLING)
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
    assert _keys_of(store, rowid[0]) == set(dedupe.band_keys(edited))
    # the old text now finds only s2
    found = store.dedupe_candidates(dedupe.band_keys(first))
    assert [row[0] for row in found] == ["s2"]
    store.merge_lsh()
    _add(store, "s1", first)  # re-signed again, its keys now in the large index
    assert _keys_of(store, rowid[0]) == set(dedupe.band_keys(first))
    assert [row[0] for row in store.dedupe_candidates(dedupe.band_keys(edited))] == []
    store.close()


def _keys_of(store: Storage, sig_id: int) -> set[int]:
    """A signature's band keys, wherever they are (recent or merged)."""
    merged = [
        row[0]
        for row in store.db.execute("SELECT band FROM story_lsh WHERE signature = ?", [sig_id])
    ]
    recent = [
        int.from_bytes(blob[i : i + 8], "little", signed=True)
        for (blob,) in store.db.execute(
            "SELECT bands FROM story_lsh_recent WHERE signature = ?", [sig_id]
        )
        for i in range(0, len(blob), 8)
    ]
    keys = merged + recent
    assert len(keys) == len(set(keys)), "a key in both tables"
    return set(keys)


def _recent_keys(conn: sqlite3.Connection) -> int:
    """How many band keys wait in `story_lsh_recent` (8 bytes each)."""
    row = conn.execute("SELECT coalesce(sum(length(bands)), 0) / 8 FROM story_lsh_recent")
    return int(row.fetchone()[0])


def _texts(count: int) -> list[str]:
    return [f"Report number {i} from the valley: " + WIRE.replace("council", f"board {i}")
            for i in range(count)]  # fmt: skip


def test_recent_keys_are_merged_in_batches_and_found_before_and_after(tmp_path: Path) -> None:
    store = Storage(tmp_path / "m.db")
    store.LSH_MERGE_ROWS = 3 * dedupe.BANDS  # a merge every third story
    conn = store.db.conn

    def counts() -> tuple[int, int]:
        large = conn.execute("SELECT count(*) FROM story_lsh").fetchone()[0]
        return int(large), _recent_keys(conn)

    sigs = [_sig(text) for text in _texts(4)]
    _add(store, "s0", sigs[0])
    _add(store, "s1", sigs[1])
    assert counts() == (0, 2 * dedupe.BANDS)
    probe = dedupe.band_keys(_sig(WIRE + " Read more."))
    before = [row[0] for row in store.dedupe_candidates(probe)]
    assert before[:2] == ["s0", "s1"]
    _add(store, "s2", sigs[2])  # the third: merged
    assert counts() == (3 * dedupe.BANDS, 0)
    _add(store, "s3", sigs[3])
    assert counts() == (3 * dedupe.BANDS, dedupe.BANDS)
    after = [row[0] for row in store.dedupe_candidates(probe)]
    assert after[:2] == before[:2] and set(after) <= {"s0", "s1", "s2", "s3"}
    for sig_id in range(1, 5):
        assert len(_keys_of(store, sig_id)) == dedupe.BANDS
    store.close()


def test_a_rolled_back_merge_leaves_the_keys_for_the_next_one(tmp_path: Path) -> None:
    store = Storage(tmp_path / "m.db")
    store.LSH_MERGE_ROWS = 2 * dedupe.BANDS
    sigs = [_sig(text) for text in _texts(3)]
    _add(store, "s0", sigs[0])
    try:
        with store.atomic():
            _add(store, "s1", sigs[1])  # merges s0 and s1, then the feed's write fails
            raise RuntimeError("feed write failed")
    except RuntimeError:
        pass
    conn = store.db.conn
    assert conn.execute("SELECT count(*) FROM story_lsh").fetchone()[0] == 0
    assert _recent_keys(conn) == dedupe.BANDS
    # s1's rolled-back keys are gone from memory too: it is the second story, and merges
    _add(store, "s1", sigs[1])
    assert _recent_keys(conn) == 0
    assert conn.execute("SELECT count(*) FROM story_lsh").fetchone()[0] == 2 * dedupe.BANDS
    _add(store, "s2", sigs[2])
    assert _recent_keys(conn) == dedupe.BANDS
    found = store.dedupe_candidates(dedupe.band_keys(sigs[0]))
    assert [row[0] for row in found][:1] == ["s0"]
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
    conn.execute(  # its text, which the later re-signing (m006) reads
        "INSERT INTO stories (id, origin, entry_key, url, canonical_url, title, content, "
        "published, seen_at, content_hash) VALUES ('old-story', 'test', 'k', 'https://x.test/', "
        "'https://x.test/', '', ?, '2025-01-01', '2025-01-01', 'h')",
        [WIRE],
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


def test_migration_resigns_stories_and_seeds_from_their_text(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    old = Database(conn)
    migrations.apply(old, stop_before="m006_signatures_from_word_hashes")
    stale = dedupe.Signature(np.arange(dedupe.NUM_PERM, dtype=np.uint64), 7, "body")
    stories = [  # id, title, summary, content, full text
        ("st_wire", "Council closes the old town", "", WIRE, None),
        ("st_article", "Short item", "One line.", "One line.", "Fetched article: " + WIRE),
        ("st_gone", "Headline only", "", "", None),
    ]
    for sid, title, summary, content, full in stories:
        conn.execute(
            "INSERT INTO stories (id, origin, entry_key, url, canonical_url, title, summary, "
            "content, full_text, published, seen_at, content_hash) "
            "VALUES (?, 'test', ?, ?, ?, ?, ?, ?, ?, '2025-01-01', '2025-01-01', 'h')",
            [sid, sid, f"https://x.test/{sid}", f"https://x.test/{sid}", title, summary, content,
             full],
        )  # fmt: skip
    conn.execute(
        "INSERT INTO seeds (id, topic, path, title, text, content_hash, added_at) "
        "VALUES ('seed:a.txt', 't', 'a.txt', 'Seed title', ?, 'h', '2025-01-01')",
        [WIRE],
    )
    for sid in ("st_wire", "st_article", "st_gone", "seed:a.txt", "orphan"):
        conn.execute(
            "INSERT INTO story_signatures (story_id, kind, size, signature) VALUES (?, ?, ?, ?)",
            [sid, stale.kind, stale.size, stale.to_bytes()],
        )
    conn.executemany(  # stale keys, in both tables
        "INSERT INTO story_lsh (band, signature) VALUES (?, 1)", [(i,) for i in range(32)]
    )
    conn.execute("INSERT INTO story_lsh_recent (band, signature) VALUES (7, 2)")
    conn.close()

    store = Storage(path)
    signed = {
        row[0]: dedupe.Signature.from_bytes(bytes(row[3]), row[2], row[1])
        for row in store.db.execute("SELECT story_id, kind, size, signature FROM story_signatures")
    }
    assert set(signed) == {"st_wire", "st_article", "st_gone", "seed:a.txt"}
    expected = {
        "st_wire": dedupe.signature("Council closes the old town", WIRE),
        "st_article": dedupe.signature("Short item", "One line.\n\nFetched article: " + WIRE),
        "st_gone": dedupe.signature("Headline only", ""),
        "seed:a.txt": dedupe.signature("Seed title", WIRE),
    }
    for sid, sig in expected.items():
        assert sig is not None
        assert (signed[sid].kind, signed[sid].size, signed[sid].to_bytes()) == (
            sig.kind, sig.size, sig.to_bytes()
        ), sid  # fmt: skip
    assert _recent_keys(store.db.conn) == 0
    keys = store.db.execute("SELECT count(*) FROM story_lsh").fetchone()[0]
    assert keys == 4 * dedupe.BANDS
    found = store.dedupe_candidates(dedupe.band_keys(_sig(WIRE + " Read more.")))
    assert [row[0] for row in found] == ["st_wire", "st_article", "seed:a.txt"]
    store.close()


def _probes_of_large_index(store: Storage, bands: list[int]) -> int:
    """How many of ``bands`` the lookup would probe in `story_lsh` (the filter says maybe)."""
    return sum(store._lsh_index_filter().maybe(bands))


def test_the_filter_skips_absent_keys_and_never_a_merged_one(tmp_path: Path) -> None:
    store = Storage(tmp_path / "m.db")
    store.LSH_MERGE_ROWS = 2 * dedupe.BANDS
    store.LSH_FILTER_PART_KEYS = 3 * dedupe.BANDS  # parts fill up: the filter grows
    sigs = [_sig(text) for text in _texts(8)]
    for i, sig in enumerate(sigs):
        _add(store, f"s{i}", sig)
    assert _recent_keys(store.db.conn) == 0
    parts = store.db.execute("SELECT part, keys FROM lsh_filter ORDER BY part").fetchall()
    assert parts == [(0, 96), (1, 96), (2, 64)]
    for sig in sigs:  # every merged key is in the filter
        assert _probes_of_large_index(store, dedupe.band_keys(sig)) == dedupe.BANDS
    assert _probes_of_large_index(store, dedupe.band_keys(_sig(CYCLING))) <= 3
    store.close()

    reopened = Storage(tmp_path / "m.db")  # read from its saved parts, not rebuilt
    reopened.LSH_FILTER_PART_KEYS = 3 * dedupe.BANDS
    assert reopened._lsh_index_filter().counts == [96, 96, 64]
    assert reopened.db.execute("SELECT stale FROM lsh_filter_state").fetchone() == (0,)
    for i, sig in enumerate(sigs):
        found = reopened.dedupe_candidates(dedupe.band_keys(sig), exclude=f"s{i}")
        assert f"s{i}" not in [row[0] for row in found]
        assert _probes_of_large_index(reopened, dedupe.band_keys(sig)) == dedupe.BANDS
    reopened.close()


def test_keys_written_around_the_merge_make_the_filter_stale(tmp_path: Path) -> None:
    store = Storage(tmp_path / "m.db")
    store.LSH_MERGE_ROWS = dedupe.BANDS
    _add(store, "s0", _sig(WIRE))  # merged, the filter saved and current
    conn = store.db.conn
    assert conn.execute("SELECT stale FROM lsh_filter_state").fetchone() == (0,)
    outsider = _sig("An insert by hand into the large index: " + WIRE[::-1])
    conn.execute(
        "INSERT INTO story_signatures (story_id, kind, size, signature) VALUES (?, ?, ?, ?)",
        ["by-hand", outsider.kind, outsider.size, outsider.to_bytes()],
    )
    sig_id = conn.execute("SELECT id FROM story_signatures WHERE story_id = 'by-hand'").fetchone()
    conn.executemany(
        "INSERT INTO story_lsh (band, signature) VALUES (?, ?)",
        [(band, sig_id[0]) for band in dedupe.band_keys(outsider)],
    )
    assert conn.execute("SELECT stale FROM lsh_filter_state").fetchone() == (1,)
    found = store.dedupe_candidates(dedupe.band_keys(outsider))  # rebuilt: found
    assert [row[0] for row in found] == ["by-hand"]
    assert conn.execute("SELECT stale FROM lsh_filter_state").fetchone() == (0,)
    store.close()


def test_a_second_process_sees_the_keys_the_first_merged(tmp_path: Path) -> None:
    first, second = Storage(tmp_path / "m.db"), Storage(tmp_path / "m.db")
    first.LSH_MERGE_ROWS = second.LSH_MERGE_ROWS = dedupe.BANDS
    sigs = [_sig(text) for text in _texts(2)]
    _add(second, "s0", sigs[0])
    assert second.dedupe_candidates(dedupe.band_keys(sigs[1])) != []  # its filter loaded
    _add(first, "s1", sigs[1])  # merged by the other connection: a new saved filter
    found = second.dedupe_candidates(dedupe.band_keys(sigs[1]), exclude="s0")
    assert [row[0] for row in found] == ["s1"]
    assert _probes_of_large_index(second, dedupe.band_keys(sigs[1])) == dedupe.BANDS
    first.close()
    second.close()


def test_a_rolled_back_merge_leaves_the_saved_filter_as_it_was(tmp_path: Path) -> None:
    store = Storage(tmp_path / "m.db")
    store.LSH_MERGE_ROWS = dedupe.BANDS
    sigs = [_sig(WIRE), _sig(CYCLING)]
    _add(store, "s0", sigs[0])
    saved = store.db.execute("SELECT part, token, keys FROM lsh_filter").fetchall()
    try:
        with store.atomic():
            _add(store, "s1", sigs[1])
            raise RuntimeError("feed write failed")
    except RuntimeError:
        pass
    assert store.db.execute("SELECT part, token, keys FROM lsh_filter").fetchall() == saved
    assert store.db.execute("SELECT stale FROM lsh_filter_state").fetchone() == (0,)
    # the saved filter again: s1's keys are not in it
    assert store._lsh_index_filter().counts == [dedupe.BANDS]
    assert _probes_of_large_index(store, dedupe.band_keys(sigs[1])) <= 3
    _add(store, "s1", sigs[1])
    assert _probes_of_large_index(store, dedupe.band_keys(sigs[1])) == dedupe.BANDS
    store.close()


def test_migration_carries_the_recent_keys_into_their_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrations.apply(Database(conn), stop_before="m008_lsh_recent_rows")
    sig = _sig(WIRE)
    conn.execute(
        "INSERT INTO story_signatures (story_id, kind, size, signature) VALUES (?, ?, ?, ?)",
        ["waiting", sig.kind, sig.size, sig.to_bytes()],
    )
    conn.executemany(  # one row per key, as m005 kept them
        "INSERT INTO story_lsh_recent (band, signature) VALUES (?, 1)",
        [(band,) for band in dedupe.band_keys(sig)],
    )
    conn.close()

    store = Storage(path)
    assert _keys_of(store, 1) == set(dedupe.band_keys(sig))
    assert _recent_keys(store.db.conn) == dedupe.BANDS
    found = store.dedupe_candidates(dedupe.band_keys(_sig(WIRE + " Read more.")))
    assert [row[0] for row in found] == ["waiting"]
    store.close()


# the recent keys in memory stay in step with the database

REPORT = (
    "The harbour authority reopened the northern quay on Monday after a month of repairs "
    "to the sea wall, and the first ferry of the season docked there in the afternoon."
)
OTHER = (
    "Farmers in the valley began the grape harvest a week early this year, after a dry "
    "and hot summer that ripened the fruit faster than any season in living memory."
)


def test_another_connection_s_recent_keys_are_found(tmp_path: Path) -> None:
    first, second = Storage(tmp_path / "m.db"), Storage(tmp_path / "m.db")
    copy = dedupe.band_keys(_sig(REPORT + " Read more on our site."))
    assert first.dedupe_candidates(copy) == []  # its recent keys read (none)
    _add(second, "s-report", _sig(REPORT))  # committed by the other connection, not merged
    assert [row[0] for row in first.dedupe_candidates(copy)] == ["s-report"]
    first.close()
    second.close()


def test_a_rolled_back_story_s_keys_are_not_found(tmp_path: Path) -> None:
    store = Storage(tmp_path / "m.db")
    try:
        with store.atomic():
            _add(store, "s-report", _sig(REPORT))
            raise RuntimeError("feed write failed")
    except RuntimeError:
        pass
    _add(store, "s-other", _sig(OTHER))  # may take the rolled-back signature's id
    copy = dedupe.band_keys(_sig(REPORT + " Read more on our site."))
    assert store.dedupe_candidates(copy) == []
    assert [row[0] for row in store.dedupe_candidates(dedupe.band_keys(_sig(OTHER)))] == ["s-other"]
    store.close()


def test_a_filter_saved_in_another_format_is_built_again(tmp_path: Path) -> None:
    store = Storage(tmp_path / "m.db")
    store.LSH_MERGE_ROWS = dedupe.BANDS
    sigs = [_sig(WIRE), _sig(CYCLING)]
    _add(store, "s0", sigs[0])
    _add(store, "s1", sigs[1])
    store.close()
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    conn.execute("UPDATE lsh_filter SET bits = ?", [b"saved by an older version"])
    conn.close()

    reopened = Storage(tmp_path / "m.db")
    found = reopened.dedupe_candidates(dedupe.band_keys(_sig(WIRE + " Read more.")))
    assert [row[0] for row in found] == ["s0"]
    saved = reopened.db.execute("SELECT keys, length(bits) > 100 FROM lsh_filter").fetchall()
    assert saved == [(2 * dedupe.BANDS, 1)]  # built from the index and saved
    reopened.close()
