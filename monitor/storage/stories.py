"""Use cases on `stories`: identity (seen before?), insert, in-place edits, export rows, and
clearing old unrelated stories' text (`database.retention`)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from sqlite_utils import Database

from ..models import Entry
from ..text import link_and_text
from .base import iso, put_back


class Known(NamedTuple):
    """What is stored of an entry seen before."""

    story_id: str
    content_hash: str
    raw_hash: int | None


_T = TypeVar("_T")


def _in_chunks(values: Sequence[_T]) -> Iterator[tuple[str, Sequence[_T]]]:
    """``values`` in runs of 500, each with its placeholders ("?,?,..."): SQLite before
    3.32 took at most 999 variables in a statement."""
    for start in range(0, len(values), 500):
        chunk = values[start : start + 500]
        yield ",".join("?" * len(chunk)), chunk


def story_id(origin: str, key: str) -> str:
    """A short stable ID for an entry of one origin (feed URL or replay file)."""
    digest = hashlib.blake2b(f"{origin}\0{key}".encode(), digest_size=6).hexdigest()
    return f"s_{digest}"


_INSERT_STORY = (
    "INSERT INTO stories (id, feed_id, origin, entry_key, guid, url, canonical_url, title, "
    "summary, content, source, author, language, published, dated, seen_at, content_hash, "
    "raw_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


# Stories whose text `prune_bodies` may clear, oldest first (`stories_unpruned`: a story
# leaves that index as it is cleared): first seen from the floor on (`retention_state`) and
# before the cutoff, decided by at least one topic, every decision `unrelated` and none with
# feedback.
_PRUNABLE = """
    SELECT s.rowid, s.seen_at FROM stories s
    WHERE s.pruned_at IS NULL AND s.seen_at >= ? AND s.seen_at < ?
      AND EXISTS (SELECT 1 FROM decisions d WHERE d.story_id = s.id)
      AND NOT EXISTS (
          SELECT 1 FROM decisions d
          WHERE d.story_id = s.id AND (d.status != 'unrelated' OR d.feedback IS NOT NULL))
    ORDER BY s.seen_at
    LIMIT ?
