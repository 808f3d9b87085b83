"""Use cases of relevance, dedup and decisions: topics and seeds, the near-duplicate index,
background term frequencies, developments, decisions, development alerts and feedback.

Stores and reads only, inside the caller's transaction; never scores or decides anything.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import secrets
import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlite_utils import Database

from ..errors import UserError
from ..models import DecisionIntent
from ..text import post_fragment
from .alerts import new_alert_id
from .base import dumps, iso, parse_iso, put_back
from .bloom import BloomParts
from .recent_keys import RecentKeys
from .recent_keys import pack as pack_keys

log = logging.getLogger("monitor.storage")


class DetectionStore:
    db: Database

    # -- topics and seeds -------------------------------------------------------------------

    def sync_topic(
        self,
        name: str,
        *,
        threshold: float | None,
        keywords: Sequence[str],
        exclude: Sequence[str],
        now: datetime,
    ) -> None:
        self.db.execute(
            """
            INSERT INTO topics (name, threshold, keywords, exclude, created_at)
            VALUES (?, ?, ?, ?, ?)
            ON CONFLICT(name) DO UPDATE SET threshold = excluded.threshold,
                keywords = excluded.keywords, exclude = excluded.exclude
            """,
            [name, threshold, dumps(list(keywords)), dumps(list(exclude)), iso(now)],
        )

    def sync_seed(
        self,
        topic: str,
        *,
        seed_id: str,
        path: str,
        title: str,
        text: str,
        content_hash: str,
        language: str,
        now: datetime,
    ) -> bool:
        """Insert or refresh a seed row; True when it is new or its text changed (beyond
        letter case, spacing and Unicode forms: `content_hash`). The row's title and text
        are kept as written, with the language detected on them."""
        row = self.db.execute(
            "SELECT content_hash, title, text, language FROM seeds WHERE id = ?", [seed_id]
        ).fetchone()
        if row is not None and row[0] == content_hash:
            if tuple(row[1:]) != (title, text, language):  # (language NULL before m012)
                self.db.execute(
                    "UPDATE seeds SET title = ?, text = ?, language = ? WHERE id = ?",
                    [title, text, language, seed_id],
                )
            return False
        self.db.execute(
            """
            INSERT INTO seeds (id, topic, path, title, text, content_hash, added_at, language)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(id) DO UPDATE SET topic = excluded.topic, path = excluded.path,
                title = excluded.title, text = excluded.text,
                content_hash = excluded.content_hash, language = excluded.language
            """,
            [seed_id, topic, path, title, text, content_hash, iso(now), language],
        )
        return True

    def seed_languages(self, ids: Sequence[str]) -> dict[str, tuple[str, str, str | None]]:
        """The stored seeds with these ids (of any topic: topics may share seed files):
        id → (title, text, the language detected on them)."""
        found: dict[str, tuple[str, str, str | None]] = {}
        for seed_id in dict.fromkeys(ids):
            row = self.db.execute(
                "SELECT title, text, language FROM seeds WHERE id = ?", [seed_id]
            ).fetchone()
            if row is not None:
                found[seed_id] = (row[0], row[1], row[2])
        return found

    def seed_rows(self, topic: str) -> list[dict[str, Any]]:
        return list(self.db.query("SELECT * FROM seeds WHERE topic = ? ORDER BY id", [topic]))

    # -- background term frequencies --------------------------------------------------------

    # Term counts are buffered in memory and written in one upsert per `TERM_FLUSH_STORIES`
    # stories (and on `term_frequencies`, `flush_terms`, `Storage.write_buffered` at the
    # end of each poll cycle or replay, and `close`): one story's ~100 upserts would
    # otherwise dirty ~100 random pages of the term index in every transaction, and the
    # fewer the flushes, the fewer the rows: a word common enough to come back is written
    # once a flush (2,048 stories upsert ~2.5 times the rows of 256, for 8 times the
    # stories; bench/decide.py at 100,000 stored: 85 → 28 µs a story). They are a
    # background statistic, so a process killed between flushes loses at most that many
    # stories' counts.
    #
    # The judge reads a term's count when it needs one (`term_count`: the table's, read
    # once until the table changes, plus the counts not written yet), not the whole table
    # when it opens: the table grows with the vocabulary of everything ever read (~400,000
    # terms would take ~750 ms and ~38 MB to load into every process).
    #
    # A flush runs in a transaction of its own: when the count is reached inside a feed's
    # transaction, it waits for that transaction's commit (`Storage.after_commit`), so a feed that
    # fails cannot take earlier stories' counts down with it; and counts whose transaction
    # is rolled back come back into the buffer (`forget_uncommitted`).
    TERM_FLUSH_STORIES = 2048
    _pending_counts: Counter[str] | None = None  # counts not written yet
    _pending_stories: int = 0
    _read_counts: dict[str, int] | None = None  # term → its count in the table, as read
    _read_stories: int | None = None  # the table's number of stories, as read
    _read_version: int | None = None  # PRAGMA data_version when `counted_stories` last looked
    _unconfirmed: tuple[Counter[str], int] | None = None  # written, transaction still open
    _returned: tuple[Counter[str], int] | None = None  # written, then rolled back

    def term_count(self, term: str) -> int:
        """How many stories counted hold ``term`` (a word): the table's count, read once
        until the table changes, plus this process's counts not written yet."""
        read = self._read_counts
        if read is None:
            read = self._read_counts = {}
        count = read.get(term)
        if count is None:
            row = self.db.conn.execute(
                "SELECT df FROM term_frequencies WHERE term = ?", (term,)
            ).fetchone()
            count = read[term] = int(row[0]) if row is not None else 0
        if self._pending_counts is not None:
            count += self._pending_counts.get(term, 0)
        if self._returned is not None:
            count += self._returned[0].get(term, 0)
        return count

    def _data_version(self) -> int:
        """SQLite's ``PRAGMA data_version``: it moves when another connection commits (not
        this one), which tells the copies held in memory to read the tables again."""
        return int(self.db.conn.execute("PRAGMA data_version").fetchone()[0])

    def counted_stories(self) -> int:
        """How many stories the term counts cover, written or not: the table's number plus
        this process's not written yet. When another connection has committed since the
        last call, the counts read so far are dropped too, so that the words' counts and
        the stories' move together (the judge calls this before it reads any)."""
        version = self._data_version()
        if version != self._read_version:
            self._read_version = version
            self._read_counts = self._read_stories = None
        count = self._read_stories
        if count is None:
            row = self.db.conn.execute("SELECT df FROM term_frequencies WHERE term = ''").fetchone()
            count = self._read_stories = int(row[0]) if row is not None else 0
        count += self._pending_stories
        return count + (self._returned[1] if self._returned is not None else 0)

    # -- kept word-frequency tables (`wordprior.TableCache`) ---------------------------------

    # Rows of 8,192 words: one 3 MB value would pass whole through SQLite's record buffer
    # and the allocator, and a cold poll that saved it peaked 3 MB higher (147 MB, not 144).
    WORD_PRIOR_PART = 8192

    def load_word_prior(self, lang: str, source: str) -> tuple[bytes, bytes] | None:
        """``lang``'s kept table built from ``source``, or None (none, stale, or a part
        missing: then it is built again)."""
        rows = self.db.execute(
            "SELECT part, words, keys, buckets FROM word_prior "
            "WHERE lang = ? AND source = ? ORDER BY part",
            [lang, source],
        ).fetchall()
        keys = b"".join(row[2] for row in rows)
        buckets = b"".join(row[3] for row in rows)
        whole = [row[0] for row in rows] == list(range(len(rows))) and all(
            row[1] * 8 == len(keys) and row[1] * 2 == len(buckets) for row in rows
        )
        return (keys, buckets) if rows and whole else None

    def save_word_prior(self, lang: str, source: str, keys: bytes, buckets: bytes) -> None:
        """Replace ``lang``'s table: ``keys`` (8 bytes each) and ``buckets`` (2 bytes each).
        A table that cannot be written is only not kept: the caller has it in memory."""
        step = self.WORD_PRIOR_PART
        words = len(keys) // 8
        key_view, bucket_view = memoryview(keys), memoryview(buckets)
        in_transaction = self.db.conn.in_transaction
        try:
            with self.db.atomic():  # a savepoint when a feed's transaction is open
                self.db.execute("DELETE FROM word_prior WHERE lang = ?", [lang])
                for part, start in enumerate(range(0, max(words, 1), step)):
                    end = min(words, start + step)
                    self.db.execute(
                        "INSERT INTO word_prior (lang, part, source, words, keys, buckets) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        [lang, part, source, words, key_view[8 * start : 8 * end],
                         bucket_view[2 * start : 2 * end]],
                    )  # fmt: skip
        except sqlite3.Error as error:
            if in_transaction and not self.db.conn.in_transaction:
                raise  # it took the caller's whole transaction with it: the caller must know
            log.warning("the %s word-frequency table was not kept (built again next time): %s",
                        lang, error)  # fmt: skip

    def count_terms(self, terms: Iterable[str]) -> None:
        """One more story counted, containing each of ``terms`` (distinct) once."""
        if self._pending_counts is None:
            self._pending_counts = Counter()
        self._pending_counts.update(terms)
        self._pending_stories += 1
        if self.term_flush_due() and not self.db.conn.in_transaction:
            self.flush_terms()

    def has_buffered_terms(self) -> bool:
        return bool(self._pending_stories) or self._returned is not None

    def term_flush_due(self) -> bool:
        return self._pending_stories >= self.TERM_FLUSH_STORIES

    def flush_terms(self) -> None:
        """Write the buffered term counts (inside the caller's transaction, if any)."""
        if not self.has_buffered_terms():
            return
        stories, counts = self._pending_stories, self._pending_counts or Counter()
        self._pending_counts = None
        self._pending_stories = 0
        self._read_counts = self._read_stories = None  # the table changes: read it again
        if self._returned is not None:
            counts.update(self._returned[0])
            stories += self._returned[1]
            self._returned = None
        try:
            self.db.conn.executemany(
                "INSERT INTO term_frequencies (term, df) VALUES (?, ?) "
                "ON CONFLICT(term) DO UPDATE SET df = df + excluded.df",
                itertools.chain(counts.items(), [("", stories)]),
            )
        except BaseException:
            self._returned = (counts, stories)
            raise
        if self.db.conn.in_transaction:
            self._unconfirmed = _added(self._unconfirmed, (counts, stories))

    def write_held(self) -> None:
        """At close: flush the buffered term counts, then what the others hold."""
        if self.has_buffered_terms():
            # one transaction: outside one each row was its own commit, and a failure half
            # way (a full disk) left half of the counts written
            with self.db.atomic():
                self.flush_terms()
        writer = getattr(super(), "write_held", None)
        if writer is not None:
            writer()

    # -- near-duplicate index ---------------------------------------------------------------

    # New band keys go to `story_lsh_recent`, one row per story (its keys in one blob,
    # appended in signature order: a feed's commit writes a page or two of it), and are
    # looked up in memory (`RecentKeys`, read from the table when first needed and again
    # whenever another connection has committed, or this one rolled back). Every
    # `LSH_MERGE_ROWS` keys they are moved into the large `story_lsh` in one sorted pass
    # (`merge_lsh`: it rewrites most pages of the large index, whatever it brings, so the
    # rarer the better; 262,144 keys take 4.2 MB in memory). Written one story at a time,
    # each key landed on its own page of the large index: at 100,000 stories a feed's
    # commit rewrote ~1,500 pages of it; kept in an index of their own until the merge,
    # they still rewrote ~300 pages of that one.
    # Lookups read both, so a merge changes no result.
    #
    # The large index is probed only for the keys its Bloom filter (`lsh_filter`,
    # `BloomParts`) may hold: nearly every key of a new story is in no other story, and at
    # 100,000 stories each probe of the 3.2 M-key index read a page that was not in the
    # cache. The filter is made of parts of `LSH_FILTER_PART_KEYS` keys each (0.75 MB), the
    # last one filling up: it grows without being rebuilt. `merge_lsh` adds the merged keys
    # and saves the parts it changed in the merge's transaction, so the saved filter always
    # covers the saved index; any other write into `story_lsh` marks it stale (a trigger,
    # m007) and the next lookup builds it again from one scan of the index. A key deleted
    # from the index stays in the filter: a needless probe, never a missed one.
    LSH_MERGE_ROWS = 8192 * 32  # ~8,000 stories' keys
    # (saving a part costs a few times its size at once, in Python and in SQLite: parts of
    # 2^20 keys added ~5 MB to a cold poll's peak at N = 1,000)
    LSH_FILTER_PART_KEYS = 1 << 19
    _lsh_recent: RecentKeys | None = None  # story_lsh_recent's keys (None: not read yet)
    _lsh_recent_version: int | None = None  # PRAGMA data_version when they were read
    _lsh_filter: BloomParts | None = None
    _lsh_filter_tokens: list[tuple[int, int]] | None = None  # (part, token) as saved

    def add_signature(
        self, story_id: str, *, kind: str, size: int, signature: bytes, bands: Sequence[int]
    ) -> None:
        """Store (or replace) a story's signature and its LSH band keys.

        The band rows point at the signature's ``id``, which grows with every new story:
        the secondary indexes on it are appended to, and a replaced signature keeps its
        place."""
        conn = self.db.conn
        recent = self._recent_keys()
        row = conn.execute("SELECT id FROM story_signatures WHERE story_id = ?", [story_id])
        found = row.fetchone()
        if found is None:
            cursor = conn.execute(
                "INSERT INTO story_signatures (story_id, kind, size, signature) "
                "VALUES (?, ?, ?, ?)",
                [story_id, kind, size, signature],
            )
            sig_id = cursor.lastrowid
            assert sig_id is not None
        else:
            sig_id = int(found[0])
            if not story_id.startswith("seed:") and self._lsh_range_removed(sig_id):
                # Past the window since it was first signed: an edit does not renew it, and
                # its keys and signature went with its range (`_prune_lsh`).
                return
            conn.execute(
                "UPDATE story_signatures SET kind = ?, size = ?, signature = ? WHERE id = ?",
                [kind, size, signature, sig_id],
            )
            conn.execute("DELETE FROM story_lsh WHERE signature = ?", [sig_id])
            conn.execute("DELETE FROM story_lsh_recent WHERE signature = ?", [sig_id])
            recent.remove(sig_id)
        distinct = list(dict.fromkeys(bands))
        conn.execute(
            "INSERT INTO story_lsh_recent (signature, bands) VALUES (?, ?)",
            [sig_id, pack_keys(distinct)],
        )
        recent.add(sig_id, distinct)
        if len(recent) >= self.LSH_MERGE_ROWS:
            self.merge_lsh()

    def _recent_keys(self) -> RecentKeys:
        """`story_lsh_recent` in memory, read again if another connection has committed
        since (``PRAGMA data_version`` moves only for other connections' commits)."""
        version = self._data_version()
        if self._lsh_recent is None or version != self._lsh_recent_version:
            rows = self.db.conn.execute("SELECT signature, bands FROM story_lsh_recent")
            self._lsh_recent = RecentKeys(
                ((int(sig), bytes(blob)) for sig, blob in rows), capacity=self._recent_room()
            )
            self._lsh_recent_version = version
        return self._lsh_recent

    def _recent_room(self) -> int:
        """The most keys the recent ones reach: a merge is due at `LSH_MERGE_ROWS`."""
        return self.LSH_MERGE_ROWS + 64

    def forget_uncommitted(self) -> None:
        """A transaction was rolled back: what is held in memory of the index is read
        again from the database when next needed, and term counts it wrote are written
        again at the next flush."""
        self._lsh_recent = None
        self._lsh_prune_next = None
        self._read_counts = self._read_stories = None
        if self._unconfirmed is not None:
            self._returned = _added(self._returned, self._unconfirmed)
            self._unconfirmed = None
        forget = getattr(super(), "forget_uncommitted", None)
        if forget is not None:
            forget()

    def after_commit(self) -> None:
        """The outermost transaction committed: the term counts it wrote are in (a flush
        that came due inside it is run by `Storage.after_commit`)."""
        self._unconfirmed = None
        after = getattr(super(), "after_commit", None)
        if after is not None:
            after()

    def merge_lsh(self) -> None:
        """Move the recent band keys into the large index, in key order, and add them to
        its Bloom filter (inside the caller's transaction, if any: a rollback leaves the
        keys where they were and the saved filter as it was, and the next merge takes them;
        the filter in memory keeps them, which costs a probe at most)."""
        conn = self.db.conn
        self._lsh_index_filter()  # up to date before the insert marks it stale
        assert self._lsh_filter is not None
        changed: set[int] = set()
        for keys, sigs in self._recent_keys().runs():  # each in key order
            changed |= self._lsh_filter.add(keys)
            for start in range(0, len(keys), _KEY_CHUNK):  # (Python ints for all: ~20 MB)
                end = start + _KEY_CHUNK
                conn.executemany(
                    "INSERT OR IGNORE INTO story_lsh (band, signature) VALUES (?, ?)",
                    zip(keys[start:end].tolist(), sigs[start:end].tolist(), strict=True),
                )
        conn.execute("DELETE FROM story_lsh_recent")
        self._lsh_recent = RecentKeys(capacity=self._recent_room())
        self._save_lsh_filter(changed)

    # The window of the near-duplicate index (`database.dedupe_window`): a story's band
    # keys leave `story_lsh` once it was signed longer ago than the window, so the index
    # and its Bloom filter (held in memory) stop growing with the years; the seeds' keys
    # stay. `lsh_marks` (m011) ties signature ids to times: the transaction that signs
    # stories marks them (`mark_lsh`: the ids after the previous mark's `upto`, up to this
    # one's, were signed by `at`; a range spans less than a hundredth of the window), so
    # each range carries its signer's time even when a
    # replay of an old archive and the daemon write to one database. Keys leave a tenth of
    # the window at a time (`keep_lsh_window`), so that the filter, which cannot forget a
    # key, is rebuilt only that often.
    _lsh_prune_next: datetime | None = None  # no removal due before this (this process)
    _lsh_prune_version: int | None = None  # PRAGMA data_version when it was worked out

    def mark_lsh(self, now: datetime, window: timedelta) -> None:
        """Date the signatures made since the last mark with ``now`` (call it in the
        transaction that made them). A mark's range spans less than a hundredth of the
        window: within that, a newer signature extends the last mark and moves its time
        on, never back (a signature is never dated before it was made; at worst it stays
        that much longer)."""
        if window <= timedelta(0):
            return  # (a window set later starts the stories signed before it then)
        conn = self.db.conn
        newest = conn.execute("SELECT coalesce(max(id), 0) FROM story_signatures").fetchone()[0]
        last = conn.execute(
            "SELECT upto, at, pruned FROM lsh_marks ORDER BY upto DESC LIMIT 2"
        ).fetchall()
        if last and newest <= last[0][0]:
            return
        at = iso(now)
        assert at is not None
        # Extended only when the two last marks and ``now`` are in time order (a replay of
        # an old archive beside the daemon interleaves marks of other times) and the range
        # would still span less than a hundredth of the window.
        if len(last) == 2 and not last[0][2] and last[1][1] <= last[0][1] <= at:
            opened = parse_iso(last[1][1])
            if opened is not None and timedelta(0) <= now - opened < window / 100:
                conn.execute(
                    "UPDATE lsh_marks SET upto = ?, at = ? WHERE upto = ?", [newest, at, last[0][0]]
                )
                return
        conn.execute("INSERT INTO lsh_marks (upto, at) VALUES (?, ?)", [newest, at])
        if self._lsh_prune_next is not None:  # (earlier, if a replay went back in time)
            self._lsh_prune_next = min(self._lsh_prune_next, now + window + window / 10)

    def lsh_window_due(self, now: datetime, window: timedelta) -> bool:
        """Whether a removal may be due (`keep_lsh_window`): known in memory until another
        connection commits (a replay beside the daemon may add old ranges)."""
        if window <= timedelta(0):
            return False
        version = self._data_version()
        return (
            self._lsh_prune_next is None
            or version != self._lsh_prune_version
            or now >= self._lsh_prune_next
        )

    def keep_lsh_window(self, now: datetime, window: timedelta) -> int:
        """Remove from the index the band keys of the stories signed more than ``window``
        before ``now`` (nothing if ``window`` is zero), a tenth of the window at a time.
        The number of keys removed. Inside the caller's transaction."""
        if window <= timedelta(0):
            return 0
        batch = window / 10
        removed = 0
        oldest = self._oldest_kept_mark()  # its keys leave once it is a batch past the window
        if oldest is not None and oldest + window + batch <= now:
            removed = self._prune_lsh(now - window)
            oldest = self._oldest_kept_mark()
        self._lsh_prune_next = oldest + window + batch if oldest is not None else now + batch
        self._lsh_prune_version = self._data_version()
        return removed

    def _oldest_kept_mark(self) -> datetime | None:
        """The time of the oldest mark whose range is still in the index."""
        row = self.db.conn.execute("SELECT min(at) FROM lsh_marks WHERE pruned = 0").fetchone()
        return parse_iso(row[0])

    def _lsh_range_removed(self, sig_id: int) -> bool:
        """Whether the keys of the range holding ``sig_id`` have left the index (the first
        mark at or above it; the marks of removed ranges folded away were removed too)."""
        row = self.db.conn.execute(
            "SELECT pruned FROM lsh_marks WHERE upto >= ? ORDER BY upto LIMIT 1", [sig_id]
        ).fetchone()
        return row is not None and bool(row[0])

    def _prune_lsh(self, cutoff: datetime) -> int:
        """Remove the keys of the signature ranges marked at or before ``cutoff``."""
        conn = self.db.conn
        limit = iso(cutoff)
        assert limit is not None
        ranges: list[tuple[int, int]] = []  # (after, upto): adjacent ones joined
        after = 0
        for upto, at, pruned in conn.execute(
            "SELECT upto, at, pruned FROM lsh_marks ORDER BY upto"
        ):
            if not pruned and at <= limit:
                if ranges and ranges[-1][1] == after:
                    ranges[-1] = (ranges[-1][0], upto)
                else:
                    ranges.append((after, upto))
            after = upto
        if len(self._recent_keys()):
            self.merge_lsh()  # the ranges' keys still in the recent table join the index
        seeds = "SELECT id FROM story_signatures WHERE story_id >= 'seed:' AND story_id < 'seed;'"
        removed = 0
        for after, upto in ranges:
            cursor = conn.execute(
                f"DELETE FROM story_lsh WHERE signature > ? AND signature <= ? "
                f"AND signature NOT IN ({seeds})",
                [after, upto],
            )
            removed += cursor.rowcount
            # Nothing finds these signatures any more (a lookup goes through the keys): the
            # row stays, for `_lsh_range_removed` and the story's `kind`, the ~1 KB of
            # values go (most of what a story costs on disk once its text is cleared too).
            put_back(
                conn,
                "story_signatures",
                {"signature": "x''"},
                f"id > ? AND id <= ? AND id NOT IN ({seeds})",
                [after, upto],
            )
        conn.execute("UPDATE lsh_marks SET pruned = 1 WHERE pruned = 0 AND at <= ?", [limit])
        # A removed range's mark is needed only as the start of the next one, if that one
        # is still to come: the others go.
        conn.execute(
            "DELETE FROM lsh_marks WHERE pruned = 1 AND coalesce((SELECT n.pruned FROM "
            "lsh_marks AS n WHERE n.upto > lsh_marks.upto ORDER BY n.upto LIMIT 1), 0) = 1"
        )
        if removed:
            conn.execute("UPDATE lsh_filter_state SET stale = 1")  # rebuilt at the next lookup
        return removed

    def _add_selected_to_filter(self, sql: str) -> set[int]:
        """Add the keys a query selects to the filter, a chunk at a time (3.2 M keys as one
        list of Python ints would take ~100 MB); the parts changed."""
        assert self._lsh_filter is not None
        cursor = self.db.conn.execute(sql)
        changed: set[int] = set()
        while chunk := [row[0] for row in cursor.fetchmany(_KEY_CHUNK)]:
            changed |= self._lsh_filter.add(chunk)
        return changed

    def _lsh_index_filter(self) -> BloomParts:
        """The Bloom filter of `story_lsh`'s keys, as saved (read again when another
        process saved a newer one), or built from the index when it is marked stale."""
        conn = self.db.conn
        saved = [
            (int(part), int(token))
            for part, token in conn.execute(
                "SELECT -1, stale FROM lsh_filter_state UNION ALL "
                "SELECT part, token FROM lsh_filter ORDER BY 1"
            )
        ]
        if self._lsh_filter is not None and saved == self._lsh_filter_tokens:
            return self._lsh_filter
        if saved[:1] != [(-1, 0)]:
            return self._build_lsh_filter()
        rows = conn.execute("SELECT part, keys, bits FROM lsh_filter ORDER BY part").fetchall()
        try:
            if [row[0] for row in rows] != list(range(len(rows))):
                raise ValueError("parts missing")
            parts = BloomParts.load(
                self.LSH_FILTER_PART_KEYS, [(int(keys), bytes(bits)) for _, keys, bits in rows]
            )
        except ValueError:  # not a filter this version can read (or a gap): make a new one
            return self._build_lsh_filter()
        self._lsh_filter, self._lsh_filter_tokens = parts, saved
        return parts

    def _build_lsh_filter(self) -> BloomParts:
        """A new filter holding every key of `story_lsh`, saved."""
        self._lsh_filter = BloomParts(self.LSH_FILTER_PART_KEYS)
        changed = self._add_selected_to_filter("SELECT band FROM story_lsh")
        self._lsh_filter_tokens = None
        self._save_lsh_filter(changed, rebuilt=True)
        return self._lsh_filter

    def _save_lsh_filter(self, parts: Iterable[int], *, rebuilt: bool = False) -> None:
        """Write the named parts of the filter and mark it current (a savepoint inside the
        caller's transaction); ``rebuilt``: the saved parts are all replaced."""
        bloom = self._lsh_filter
        assert bloom is not None
        tokens = {} if rebuilt else dict(self._lsh_filter_tokens or [])
        conn = self.db.conn
        with self.db.atomic():
            if rebuilt:
                conn.execute("DELETE FROM lsh_filter")
            for part in sorted(parts):
                tokens[part] = secrets.randbits(62)
                conn.execute(
                    "INSERT OR REPLACE INTO lsh_filter (part, token, keys, bits) "
                    "VALUES (?, ?, ?, ?)",
                    [part, tokens[part], bloom.counts[part], bloom.part_bytes(part)],
                )
            conn.execute("UPDATE lsh_filter_state SET stale = 0")
        tokens[-1] = 0
        self._lsh_filter_tokens = sorted(tokens.items())

    def dedupe_candidates(
        self, bands: Sequence[int], *, exclude: str | None = None, limit: int = 50
    ) -> list[tuple[str, str, int, bytes]]:
        """Stored (id, kind, size, signature) sharing at least one band key, oldest first.

        Each band contributes at most its few oldest members (an index range scan), so a
        lookup costs the same whether a band holds ten stories or a hundred thousand
        near-identical ones; the oldest are the originals a copy should point at.
        """
        if not bands:
            return []
        per_band = max(2, limit // 8)
        maybe = self._lsh_index_filter().maybe(bands)
        indexed = [band for band, held in zip(bands, maybe, strict=True) if held]
        # The recent keys in memory (mostly newer, but a re-signed story keeps its older
        # id), then one statement: a LIMITed range scan of the clustered index per band
        # the filter may hold, UNION ALL.
        ids = self._recent_keys().lookup(bands, per_band)
        if indexed:
            params: list[int] = []
            for band in indexed:
                params += (band, per_band)
            sql = _band_probe_sql(len(indexed))
            ids.update(row[0] for row in self.db.conn.execute(sql, params))
        found = sorted(ids)
        if not found:
            return []
        marks = ",".join("?" * len(found))
        rows = self.db.conn.execute(
            f"SELECT story_id, kind, size, signature FROM story_signatures "
            f"WHERE id IN ({marks}) AND story_id != ? ORDER BY id LIMIT ?",
            [*found, exclude or "", limit],
        ).fetchall()
        return [(row[0], row[1], int(row[2]), bytes(row[3])) for row in rows]

    def story_with_url(self, canonical_url: str, *, exclude: str, fragment: str) -> str | None:
        """The oldest other story with this canonical URL and this `post_fragment`: the
        posts of one live page (".../live/x#block-2") share its address, and a story that
        links the whole page is not a copy of one of them, nor one post of another. An entry
        without a link has no URL to share (its "" would match every other such story). A
        stored story's fragment is taken from its guid, as its key has it: the previous
        version's keys dropped the fragment."""
        if not canonical_url:
            return None
        rows = self.db.execute(
            "SELECT id, coalesce(guid, entry_key), url FROM stories "
            "WHERE canonical_url = ? AND id != ? "
            "ORDER BY seen_at, rowid",
            [canonical_url, exclude],
        )
        for sid, key, url in rows:
            if post_fragment(key, url) == fragment:
                return str(sid)
        return None

    # -- developments -----------------------------------------------------------------------

    def development_rows(self, topic: str) -> list[dict[str, Any]]:
        return list(
            self.db.query(
                "SELECT * FROM developments WHERE topic = ? ORDER BY first_seen, id", [topic]
            )
        )

    def save_development(
        self,
        *,
        id: str,
        topic: str,
        label: str,
        first_story: str,
        sources: list[str],
        story_count: int,
        terms: dict[str, float],
        first_seen: datetime,
        last_seen: datetime,
    ) -> None:
        self.db.execute(
            """
            INSERT INTO developments (id, topic, label, first_story, sources, story_count,
                                      terms, first_seen, last_seen)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(id) DO UPDATE SET label = excluded.label, sources = excluded.sources,
                story_count = excluded.story_count, terms = excluded.terms,
                last_seen = excluded.last_seen,
                -- a seed's development, stored when the seeds were loaded, is dated by the
                -- first story that reports it (its first_seen was the loading's moment)
                first_seen = CASE WHEN developments.first_story LIKE 'seed:%'
                                   AND developments.story_count <= 1
                                  THEN excluded.first_seen ELSE developments.first_seen END
            """,
            [id, topic, label, first_story, dumps(sources), story_count, dumps(terms),
             iso(first_seen), iso(last_seen)],
        )  # fmt: skip

    def relabel_development(self, id: str, label: str) -> None:
        self.db.execute("UPDATE developments SET label = ? WHERE id = ?", [label, id])

    # -- decisions --------------------------------------------------------------------------

    def write_decision(
        self, intent: DecisionIntent, development: str | None, now: datetime
    ) -> None:
        reasons = [{"kind": r.kind, "text": r.text, "weight": r.weight} for r in intent.reasons]
        self.db.execute(
            """
            INSERT INTO decisions (story_id, topic, status, score, development, duplicate_of,
                                   reasons, decided_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(story_id, topic) DO UPDATE SET status = excluded.status,
                score = excluded.score, development = excluded.development,
                duplicate_of = excluded.duplicate_of, reasons = excluded.reasons,
                decided_at = excluded.decided_at
            """,
            [intent.story_id, intent.topic, str(intent.status), intent.score, development,
             intent.duplicate_of, dumps(reasons), iso(now)],
        )  # fmt: skip

    def decision_of(self, story_id: str, topic: str) -> dict[str, Any] | None:
        rows = list(
            self.db.query(
                "SELECT * FROM decisions WHERE story_id = ? AND topic = ?", [story_id, topic]
            )
        )
        return rows[0] if rows else None

    def decisions_of(self, story_id: str) -> list[dict[str, Any]]:
        return list(
            self.db.query("SELECT * FROM decisions WHERE story_id = ? ORDER BY topic", [story_id])
        )

    def judged_stories(
        self, topic: str, statuses: Sequence[str], *, limit: int
    ) -> list[dict[str, Any]]:
        """The stories of ``topic`` decided last with one of ``statuses`` (oldest first),
        with the columns relevance needs, and their feedback; not those whose text
        retention cleared (an example would be its title alone). Ordered by decision time, the
        order of the (topic, status, decided_at) index, so that the query reads ``limit``
        rows instead of sorting every unrelated story of a large database."""
        marks = ",".join("?" * len(statuses))
        rows = list(
            self.db.query(
                f"""
                SELECT s.id, s.title, s.summary, s.content, s.language, s.published,
                       d.status, d.score, d.feedback, d.development, d.reasons
                FROM decisions d JOIN stories s ON s.id = d.story_id
                WHERE d.topic = ? AND d.status IN ({marks}) AND s.pruned_at IS NULL
                ORDER BY d.decided_at DESC, d.rowid DESC LIMIT ?
                """,
                [topic, *statuses, limit],
            )
        )
        rows.reverse()
        return rows

    def feedback_rows(self, topic: str) -> list[dict[str, Any]]:
        # Through `decisions_feedback` (feedback and feedback_at are set together), not
        # the topic's index, which SQLite preferred: that read every decision of the topic
        # (9 ms at 50,000 stories, at every judge's start) to find the few with feedback.
        return list(
            self.db.query(
                """
                SELECT s.id, s.title, s.summary, s.content, d.feedback, d.feedback_at
                FROM decisions d JOIN stories s ON s.id = d.story_id
                WHERE d.feedback_at IS NOT NULL AND +d.topic = ? AND d.feedback IS NOT NULL
                ORDER BY d.feedback_at
                """,
                [topic],
            )
        )

    def latest_feedback(self) -> str | None:
        """When feedback was last recorded (an index lookup: cheap enough for every story)."""
        return _latest_feedback(self.db)

    def set_feedback(self, story_id: str, topic: str, verdict: str, now: datetime) -> None:
        self.db.execute(
            "UPDATE decisions SET feedback = ?, feedback_at = ? WHERE story_id = ? AND topic = ?",
            [verdict, iso(now), story_id, topic],
        )

    # -- alerts -----------------------------------------------------------------------------

    def enqueue_development_alert(
        self,
        *,
        topic: str,
        story_id: str,
        development: str,
        payload: dict[str, Any],
        now: datetime,
    ) -> str:
        """An alert row in the outbox (same transaction as the decision that raised it)."""
        alert_id = new_alert_id()
        body = {**payload, "id": alert_id, "created_at": iso(now)}
        self.db.execute(
            "INSERT INTO alerts (id, kind, topic, story_id, development, payload, status, "
            "created_at) VALUES (?, 'development', ?, ?, ?, ?, 'pending', ?)",
            [alert_id, topic, story_id, development, dumps(body), iso(now)],
        )
        return alert_id

    def development_alert(self, story_id: str, topic: str) -> dict[str, Any] | None:
        rows = list(
            self.db.query(
                "SELECT id, status, payload FROM alerts WHERE story_id = ? AND topic = ? "
                "AND kind = 'development'",
                [story_id, topic],
            )
        )
        if not rows:
            return None
        row = rows[0]
        row["payload"] = json.loads(row["payload"])
        return row

    # -- stories ----------------------------------------------------------------------------

    def story_row(self, id_or_url: str) -> dict[str, Any]:
        for column in ("id", "url", "canonical_url"):
            rows = list(
                self.db.query(f"SELECT * FROM stories WHERE {column} = ? LIMIT 1", [id_or_url])
            )
            if rows:
                return rows[0]
        raise UserError(f"no story with ID or URL {id_or_url!r}")

    def story_brief(self, story_id: str) -> dict[str, Any] | None:
        """A story's id, title, url, source and published, or a seed's (its file's path)."""
        if story_id.startswith("seed:"):
            query = "SELECT id, title, path AS url, NULL AS source, NULL AS published FROM seeds"
        else:
            query = "SELECT id, title, url, source, published FROM stories"
        rows = list(self.db.query(f"{query} WHERE id = ?", [story_id]))
        return rows[0] if rows else None


_PROBE_INDEX = (
    "SELECT * FROM (SELECT signature FROM story_lsh WHERE band = ? ORDER BY signature LIMIT ?)"
)


_KEY_CHUNK = 8192  # band keys read from the index at a time (filter builds and merges)


@functools.lru_cache(maxsize=64)
def _band_probe_sql(count: int) -> str:
    return " UNION ALL ".join([_PROBE_INDEX] * count)


def _added(
    held: tuple[Counter[str], int] | None, more: tuple[Counter[str], int]
) -> tuple[Counter[str], int]:
    """Term counts and a number of stories, added together."""
    if held is None:
        return more
    held[0].update(more[0])
    return held[0], held[1] + more[1]


def when(value: str | None) -> datetime | None:
    return parse_iso(value)


def _latest_feedback(db: Database) -> str | None:
    row = db.execute("SELECT max(feedback_at) FROM decisions").fetchone()
    return None if row is None else row[0]
