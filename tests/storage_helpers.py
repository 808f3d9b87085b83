"""Helpers shared by the storage tests: full-text hits, a table's size on disk, and a
database as an older version of monitor left it (for the tests of a migration)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path

import pytest
from sqlite_utils import Database

from monitor.storage import Storage
from monitor.storage.schema import migrations


def fts_hits(store: Storage, query: str) -> int:
    """Stories the full-text index finds for ``query``."""
    sql = "SELECT count(*) FROM stories_fts WHERE stories_fts MATCH ?"
    return int(store.db.execute(sql, [query]).fetchone()[0])


def table_bytes(store: Storage, table: str) -> int:
    """The bytes of the pages a table holds (SQLite's dbstat; the test is skipped where
    this SQLite was built without it)."""
    try:
        row = store.db.execute("SELECT sum(pgsize) FROM dbstat WHERE name = ?", [table])
    except sqlite3.OperationalError as error:
        pytest.skip(f"this SQLite has no dbstat: {error}")
    return int(row.fetchone()[0] or 0)


OLD_STORY = {
    "id": "s-old", "origin": "https://e.org/rss", "entry_key": "k", "url": "https://e.org/1",
    "canonical_url": "https://e.org/1", "title": "Old story",
    "published": "2026-01-01T00:00:00+00:00", "seen_at": "2026-01-01T00:00:00+00:00",
    "content_hash": "h",
}  # fmt: skip


def database_before(path: Path, migration: str, changes: Mapping[str, str]) -> None:
    """A database file with every migration before ``migration`` applied and one row in
    `stories`: `OLD_STORY` with ``changes`` (columns as those migrations left the table)."""
    story = {**OLD_STORY, **changes}
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        migrations.apply(Database(conn), stop_before=migration)
        columns = ", ".join(story)
        marks = ", ".join("?" * len(story))
        conn.execute(f"INSERT INTO stories ({columns}) VALUES ({marks})", list(story.values()))
    finally:
        conn.close()