"""


class StoryStore:
    db: Database

    # New stories join the full-text index `FTS_BATCH_STORIES` at a time, and whenever
    # `index_stories` is called (at the end of a poll cycle or a replay, and on `close`):
    # about 40 µs a story instead of ~130 from a trigger, one story at a time (m009).
    FTS_BATCH_STORIES = 500
    _fts_waiting = 0  # stories this process inserted since it last indexed

    def index_stories(self) -> None:
        """Add the stories not in the full-text index yet (inside the caller's
        transaction, if any)."""
        if self._fts_marks() is not None:  # (no transaction when there is nothing to do)
            with self.db.atomic():
                marks = self._fts_marks()  # read again inside the transaction
                if marks is not None:
                    self.db.conn.execute(
                        "INSERT INTO stories_fts (rowid, title, summary, content) "
                        "SELECT rowid, title, summary, content FROM stories "
                        "WHERE rowid > ? ORDER BY rowid",
                        [marks[0]],
                    )
                    self.db.conn.execute(
                        "UPDATE stories_fts_state SET indexed_upto = ?", [marks[1]]
                    )
        self._fts_waiting = 0

    def _fts_marks(self) -> tuple[int, int] | None:
        """(last rowid indexed, last rowid) when some stories wait to be indexed."""
        (indexed, last) = self.db.conn.execute(
            "SELECT indexed_upto, (SELECT coalesce(max(rowid), 0) FROM stories) "
            "FROM stories_fts_state"
        ).fetchone()
        return (int(indexed), int(last)) if last > indexed else None

    def write_held(self) -> None:
        """At close: index the stories this process added, then what the others hold."""
        if self._fts_waiting:
            self.index_stories()
        writer = getattr(super(), "write_held", None)
        if writer is not None:
            writer()

    def known_entries(self, origin: str, keys: list[str]) -> dict[str, Known]:
        """For the entry keys of one origin already stored: key → (story ID, content hash,
        raw hash or None)."""
        found: dict[str, Known] = {}
        for marks, chunk in _in_chunks(keys):
            for key, sid, content_hash, raw_hash in self.db.execute(
                f"SELECT entry_key, id, content_hash, raw_hash FROM stories "
                f"WHERE origin = ? AND entry_key IN ({marks})",
                [origin, *chunk],
            ).fetchall():
                found[key] = Known(sid, content_hash, raw_hash)
        return found

    def known_by_link(self, origin: str, entries: list[Entry]) -> dict[str, Known]:
        """For entries of one origin under keys not stored: key → the stored story with the
        same canonical link (its fragment too: two posts of a live page may say the same)
        and the same text, if there is one (a feed whose guids change at every fetch, from
        a timestamp or a session in them, would otherwise store its every item again at
        every poll)."""
        linked = {
            link_and_text(e.canonical_url, e.url, e.content_hash): e.key
            for e in entries
            if e.canonical_url
        }
        urls = sorted({url for url, _, _ in linked})
        found: dict[str, Known] = {}
        for marks, chunk in _in_chunks(urls):
            for canonical, url, sid, content_hash, raw_hash in self.db.execute(
                f"SELECT canonical_url, url, id, content_hash, raw_hash FROM stories "
                f"WHERE canonical_url IN ({marks}) AND +origin = ?",
                [*chunk, origin],
            ).fetchall():
                key = linked.get(link_and_text(canonical, url, content_hash))
                if key is not None:
                    found[key] = Known(sid, content_hash, raw_hash)
        return found

    def known_raw(self, origin: str, hashes: list[int]) -> set[int]:
        """Which of these raw item hashes (`parse`) one origin's stored stories carry.

        The answer comes back as one row (group_concat): each row a cursor steps through
        hands the GIL over, and on the pipeline's worker that costs a wait for the event
        loop's thread every time."""
        found: set[int] = set()
        for marks, chunk in _in_chunks(hashes):
            # "+origin": look the digests up in their index, then check the feed
            # (not: scan every story of the feed by the (origin, entry_key) index)
            (joined,) = self.db.execute(
                f"SELECT group_concat(raw_hash) FROM stories "
                f"WHERE raw_hash IN ({marks}) AND +origin = ?",
                [*chunk, origin],
            ).fetchone()
            if joined:
                found.update(int(value) for value in joined.split(","))
        return found

    def prune_bodies(self, seen_before: datetime, now: datetime, *, limit: int) -> int:
        """Clear the text (summary, content, full text) of at most ``limit`` stories first
        seen before ``seen_before`` that every topic judged unrelated and nobody gave
        feedback on, oldest first; their title, links, hashes and decisions stay, and
        `pruned_at` is set to ``now``. The number cleared. Inside the caller's transaction,
        opened within `foreign_keys_off`.

        A cleared story is taken out of the table and put back (`put_back`), with its rowid,
        so that the pages its text held are freed. The full-text index follows through the
        delete and insert triggers (the title stays searchable).

        The floor moves up to the last story cleared (to ``seen_before`` once none is
        left): every story before it with its text is one that keeps it, and is not read
        again."""
        conn = self.db.conn
        if conn.execute("PRAGMA foreign_keys").fetchone()[0]:
            raise RuntimeError("prune_bodies takes stories out and back: foreign keys must be off")
        floor = self._retention_floor()
        cutoff = iso(seen_before)
        rows = conn.execute(_PRUNABLE, [floor, cutoff, limit]).fetchall()
        cleared = {"summary": "''", "content": "''", "full_text": "NULL", "pruned_at": "?"}
        for marks, chunk in _in_chunks([row[0] for row in rows]):
            put_back(conn, "stories", cleared, f"rowid IN ({marks})", [iso(now), *chunk])
        moved = cutoff if len(rows) < limit else rows[-1][1]
        if moved is not None and moved > floor:
            conn.execute("UPDATE retention_state SET kept_before = ?", [moved])
        return len(rows)

    def prunable(self, seen_before: datetime) -> bool:
        """Whether `prune_bodies` has a story to clear (a read: no write transaction)."""
        row = self.db.conn.execute(
            _PRUNABLE, [self._retention_floor(), iso(seen_before), 1]
        ).fetchone()
        return row is not None

    def _retention_floor_at_most(self, seen: str | None) -> None:
        """A story is stored as first seen at ``seen``: the next search for stories to clear
        must start at or before it. Usually it is later than the floor and nothing is
        written; a replayed item, a clock set back, or a `monitor poll` beside the daemon
        may bring an earlier one."""
        self.db.conn.execute(
            "UPDATE retention_state SET kept_before = ? WHERE kept_before > ?", [seen, seen]
        )

    def _retention_floor(self) -> str:
        (floor,) = self.db.conn.execute("SELECT kept_before FROM retention_state").fetchone()
        return str(floor)

    def set_raw_hash(self, sid: str, raw_hash: int | None) -> None:
        """Record the raw hash of a stored story whose cleaned text has not changed."""
        self.db.conn.execute("UPDATE stories SET raw_hash = ? WHERE id = ?", [raw_hash, sid])

    def insert_story(self, entry: Entry, *, origin: str, feed_id: int | None, now: datetime) -> str:
        sid = story_id(origin, entry.key)
        seen = iso(now)
        self.db.conn.execute(_INSERT_STORY, [
            sid, feed_id, origin, entry.key, entry.guid, entry.url, entry.canonical_url,
            entry.title, entry.summary, entry.content, entry.source, entry.author,
            entry.language, iso(entry.published), int(entry.dated), seen,
            entry.content_hash, entry.raw_hash,
        ])  # fmt: skip
        self._retention_floor_at_most(seen)
        self._fts_waiting += 1
        if self._fts_waiting >= self.FTS_BATCH_STORIES:
            self.index_stories()
        return sid

    def update_story(self, sid: str, entry: Entry, now: datetime) -> None:
        """An entry edited in place: keep its identity and decision, refresh its text (a
        story whose text retention cleared keeps it cleared: it is past its time)."""
        self.db.conn.execute(
            """
            UPDATE stories SET url = ?, canonical_url = ?, title = ?,
                summary = CASE WHEN pruned_at IS NULL THEN ? ELSE '' END,
                content = CASE WHEN pruned_at IS NULL THEN ? ELSE '' END,
                source = ?, author = ?, content_hash = ?, raw_hash = ?, updated_at = ?
            WHERE id = ?
            """,
            [entry.url, entry.canonical_url, entry.title, entry.summary, entry.content,
             entry.source, entry.author, entry.content_hash, entry.raw_hash, iso(now), sid],
        )  # fmt: skip

    def set_full_text(self, sid: str, text: str | None, status: str) -> None:
        self.db.table("stories").update(sid, {"full_text": text, "full_text_status": status})

    def export_rows(
        self, *, topic: str | None = None, since: datetime | None = None
    ) -> Iterator[dict[str, Any]]:
        """Decisions in the export format (DESIGN.md §3.3), oldest first."""
        where: list[str] = ["1 = 1"]
        params: list[str | None] = []
        if topic:
            where.append("d.topic = ?")
            params.append(topic)
        if since:
            where.append("s.published >= ?")
            params.append(iso(since))
        sql = f"""
            SELECT s.id, d.topic, s.url, s.canonical_url, s.title, s.source, s.published,
                   s.seen_at, d.status, d.score, d.development, d.duplicate_of,
                   EXISTS (SELECT 1 FROM alerts a WHERE a.story_id = s.id AND a.topic = d.topic
                           AND a.kind = 'development' AND a.status = 'delivered') AS alerted
            FROM decisions d JOIN stories s ON s.id = d.story_id
            WHERE {" AND ".join(where)}
            ORDER BY s.published, s.seen_at, s.id
        """
        for row in self.db.query(sql, params):
            row["alerted"] = bool(row["alerted"])
            row["score"] = round(row["score"], 4)
            yield row

    def story_counts(self) -> dict[str, int]:
        """Stories stored (a count over the table), and how many of them had their text
        cleared (`prune_bodies`: the table's count less the partial index's)."""
        (total,) = self.db.conn.execute("SELECT count(*) FROM stories").fetchone()
        (kept,) = self.db.conn.execute(
            "SELECT count(*) FROM stories INDEXED BY stories_unpruned WHERE pruned_at IS NULL"
        ).fetchone()
        return {"total": int(total), "text_cleared": int(total) - int(kept)}

    def counts_by_status(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for topic, status, count in self.db.execute(
            "SELECT topic, status, count(*) FROM decisions GROUP BY topic, status"
        ).fetchall():
            counts.setdefault(topic, {})[status] = count
        return counts
