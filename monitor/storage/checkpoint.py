"""Copying the write-ahead log back into the database on a thread of its own.

In WAL mode every commit appends pages to ``<db>-wal``; a checkpoint copies them back into
the database file. Left to SQLite, the writer does it: at the commit that takes the log past
`wal_autocheckpoint` pages, and when the last connection closes. A poll that writes 500
stories left ~7,100 frames (~4,100 distinct pages: every index with random keys gets a new
leaf page per story), and closing the database copied them in 0.14 s of the run's ~2.4,
with the writer waiting.

`Checkpointer` runs ``PRAGMA wal_checkpoint(PASSIVE)`` from its own connection every
`interval` seconds and when nudged (at the end of a poll cycle). A passive checkpoint never
waits for, or blocks, the writer or any reader; SQLite releases the GIL while it copies, so
the copying happens on the other core while the writer goes on judging. A page written
again after a checkpoint is copied again at the next one: more writes to the disk, in
exchange for none in the writer's path. The writer's own automatic checkpoint stays as it
was, a backstop for a checkpointer that cannot keep up.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger("monitor.storage")


class Checkpointer:
    """A thread with its own connection that checkpoints ``path``'s WAL passively."""

    def __init__(self, path: Path, *, interval: float = 0.25) -> None:
        self.interval = interval
        self.runs = 0  # checkpoints that found frames to copy
        self.last: tuple[int, int] = (0, 0)  # (frames in the log, frames copied) at the last
        self._conn = sqlite3.connect(
            str(path), timeout=5.0, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA cache_size=-512")  # it copies pages; it caches nothing
        self._wake = threading.Event()
        self._stopping = False
        self._failed = False
        self._thread = threading.Thread(target=self._run, name="monitor-checkpoint", daemon=True)
        self._thread.start()

    def nudge(self) -> None:
        """Checkpoint now rather than at the next interval."""
        self._wake.set()

    def stop(self) -> None:
        """Finish the checkpoint under way, if any, and close the connection."""
        self._stopping = True
        self._wake.set()
        self._thread.join()
        self._conn.close()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stopping:
                return
            self.checkpoint()

    def checkpoint(self) -> None:
        try:
            _, frames, copied = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as error:  # the writer's own checkpoints still run
            if not self._failed:
                log.warning("background checkpoint failed (the writer will do it): %s", error)
            self._failed = True
            return
        self._failed = False
        if copied > 0 and (frames, copied) != self.last:
            self.runs += 1
        self.last = (frames, copied)
