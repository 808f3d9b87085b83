"""Connections on one database: the background checkpointer (the WAL is copied into the
database file off the writer), and writers of other connections or processes."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from pathlib import Path

from monitor.storage import Storage


def write_rows(storage: Storage, count: int) -> None:
    storage.db.execute("CREATE TABLE IF NOT EXISTS filler (id INTEGER PRIMARY KEY, text TEXT)")
    for start in range(0, count, 100):
        with storage.atomic():
            storage.db.conn.executemany(
                "INSERT INTO filler (text) VALUES (?)",
                [(f"row {n} " + "x" * 500,) for n in range(start, start + 100)],
            )


def rows_in_the_database_file_alone(path: Path, tmp_path: Path) -> int:
    """Rows a reader finds in the main file without its WAL: only what was checkpointed."""
    copy = tmp_path / "file-only.db"
    shutil.copyfile(path, copy)
    conn = sqlite3.connect(copy)
    try:
        found = conn.execute("SELECT name FROM sqlite_master WHERE name = 'filler'").fetchone()
        return (
            0 if found is None else int(conn.execute("SELECT count(*) FROM filler").fetchone()[0])
        )
    finally:
        conn.close()


def test_the_checkpointer_copies_the_wal_while_the_writer_goes_on(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "monitor.db")
    try:
        write_rows(storage, 500)  # ~70 pages: far below the writer's own checkpoint (10,000)
        assert rows_in_the_database_file_alone(storage.path, tmp_path) == 0

        storage.start_checkpointer()
        checkpointer = storage.checkpointer
        assert checkpointer is not None
        write_rows(storage, 500)
        checkpointer.nudge()
        deadline = time.monotonic() + 10
        while checkpointer.last[1] < checkpointer.last[0] or checkpointer.runs == 0:
            assert time.monotonic() < deadline, checkpointer.last
            time.sleep(0.02)
        assert rows_in_the_database_file_alone(storage.path, tmp_path) == 1000
    finally:
        storage.close()
    assert not any(t.name == "monitor-checkpoint" for t in threading.enumerate())
    assert not Path(f"{storage.path}-wal").exists()  # the writer, last to close, copied the rest


def test_closing_while_a_checkpoint_may_run_loses_nothing(tmp_path: Path) -> None:
    for round_ in range(3):
        storage = Storage(tmp_path / "monitor.db")
        storage.start_checkpointer()
        write_rows(storage, 300)
        assert storage.checkpointer is not None
        storage.checkpointer.nudge()
        storage.close()  # at once: the checkpointer may be copying
        conn = sqlite3.connect(tmp_path / "monitor.db")
        assert conn.execute("SELECT count(*) FROM filler").fetchone()[0] == 300 * (round_ + 1)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()


def test_a_transaction_that_reads_first_waits_for_another_writer_instead_of_failing(
    tmp_path: Path,
) -> None:
    """A unit of work reads, another connection commits, then the unit writes: in a deferred
    transaction SQLite refuses that write at once ("database is locked"), whatever the busy
    timeout. The unit takes the write lock as it begins, so the other writer waits for it."""
    mine, other = Storage(tmp_path / "m.db"), Storage(tmp_path / "m.db")
    try:
        mine.db.execute("CREATE TABLE notes (text TEXT)")
        committed = threading.Event()

        def write_beside() -> None:
            with other.atomic():
                other.db.execute("INSERT INTO notes VALUES ('beside')")
            committed.set()

        with mine.atomic():
            mine.db.execute("SELECT count(*) FROM notes").fetchone()  # the snapshot is taken
            beside = threading.Thread(target=write_beside)
            beside.start()
            committed.wait(1.0)  # it cannot commit while this unit runs
            mine.db.execute("INSERT INTO notes VALUES ('mine')")
        beside.join(timeout=30)
        assert committed.is_set()
        notes = [row[0] for row in mine.db.execute("SELECT text FROM notes ORDER BY rowid")]
        assert notes == ["mine", "beside"]
    finally:
        other.close()
        mine.close()
