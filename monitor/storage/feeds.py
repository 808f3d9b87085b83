"""Use cases on the `feeds` table: sync with the config, what is due, poll results, CLI edits."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlite_utils import Database

from ..config import FeedSettings
from ..errors import UserError
from .base import dumps, iso, parse_iso


@dataclass(frozen=True, slots=True)
class FeedRow:
    """A feed as stored, with the state the scheduler and the fetcher need."""

    id: int
    url: str
    name: str | None
    title: str | None
    enabled: bool
    interval_s: float | None
    full_text: bool
    etag: str | None
    last_modified: str | None
    next_due: datetime | None
    failures: int
    error_since: datetime | None
    error_kind: str | None
    error_message: str | None
    health_alerted: bool
    topics: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return self.name or self.title or self.url

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> FeedRow:
        return cls(
            id=row["id"],
            url=row["url"],
            name=row["name"],
            title=row["title"],
            enabled=bool(row["enabled"]),
            interval_s=row["interval_s"],
            full_text=bool(row["fetch_full_text"]),
            etag=row["etag"],
            last_modified=row["last_modified"],
            next_due=parse_iso(row["next_due"]),
            failures=row["failures"],
            error_since=parse_iso(row["error_since"]),
            error_kind=row["error_kind"],
            error_message=row["error_message"],
            health_alerted=bool(row["health_alerted"]),
            topics=tuple(json.loads(row["topics"] or "[]")),
        )


@dataclass(frozen=True, slots=True)
class FeedUpdate:
    """The state to write on a feed after one poll (an intent, written with the entries)."""

    feed_id: int
    polled_at: datetime
    outcome: str
    next_due: datetime
    status: int | None = None
    duration_ms: float | None = None
    url: str | None = None  # new permanent URL after a 301/308
    title: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    validators: bool = False  # write etag/last_modified (a 200 replaces them, a 304 keeps them)
    failures: int = 0
    error_kind: str | None = None
    error_message: str | None = None
    error_since: datetime | None = None
    new_entries: int = 0
    disable_reason: str | None = None
    health_alerted: bool | None = None


# Why `sync_feeds` disabled a feed: the config may enable it again (not a 410's or a user's).
# (None: a feed added disabled by the config before it said why.)
DISABLED_IN_CONFIG = "disabled in the config"
REMOVED_FROM_CONFIG = "removed from the config"
_BY_CONFIG = (DISABLED_IN_CONFIG, REMOVED_FROM_CONFIG, None)


class FeedStore:
    db: Database

    def sync_feeds(self, feeds: Iterable[FeedSettings], now: datetime) -> None:
        """Make the `feeds` table carry the config's feeds.

        New config feeds are added; known ones take the config's name, interval and options.
        A feed disabled in the config is disabled; one enabled there keeps whatever state the
        CLI or the poller gave it (a 410 stays disabled), unless the config itself disabled
        it: a feed enabled again, or put back, in the config is polled again. Feeds removed
        from the config are disabled, not deleted, so their stories keep their source.
        """
        # One read of every feed, then a write only where the config changed something: a
        # `monitor poll` from cron syncs its config every time, and 1,000 unchanged feeds
        # written one by one took ~0.1 s of each run.
        listed: set[str] = set()
        with self.db.atomic():
            rows, by_url, by_config_url = self._feed_rows()
            for feed in feeds:
                listed.add(feed.url)
                values: dict[str, Any] = {
                    "name": feed.name,
                    "interval_s": feed.interval,
                    "fetch_full_text": int(feed.full_text),
                    "topics": dumps(list(feed.topics)),
                    "from_config": 1,
                    "config_url": feed.url,
                }
                feed_id = by_config_url.get(feed.url, by_url.get(feed.url))
                if feed_id is None:
                    added = {**values, "url": feed.url, "enabled": int(feed.enabled)}
                    if not feed.enabled:
                        added["disabled_reason"] = DISABLED_IN_CONFIG
                    table = self.db.table("feeds").insert({**added, "created_at": iso(now)})
                    assert table.last_rowid is not None  # an insert always sets it
                    feed_id = table.last_rowid
                    rows[feed_id] = added
                    by_url[feed.url] = by_config_url[feed.url] = feed_id
                    continue
                row = rows[feed_id]
                if not feed.enabled:
                    values["enabled"] = 0
                    if row["enabled"] or row["disabled_reason"] in _BY_CONFIG:
                        values["disabled_reason"] = DISABLED_IN_CONFIG  # (a 410's reason stays)
                elif not row["enabled"] and row["disabled_reason"] in _BY_CONFIG:
                    values["enabled"] = 1
                    values["disabled_reason"] = None
                if row["config_url"] != feed.url:  # a moved feed's config URL, taken over
                    if by_config_url.get(row["config_url"]) == feed_id:
                        del by_config_url[row["config_url"]]
                    by_config_url[feed.url] = feed_id
                self._update_changed(feed_id, row, values)
            for feed_id, row in rows.items():
                gone = row["config_url"] not in listed
                if gone and row["from_config"] == 1 and row["enabled"] == 1:
                    removed = {"enabled": 0, "disabled_reason": REMOVED_FROM_CONFIG}
                    self._update_changed(feed_id, row, removed)

    _SYNCED = ("url", "enabled", "disabled_reason", "name", "interval_s", "fetch_full_text",
               "topics", "from_config", "config_url")  # fmt: skip

    def _feed_rows(self) -> tuple[dict[int, dict[str, Any]], dict[str, int], dict[str, int]]:
        """Every feed's synced columns by id, and ids by URL and by config URL."""
        rows: dict[int, dict[str, Any]] = {}
        by_url: dict[str, int] = {}
        by_config_url: dict[str, int] = {}
        names = ", ".join(self._SYNCED)
        for feed_id, *values in self.db.execute(f"SELECT id, {names} FROM feeds").fetchall():
            row = rows[feed_id] = dict(zip(self._SYNCED, values, strict=True))
            by_url[row["url"]] = feed_id
            if row["config_url"] is not None:
                by_config_url[row["config_url"]] = feed_id
        return rows, by_url, by_config_url

    def _update_changed(self, feed_id: int, row: dict[str, Any], values: dict[str, Any]) -> None:
        """Write the columns of ``values`` that differ from ``row`` (as read), and note them."""
        changed = {key: value for key, value in values.items() if row.get(key) != value}
        if changed:
            assignments = ", ".join(f"[{key}] = ?" for key in changed)
            self.db.execute(
                f"UPDATE feeds SET {assignments} WHERE id = ?", [*changed.values(), feed_id]
            )
            row.update(changed)

    def feeds(self, *, enabled_only: bool = False) -> list[FeedRow]:
        where = "WHERE enabled = 1" if enabled_only else ""
        return [
            FeedRow.from_row(row)
            for row in self.db.query(f"SELECT * FROM feeds {where} ORDER BY id")
        ]

    def due_feeds(self, now: datetime) -> list[FeedRow]:
        """Enabled feeds whose next_due has come (or that were never polled)."""
        rows = self.db.query(
            "SELECT * FROM feeds WHERE enabled = 1 AND (next_due IS NULL OR next_due <= ?) "
            "ORDER BY next_due IS NOT NULL, next_due, id",
            [iso(now)],
        )
        return [FeedRow.from_row(row) for row in rows]

    def next_due_at(self) -> datetime | None:
        row = self.db.execute("SELECT min(next_due) FROM feeds WHERE enabled = 1").fetchone()
        return parse_iso(row[0]) if row else None

    def feed_with_url(self, url: str) -> int | None:
        """The ID of the feed polled at ``url``, if any."""
        row = self.db.execute("SELECT id FROM feeds WHERE url = ?", [url]).fetchone()
        return None if row is None else int(row[0])

    def find_feed(self, id_or_url: str) -> FeedRow:
        if id_or_url.isascii() and id_or_url.isdigit() and len(id_or_url) < 19:  # below 2**63
            rows = list(self.db.query("SELECT * FROM feeds WHERE id = ?", [int(id_or_url)]))
        else:
            rows = list(
                self.db.query(
                    "SELECT * FROM feeds WHERE url = ? OR config_url = ?", [id_or_url, id_or_url]
                )
            )
        if not rows:
            raise UserError(f"no feed with ID or URL {id_or_url!r} (see `monitor feeds list`)")
        return FeedRow.from_row(rows[0])

    def add_feed(self, url: str, name: str | None, interval: float | None, now: datetime) -> int:
        if self.db.execute("SELECT 1 FROM feeds WHERE url = ?", [url]).fetchone():
            raise UserError(f"feed {url!r} is already in the database")
        with self.db.atomic():
            table = self.db.table("feeds")
            table.insert(
                {
                    "url": url,
                    "name": name,
                    "interval_s": interval,
                    "enabled": 1,
                    "created_at": iso(now),
                }
            )
            return int(table.last_pk or 0)

    def known_feed_urls(self) -> set[str]:
        """Every feed's URL, and the URL the config gave each feed that has moved since."""
        rows = self.db.execute("SELECT url, config_url FROM feeds").fetchall()
        return {url for pair in rows for url in pair if url is not None}

    def add_feeds(
        self, feeds: Sequence[tuple[str, str | None]], interval: float | None, now: datetime
    ) -> dict[str, int | None]:
        """Add the feeds (URL, name) not in the database yet, in one transaction. Returns
        each URL's new feed ID, or None for one already there (under its URL, or as the
        URL the config gave a feed that has moved since)."""
        outcome: dict[str, int | None] = {}
        with self.db.atomic():
            known = self.known_feed_urls()
            table = self.db.table("feeds")
            for url, name in feeds:
                if url in known or url in outcome:
                    outcome.setdefault(url, None)
                    continue
                row = {"url": url, "name": name, "interval_s": interval, "enabled": 1}
                table.insert({**row, "created_at": iso(now)})
                outcome[url] = table.last_rowid
        return outcome

    def config_url_of(self, feed: FeedRow) -> str | None:
        """The URL the config gave a feed (it differs from `url` after a 301), if any."""
        row = self.db.execute("SELECT config_url FROM feeds WHERE id = ?", [feed.id]).fetchone()
        return None if row is None else row[0]

    def remove_feed(self, feed: FeedRow) -> None:
        with self.db.atomic():
            self.db.execute("DELETE FROM feeds WHERE id = ?", [feed.id])

    def set_enabled(self, feed: FeedRow, enabled: bool) -> None:
        with self.db.atomic():
            self.db.table("feeds").update(
                feed.id,
                {
                    "enabled": int(enabled),
                    "disabled_reason": None if enabled else "disabled by user",
                    "next_due": None if enabled else iso(feed.next_due),
                },
            )

    def set_health_alerted(self, feed_id: int, alerted: bool) -> bool:
        """Mark that the feed's "feed failing" alert was raised (or, False, that it
        recovered), inside the transaction that raises the alert; False when the flag was
        already so: another process polling the same feed, from the same row read before
        its fetch, raised that alert first, and this one must not raise it again."""
        cursor = self.db.execute(
            "UPDATE feeds SET health_alerted = ?1 WHERE id = ?2 AND health_alerted != ?1",
            [int(alerted), feed_id],
        )
        return cursor.rowcount == 1

    def update_feed(self, update: FeedUpdate) -> None:
        """Write one poll's result on the feed row (call inside the feed's transaction)."""
        values: dict[str, Any] = {
            "last_polled": iso(update.polled_at),
            "last_outcome": update.outcome,
            "last_status": update.status,
            "last_duration_ms": update.duration_ms,
            "next_due": iso(update.next_due),
            "failures": update.failures,
            "error_kind": update.error_kind,
            "error_message": update.error_message,
            "error_since": iso(update.error_since),
        }
        if update.error_kind is None:
            values["last_success"] = iso(update.polled_at)
        if update.validators:
            values["etag"] = update.etag
            values["last_modified"] = update.last_modified
        if update.title:
            values["title"] = update.title
        if update.url:
            values["url"] = update.url
            # A feed's stories are known by its address (their origin): they move with it,
            # or every entry would be new again at the new address. (Keys already stored
            # under the new address, by a feed that polled it before, stay where they are.)
            self.db.conn.execute(
                "UPDATE OR IGNORE stories SET origin = ? "
                "WHERE origin = (SELECT url FROM feeds WHERE id = ?)",
                [update.url, update.feed_id],
            )
        if update.disable_reason:
            values["enabled"] = 0
            values["disabled_reason"] = update.disable_reason
        if update.health_alerted is not None:
            values["health_alerted"] = int(update.health_alerted)
        # One plain UPDATE: sqlite-utils' `Table.update` reads the table's schema first
        # (three PRAGMA queries), about a millisecond a feed on an all-304 poll.
        columns = ", ".join(f"{name} = ?" for name in values)
        self.db.conn.execute(
            f"UPDATE feeds SET {columns}, entries_total = entries_total + ? WHERE id = ?",
            [*values.values(), update.new_entries, update.feed_id],
        )
