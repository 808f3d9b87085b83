"""Opening the database: WAL, foreign keys, busy timeout, migrations, the run lock.

`StorageBase` holds the sqlite-utils `Database`; the use-case methods live in mixins
(feeds, stories, detection, alerts) composed into `monitor.storage.Storage`.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sqlite_utils import Database

from ..errors import AlreadyRunning, StorageError
from .checkpoint import Checkpointer
from .schema import migrations

log = logging.getLogger("monitor.storage")


def iso(moment: datetime | None) -> str | None:
    """An aware datetime as an ISO 8601 UTC string (the only time format stored)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise ValueError("naive datetime reached storage")
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def parse_iso(value: str | None) -> datetime | None:
    """The inverse of `iso`: an aware UTC datetime, or None."""
    if not value:
        return None
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _quote_name(name: str) -> str:
    """A table or column name as an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def put_back(
    conn: sqlite3.Connection,
    table: str,
    replaced: dict[str, str],
    where: str,
    params: Sequence[object],
) -> None:
    """Take the rows of ``table`` that ``where`` selects out and put them back with their
    rowids, the columns named in ``replaced`` set to its SQL expressions (their ``?`` come
    first in ``params``, then ``where``'s) and every other column as it was.

    A row made shorter in place keeps its pages (SQLite rebalances a table's pages when
    rows leave it, not when they shrink), so this is how emptied values give their space
    back. The columns are read in the caller's transaction, every time: another process
    may have added one (a newer version's migration, a user's `sqlite-utils add-column`),
    and a row put back without it would lose its value. One statement each way: FTS5
    writes its pending terms at every statement, and a table's triggers see a delete and an
    insert. Foreign keys' actions would run too: see `StorageBase.foreign_keys_off`."""
    columns = [str(row[1]) for row in conn.execute(f"PRAGMA table_info({table})")]
    names = ", ".join(_quote_name(column) for column in columns)
    values = ", ".join(replaced.get(column, _quote_name(column)) for column in columns)
    conn.execute("DROP TABLE IF EXISTS temp.putting_back")
    conn.execute(
        f"CREATE TEMP TABLE putting_back AS SELECT rowid AS rid, {names} FROM {table} WHERE 0"
    )
    conn.execute(
        f"INSERT INTO temp.putting_back SELECT rowid, {values} FROM {table} WHERE {where}",
        list(params),
    )
    conn.execute(f"DELETE FROM {table} WHERE rowid IN (SELECT rid FROM temp.putting_back)")
    conn.execute(
        f"INSERT INTO {table} (rowid, {names}) SELECT rid, {names} FROM temp.putting_back "
        "ORDER BY rid"
    )
    conn.execute("DELETE FROM temp.putting_back")


def _primary_code(error: BaseException) -> int | None:
    """SQLite's primary result code of ``error`` (None when SQLite gave none)."""
    code = getattr(error, "sqlite_errorcode", None) if isinstance(error, sqlite3.Error) else None
    return code & 0xFF if isinstance(code, int) else None


# SQLite's primary result codes that tell what happened to the database file, its disk or
# its directory, not what is wrong with a statement (a bug, which keeps its traceback)
_FAILURE_CODES = frozenset(
    {
        sqlite3.SQLITE_PERM,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_NOTADB,
    }
)


def is_busy(error: BaseException) -> bool:
    """SQLite's "database is locked": another connection held the write lock for longer
    than this one's busy timeout. The database is busy, not broken."""
    return _primary_code(error) == sqlite3.SQLITE_BUSY


def database_failure(error: BaseException) -> bool:
    """An SQLite error that says what happened to the database (full, read-only, an I/O
    error, corrupt, missing, or locked by another process for too long): something to
    report to the user in one line naming the database, not a bug."""
    return _primary_code(error) in _FAILURE_CODES or is_busy(error)


@contextmanager
def database_errors(path: str | Path) -> Iterator[None]:
    """A `database_failure` as a `StorageError` naming the database, in SQLite's words
    ("data/monitor.db: database or disk is full"); any other SQLite error is a bug and
    passes unchanged, with its traceback."""
    try:
        yield
    except sqlite3.Error as error:
        if not database_failure(error):
            raise
        raise StorageError(f"{path}: {error}") from error


def database_bytes(path: Path) -> int:
    """The size of a database file and its write-ahead log (which a checkpoint may remove
    at any moment: a file gone is 0 bytes)."""
    total = 0
    for file in (path, path.with_name(path.name + "-wal")):
        with suppress(OSError):
            total += file.stat().st_size
    return total


def dumps(value: Any) -> str:
    """Compact JSON for the TEXT columns that hold lists and objects."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class _Database(Database):
    """sqlite-utils' `Database` whose outermost `atomic` block takes the write lock as it
    begins (``BEGIN IMMEDIATE``; sqlite-utils says ``BEGIN``). A deferred transaction that
    reads, then writes after another connection (the daemon's delivery thread, a `monitor
    poll` beside it) has committed, fails at once with "database is locked": SQLite cannot
    wait there, the snapshot read is stale. Taking the lock first, the block waits for the
    other writer instead (the busy timeout), then sees its rows."""

    @contextmanager
    def atomic(self) -> Iterator[Database]:
        if self.conn.in_transaction:  # nested: sqlite-utils' savepoint
            with super().atomic() as db:
                yield db
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self.rollback()
            raise
        try:
            self.conn.execute("COMMIT")
        except BaseException:
            self.rollback()
            raise


class StorageBase:
    """The connection and its transaction helper."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.commits = 0  # outermost transactions committed (see `atomic`)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(
                str(path), timeout=30.0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=NORMAL")
            # 10 MiB of page cache instead of 2: the indexes a feed's inserts touch (story
            # IDs, signatures, term counts) stay in memory between feeds. (16 MiB until the
            # recent LSH keys left their index for memory: bench/decide.py is as fast with
            # 10, and a poll's peak holds less.)
            conn.execute("PRAGMA cache_size=-10240")
            # Copy the WAL back into the database every ~40 MB of changes, not every 4 MB:
            # a page that every feed's commit touches (index roots, term counts) is then
            # written back once instead of ten times, and a feed's commit costs about a
            # third (bench/decide.py). The file is cut back to 64 MB after a checkpoint.
            conn.execute("PRAGMA wal_autocheckpoint=10000")
            conn.execute("PRAGMA journal_size_limit=67108864")
            # No sqlite-utils plugins on the daemon's own connection: loading them scans
            # every installed distribution's entry points (~10 ms a process).
            self.db: Database = _Database(conn, execute_plugins=False)
            migrations.apply(self.db)
        except sqlite3.DatabaseError as error:
            raise StorageError(f"{path}: cannot open the database: {error}") from error
        self._lock_file: IO[str] | None = None
        self.checkpointer: Checkpointer | None = None

    def start_checkpointer(self) -> None:
        """Copy the WAL back into the database on a thread of its own from now on (for the
        poll cycles and replays that write a lot; see `checkpoint`)."""
        if self.checkpointer is None and str(self.path) != ":memory:":
            self.checkpointer = Checkpointer(self.path)

    def close(self) -> None:
        """Write what the mixins hold back for batches (`write_held`), then close. The
        connection is closed, and the run lock released, whatever the writing does; its
        error is raised after that (the first one: the writing stops there)."""
        try:
            self.write_held()
        finally:
            if self.checkpointer is not None:  # before the writer, whose close copies the rest
                self.checkpointer.stop()
                self.checkpointer = None
            self.release_run_lock()
            self.db.close()

    def close_after(self, error: BaseException) -> None:
        """`close` for a caller that is failing with ``error``: that one is what to report.
        Writing what is held back is still tried (an interrupted replay keeps its counts),
        but it most likely fails the same way (a full disk), and a traceback of that
        second failure would hide the first: it is only logged."""
        try:
            self.close()
        except Exception as later:
            log.debug("%s: closing after %r also failed: %s", self.path, error, later)

    def write_held(self) -> None:
        """What is held in memory for batches, written at close (the mixins that hold any
        extend this)."""

    @contextmanager
    def atomic(self) -> Iterator[Database]:
        """One unit of work: everything inside commits together or not at all."""
        try:
            with self.db.atomic() as db:
                yield db
        except BaseException:
            self.forget_uncommitted()
            raise
        if not self.db.conn.in_transaction:
            # counted before `after_commit`, whose own write may fail: a caller then knows
            # its unit of work is in (and must not write it again)
            self.commits += 1
            self.after_commit()

    @contextmanager
    def foreign_keys_off(self) -> Iterator[None]:
        """For a transaction that takes rows out of a table and puts them back (so that
        SQLite frees the pages they held; see `StoryStore.prune_bodies`): the foreign keys'
        actions must not run (a story's decisions would go with it). SQLite changes the
        setting only outside a transaction."""
        conn = self.db.conn
        if conn.in_transaction:
            raise RuntimeError("foreign keys can be switched off only outside a transaction")
        conn.execute("PRAGMA foreign_keys=OFF")
        try:
            yield
        finally:
            conn.execute("PRAGMA foreign_keys=ON")

    def forget_uncommitted(self) -> None:
        """Drop what is held in memory of rows a rollback may have undone (the mixins that
        hold any extend this)."""

    def after_commit(self) -> None:
        """The outermost transaction has committed (the mixins that wait for it extend
        this)."""

    def acquire_run_lock(self) -> None:
        """Claim the database for one daemon; a second `monitor run` gets AlreadyRunning.

        An advisory lock on ``<db>.lock``: the kernel drops it when the process dies, so a
        daemon killed with SIGKILL never leaves a stale lock behind.
        """
        lock_path = Path(f"{self.path}.lock")
        handle = lock_path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise AlreadyRunning(
                f"{self.path}: another `monitor run` is already using this database "
                f"(pid {holder}); stop it first"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_file = handle

    def release_run_lock(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def writable(self) -> bool:
        """Whether this connection may write now (for /healthz): True when it may; False
        when another connection held the write lock for longer than the busy timeout
        ("database is locked": busy, not broken). Any other error says the database cannot
        be written (read-only, an I/O error, not a database) and is raised.

        ``BEGIN IMMEDIATE`` alone succeeds on a connection that SQLite opened read-only
        (a file or directory it may not write): the DELETE of nothing makes it check that
        it may write, and nothing is written before the rollback."""
        conn = self.db.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            if is_busy(error):
                return False
            raise
        try:
            conn.execute("DELETE FROM feeds WHERE 0")
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        return True
