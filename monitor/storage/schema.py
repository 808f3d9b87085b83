"""The database schema, as an ordered list of sqlite-utils migrations.

Table names and columns are a user-facing contract (documented in README.md, table by
table). Add a new migration function at the end for every change; never edit one that
has shipped. This module only defines the schema; `Storage` applies it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlite_utils import Database, Migrations

migrations = Migrations("monitor")


@migrations()
def m001_initial(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE feeds (
            id INTEGER PRIMARY KEY,
            url TEXT NOT NULL UNIQUE,
            config_url TEXT UNIQUE,         -- the URL as the config names it (url may move on 301)
            name TEXT,
            title TEXT,
            enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
            from_config INTEGER NOT NULL DEFAULT 0 CHECK (from_config IN (0, 1)),
            interval_s REAL,
            fetch_full_text INTEGER NOT NULL DEFAULT 0,
            topics TEXT NOT NULL DEFAULT '[]',   -- topics this feed serves; [] means all
            etag TEXT,
            last_modified TEXT,
            next_due TEXT,
            last_polled TEXT,
            last_success TEXT,
            last_outcome TEXT,
            last_status INTEGER,
            last_duration_ms REAL,
            entries_total INTEGER NOT NULL DEFAULT 0,
            failures INTEGER NOT NULL DEFAULT 0,
            error_kind TEXT,
            error_message TEXT,
            error_since TEXT,
            health_alerted INTEGER NOT NULL DEFAULT 0,
            disabled_reason TEXT,
            created_at TEXT NOT NULL
        );

        CREATE TABLE topics (
            name TEXT PRIMARY KEY,
            threshold REAL,
            keywords TEXT NOT NULL DEFAULT '[]',
            exclude TEXT NOT NULL DEFAULT '[]',
            last_digest_at TEXT,
            created_at TEXT NOT NULL
        );

        CREATE TABLE seeds (
            id TEXT PRIMARY KEY,            -- 'seed:<file name>'
            topic TEXT NOT NULL REFERENCES topics(name),
            path TEXT NOT NULL,
            title TEXT NOT NULL,
            text TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            added_at TEXT NOT NULL
        );

        CREATE TABLE stories (
            id TEXT PRIMARY KEY,
            feed_id INTEGER REFERENCES feeds(id) ON DELETE SET NULL,
            origin TEXT NOT NULL,          -- the feed URL, or 'replay:<file name>'
            entry_key TEXT NOT NULL,       -- guid, else canonical link, else content hash
            guid TEXT,
            url TEXT NOT NULL,
            canonical_url TEXT NOT NULL,
            title TEXT NOT NULL,
            summary TEXT NOT NULL DEFAULT '',
            content TEXT NOT NULL DEFAULT '',
            full_text TEXT,
            full_text_status TEXT,
            source TEXT,
            author TEXT,
            language TEXT,
            published TEXT NOT NULL,
            dated INTEGER NOT NULL DEFAULT 1,
            seen_at TEXT NOT NULL,
            updated_at TEXT,
            content_hash TEXT NOT NULL,
            UNIQUE (origin, entry_key)
        );
        CREATE INDEX stories_canonical_url ON stories(canonical_url);
        CREATE INDEX stories_published ON stories(published);

        CREATE TABLE developments (
            id TEXT PRIMARY KEY,
            topic TEXT NOT NULL REFERENCES topics(name),
            label TEXT NOT NULL,
            first_story TEXT NOT NULL,      -- a story ID or 'seed:<file name>'
            sources TEXT NOT NULL DEFAULT '[]',
            story_count INTEGER NOT NULL DEFAULT 1,
            terms TEXT NOT NULL DEFAULT '[]',
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL
        );
        CREATE INDEX developments_topic ON developments(topic, last_seen);

        CREATE TABLE decisions (
            story_id TEXT NOT NULL REFERENCES stories(id) ON DELETE CASCADE,
            topic TEXT NOT NULL REFERENCES topics(name),
            status TEXT NOT NULL
                CHECK (status IN ('development', 'coverage', 'duplicate', 'unrelated')),
            score REAL NOT NULL,
            development TEXT REFERENCES developments(id),
            duplicate_of TEXT,
            reasons TEXT NOT NULL DEFAULT '[]',
            decided_at TEXT NOT NULL,
            feedback TEXT CHECK (feedback IN ('relevant', 'irrelevant', 'not-new')),
            feedback_at TEXT,
            PRIMARY KEY (story_id, topic)
        );
        CREATE INDEX decisions_topic_status ON decisions(topic, status, decided_at);
        CREATE INDEX decisions_development ON decisions(development);

        CREATE TABLE alerts (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,  -- development, digest, feed_failing, feed_recovered, test
            topic TEXT,
            story_id TEXT REFERENCES stories(id) ON DELETE SET NULL,
            development TEXT REFERENCES developments(id),
            feed_id INTEGER REFERENCES feeds(id) ON DELETE SET NULL,
            payload TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'delivered', 'failed', 'held')),
            created_at TEXT NOT NULL,
            delivered_at TEXT
        );
        CREATE INDEX alerts_status ON alerts(status, created_at);

        CREATE TABLE deliveries (
            id INTEGER PRIMARY KEY,
            alert_id TEXT NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
            channel TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'delivered', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            last_error TEXT,
            confirmation TEXT,
            delivered_at TEXT,
            UNIQUE (alert_id, channel)
        );
        CREATE INDEX deliveries_due ON deliveries(status, next_attempt_at);

        CREATE TABLE delivery_attempts (
            id INTEGER PRIMARY KEY,
            delivery_id INTEGER NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
            alert_id TEXT NOT NULL,
            channel TEXT NOT NULL,
            attempted_at TEXT NOT NULL,
            outcome TEXT NOT NULL CHECK (outcome IN ('delivered', 'retry', 'failed')),
            status_code TEXT,
            error TEXT,
            duration_ms REAL
        );
        CREATE INDEX delivery_attempts_alert ON delivery_attempts(alert_id);
        """
    )
    db.table("stories").enable_fts(
        ["title", "summary", "content"], fts_version="FTS5", create_triggers=True
    )


@migrations()
def m002_detection(db: Database) -> None:
    """Near-duplicate index (MinHash signatures and LSH band keys) and background term
    frequencies for relevance scoring (see monitor/dedupe.py and monitor/score.py)."""
    db.executescript(
        """
        CREATE TABLE story_signatures (
            story_id TEXT PRIMARY KEY,      -- a story ID or 'seed:<file name>'
            kind TEXT NOT NULL CHECK (kind IN ('body', 'title')),
            size INTEGER NOT NULL,          -- distinct shingles summarised
            signature BLOB NOT NULL         -- MinHash values, little-endian uint64
        );

        CREATE TABLE story_bands (
            band TEXT NOT NULL,             -- '<kind><band>:<digest of the band's rows>'
            story_id TEXT NOT NULL
        );
        CREATE INDEX story_bands_band ON story_bands(band);
        CREATE INDEX story_bands_story ON story_bands(story_id);

        CREATE TABLE term_frequencies (
            term TEXT PRIMARY KEY,          -- '' holds the number of stories counted
            df INTEGER NOT NULL
        );

        CREATE INDEX decisions_feedback ON decisions(feedback_at);
        """
    )


@migrations()
def m003_lsh_integer_keys(db: Database) -> None:
    """LSH band keys as 64-bit integers in one clustered index (`story_lsh`) instead of
    text keys in a table with two indexes: a quarter of the pages, so a feed's commit
    writes far fewer of them. The keys point at the signature's new ``id`` (an INTEGER
    PRIMARY KEY, so VACUUM, dumps and table rebuilds keep it) and are rebuilt from the
    stored signatures, a few thousand at a time."""
    from monitor import dedupe  # the key scheme lives with the signatures

    db.executescript(
        """
        CREATE TABLE story_signatures_v3 (
            id INTEGER PRIMARY KEY,         -- what story_lsh.signature points at
            story_id TEXT NOT NULL UNIQUE,  -- a story ID or 'seed:<file name>'
            kind TEXT NOT NULL CHECK (kind IN ('body', 'title')),
            size INTEGER NOT NULL,          -- distinct shingles summarised
            signature BLOB NOT NULL         -- MinHash values, little-endian uint64
        );
        INSERT INTO story_signatures_v3 (story_id, kind, size, signature)
            SELECT story_id, kind, size, signature FROM story_signatures ORDER BY rowid;
        DROP TABLE story_signatures;
        ALTER TABLE story_signatures_v3 RENAME TO story_signatures;

        CREATE TABLE story_lsh (
            band INTEGER NOT NULL,          -- LSH band key: digest of kind, band number, rows
            signature INTEGER NOT NULL,     -- story_signatures.id
            PRIMARY KEY (band, signature)
        ) WITHOUT ROWID;
        CREATE INDEX story_lsh_signature ON story_lsh(signature);
        DROP TABLE story_bands;
        """
    )
    last = 0
    while True:
        rows = db.execute(
            "SELECT id, kind, size, signature FROM story_signatures WHERE id > ? "
            "ORDER BY id LIMIT 2000",
            [last],
        ).fetchall()
        if not rows:
            break
        keys: list[tuple[int, int]] = []
        for sig_id, kind, size, blob in rows:
            last = sig_id
            if not blob or len(blob) % 8:
                continue  # unreadable: the story cannot be found as an original (as before)
            sig = dedupe.Signature.from_bytes(bytes(blob), int(size), str(kind))
            keys.extend((band, sig_id) for band in dedupe.band_keys(sig))
        db.conn.executemany("INSERT OR IGNORE INTO story_lsh (band, signature) VALUES (?, ?)", keys)


@migrations()
def m004_raw_item_hash(db: Database) -> None:
    """A digest of each entry as its feed gave it, before cleaning (`parse._raw_hash`), so
    that the known entries of a changed feed are recognised without cleaning them again.
    Existing stories get theirs the next time their feed repeats them. The full-text index
    is refreshed only when the indexed columns change, not on every update of a story."""
    db.executescript(
        """
        ALTER TABLE stories ADD COLUMN raw_hash INTEGER;
        CREATE INDEX stories_raw_hash ON stories(raw_hash);

        DROP TRIGGER IF EXISTS stories_au;
        CREATE TRIGGER stories_au AFTER UPDATE OF title, summary, content ON stories BEGIN
          INSERT INTO stories_fts (stories_fts, rowid, title, summary, content)
            VALUES ('delete', old.rowid, old.title, old.summary, old.content);
          INSERT INTO stories_fts (rowid, title, summary, content)
            VALUES (new.rowid, new.title, new.summary, new.content);
        END;
        """
    )


@migrations()
def m005_lsh_recent_keys(db: Database) -> None:
    """New LSH band keys go to a small table (`story_lsh_recent`) that is merged into
    `story_lsh` a few thousand stories at a time (`DetectionStore.merge_lsh`): 32 keys a
    story inserted at random places of a large index dirtied ~32 pages per story; a merge
    writes each page of the large index about once per few thousand stories."""
    db.executescript(
        """
        CREATE TABLE story_lsh_recent (
            band INTEGER NOT NULL,          -- as story_lsh.band
            signature INTEGER NOT NULL,     -- story_signatures.id
            PRIMARY KEY (band, signature)
        ) WITHOUT ROWID;
        CREATE INDEX story_lsh_recent_signature ON story_lsh_recent(signature);
        """
    )


@migrations()
def m006_signatures_from_word_hashes(db: Database) -> None:
    """Signatures from word hashes (`dedupe.shingle_hash`) instead of one SHA-1 per
    shingle: every stored signature and its band keys are computed again from the text it
    was made from (a story's title, summary and content or fetched article; a seed's title
    and text), two thousand at a time. A signature whose text is gone is dropped."""
    from monitor import dedupe
    from monitor.text import story_body

    count = db.execute("SELECT count(*) FROM story_signatures").fetchone()[0]
    if count > 10_000:  # about 3 seconds a 10,000: say why the start is slow
        logging.getLogger("monitor.storage").warning(
            "re-signing %d stories for the near-duplicate index (once, after an upgrade)", count
        )
    db.execute("DELETE FROM story_lsh")  # (not executescript: it would commit first)
    db.execute("DELETE FROM story_lsh_recent")
    last = 0
    while True:
        rows = db.execute(
            """
            SELECT g.id, s.title, s.summary, coalesce(nullif(s.full_text, ''), s.content),
                   d.title, d.text
            FROM story_signatures g
            LEFT JOIN stories s ON s.id = g.story_id
            LEFT JOIN seeds d ON d.id = g.story_id
            WHERE g.id > ? ORDER BY g.id LIMIT 2000
            """,
            [last],
        ).fetchall()
        if not rows:
            break
        keys: list[tuple[int, int]] = []
        for sig_id, title, summary, content, seed_title, seed_text in rows:
            last = sig_id
            if title is not None:
                sig = dedupe.signature(title, story_body(summary, content))
            elif seed_title is not None:
                sig = dedupe.signature(seed_title, seed_text or "")
            else:
                sig = None
            if sig is None:
                db.execute("DELETE FROM story_signatures WHERE id = ?", [sig_id])
                continue
            db.execute(
                "UPDATE story_signatures SET kind = ?, size = ?, signature = ? WHERE id = ?",
                [sig.kind, sig.size, sig.to_bytes(), sig_id],
            )
            keys.extend((band, sig_id) for band in dedupe.band_keys(sig))
        keys.sort()
        db.conn.executemany("INSERT OR IGNORE INTO story_lsh (band, signature) VALUES (?, ?)", keys)


@migrations()
def m007_lsh_filter(db: Database) -> None:
    """A Bloom filter of `story_lsh`'s keys (`DetectionStore.dedupe_candidates` probes the
    large index only for keys it may hold), saved a part a row by `merge_lsh`. A write into
    `story_lsh` marks the saved filter stale (`merge_lsh` then marks it current again, as
    it adds the keys it merged); a stale filter is built again from the index."""
    db.execute(
        """
        CREATE TABLE lsh_filter (
            part INTEGER PRIMARY KEY,       -- 0, 1, ...: the filter's parts, in order
            token INTEGER NOT NULL,         -- changes with every save (processes compare them)
            keys INTEGER NOT NULL,          -- keys added to the part
            bits BLOB NOT NULL              -- rbloom's saved form of the part
        )
        """
    )
    db.execute("CREATE TABLE lsh_filter_state (stale INTEGER NOT NULL)")
    db.execute("INSERT INTO lsh_filter_state (stale) VALUES (1)")
    for event in ("INSERT", "UPDATE"):
        db.execute(
            f"CREATE TRIGGER story_lsh_{event.lower()}_stales_filter AFTER {event} ON story_lsh "
            "WHEN (SELECT stale FROM lsh_filter_state) = 0 "
            "BEGIN UPDATE lsh_filter_state SET stale = 1; END"
        )


@migrations()
def m008_lsh_recent_rows(db: Database) -> None:
    """`story_lsh_recent` holds one row per story, its band keys in one blob, appended in
    signature order, instead of one row per key in an index on the key: a feed's 1,600
    new keys dirtied ~300 pages of that index at every commit. Lookups of the recent keys
    run in memory (`RecentKeys`). The keys already there are carried over."""
    from .recent_keys import pack

    rows = db.execute("SELECT signature, band FROM story_lsh_recent ORDER BY signature").fetchall()
    db.execute("DROP TABLE story_lsh_recent")  # (not executescript: it would commit first)
    db.execute(
        """
        CREATE TABLE story_lsh_recent (
            signature INTEGER PRIMARY KEY,  -- story_signatures.id
            bands BLOB NOT NULL             -- its band keys, little-endian signed 64-bit
        )
        """
    )
    grouped: dict[int, list[int]] = {}
    for sig_id, band in rows:
        grouped.setdefault(int(sig_id), []).append(int(band))
    db.conn.executemany(
        "INSERT INTO story_lsh_recent (signature, bands) VALUES (?, ?)",
        [(sig_id, pack(bands)) for sig_id, bands in grouped.items()],
    )


@migrations()
def m009_full_text_in_batches(db: Database) -> None:
    """New stories join the full-text index a batch at a time (`StoryStore.index_stories`:
    every few hundred stories, at the end of each poll cycle or replay, and on close)
    instead of one by one from a trigger. A trigger's insert into FTS5 runs in a statement
    savepoint, and FTS5 writes its pending terms out at every savepoint: each story became
    a segment of its own, merged again and again. `stories_fts_state.indexed_upto` is the
    last `stories.rowid` indexed; the triggers keep those rows' entries in step with edits
    and deletes, and index at once a new row that lands at or below it (a reused rowid)."""
    db.execute("CREATE TABLE stories_fts_state (indexed_upto INTEGER NOT NULL)")
    db.execute("INSERT INTO stories_fts_state SELECT coalesce(max(rowid), 0) FROM stories")
    for name in ("stories_ai", "stories_ad", "stories_au"):
        db.execute(f"DROP TRIGGER IF EXISTS {name}")
    indexed = "(SELECT indexed_upto FROM stories_fts_state)"
    add = (
        "INSERT INTO stories_fts (rowid, title, summary, content) "
        "VALUES (new.rowid, new.title, new.summary, new.content);"
    )
    remove = (
        "INSERT INTO stories_fts (stories_fts, rowid, title, summary, content) "
        "VALUES ('delete', old.rowid, old.title, old.summary, old.content);"
    )
    db.execute(
        f"CREATE TRIGGER stories_ai AFTER INSERT ON stories "
        f"WHEN new.rowid <= {indexed} BEGIN {add} END"
    )
    db.execute(
        f"CREATE TRIGGER stories_ad AFTER DELETE ON stories "
        f"WHEN old.rowid <= {indexed} BEGIN {remove} END"
    )
    db.execute(
        f"CREATE TRIGGER stories_au AFTER UPDATE OF title, summary, content ON stories "
        f"WHEN old.rowid <= {indexed} BEGIN {remove} {add} END"
    )


@migrations()
def m010_word_prior(db: Database) -> None:
    """Kept word-frequency tables (`wordprior`): a language's sorted word keys and their
    buckets as little-endian arrays, in parts of a few thousand words (`part` 0, 1, ...),
    the table's size (`words`, on every part: a missing part is noticed), and what they
    were built from (`source`: other word lists make them stale, and they are rebuilt and
    replaced)."""
    db.execute(
        "CREATE TABLE word_prior (lang TEXT NOT NULL, part INTEGER NOT NULL, "
        "source TEXT NOT NULL, words INTEGER NOT NULL, keys BLOB NOT NULL, "
        "buckets BLOB NOT NULL, PRIMARY KEY (lang, part))"
    )


@migrations()
def m011_lsh_window(db: Database) -> None:
    """Marks for the near-duplicate index's window (`DetectionStore.keep_lsh_window`): each
    row says that the signatures after the previous mark's `upto`, up to this one's
    (`story_signatures.id` grows as stories are signed), were made by the time `at`;
    `pruned` is 1 once their band keys have left the index. The signatures already there
    are marked with the time of the upgrade: the window starts for them now (a replay of
    an old archive must not date them back to its own time)."""
    db.execute(
        "CREATE TABLE lsh_marks (upto INTEGER PRIMARY KEY, at TEXT NOT NULL, "
        "pruned INTEGER NOT NULL DEFAULT 0)"
    )
    db.execute(
        "INSERT INTO lsh_marks (upto, at) "
        "SELECT id, ? FROM story_signatures ORDER BY id DESC LIMIT 1",
        [datetime.now(UTC).isoformat(timespec="seconds")],
    )


@migrations()
def m012_seed_language(db: Database) -> None:
    """The language each seed was detected as (`language`; NULL until it is next read), so
    a process whose seeds have not changed does not load the language model for them."""
    db.execute("ALTER TABLE seeds ADD COLUMN language TEXT")


@migrations()
def m013_story_retention(db: Database) -> None:
    """`database.retention`: the text of old unrelated stories is cleared and `pruned_at`
    says when. The partial index holds the stories not cleared yet by the time first seen,
    so that finding the next ones to clear never reads the millions already cleared;
    `retention_state.kept_before` is where the next search starts: every story first seen
    before it that still has its text keeps it for good (related, or with feedback), and
    reading those again and again would cost more every year. Storing an earlier story
    moves it back (`StoryStore.insert_story`)."""
    db.execute("ALTER TABLE stories ADD COLUMN pruned_at TEXT")
    db.execute("CREATE INDEX stories_unpruned ON stories(seen_at) WHERE pruned_at IS NULL")
    db.execute("CREATE TABLE retention_state (kept_before TEXT NOT NULL)")
    db.execute("INSERT INTO retention_state (kept_before) VALUES ('')")


@migrations()
def m014_signatures_leave_with_their_keys(db: Database) -> None:
    """A signature whose keys have left the near-duplicate index is never read again
    (`DetectionStore._prune_lsh` now empties it with its range): the ones removed before
    this version are emptied here. A range is removed when the first mark at or above a
    signature's id says so (`_lsh_range_removed`); the seeds' stay."""
    # Taken out and put back (as `base.put_back` does now, written out here
    # with the table's columns at this migration): emptied in place they keep their pages.
    db.executescript(
        """
        CREATE TEMP TABLE m014_emptying AS
            SELECT id, story_id, kind, size FROM story_signatures
            WHERE NOT (story_id >= 'seed:' AND story_id < 'seed;') AND coalesce((
                SELECT m.pruned FROM lsh_marks m WHERE m.upto >= story_signatures.id
                ORDER BY m.upto LIMIT 1), 0) = 1;
        DELETE FROM story_signatures WHERE id IN (SELECT id FROM temp.m014_emptying);
        INSERT INTO story_signatures (id, story_id, kind, size, signature)
            SELECT id, story_id, kind, size, x'' FROM temp.m014_emptying ORDER BY id;
        DROP TABLE temp.m014_emptying;
        """
    )


@migrations()
def m015_delivery_claims(db: Database) -> None:
    """A delivery is claimed before it is sent (`AlertStore.claim_delivery`): `claimed_by`
    names the process sending it, `claimed_until` is when the claim lapses should that
    process die. Two processes delivering at once (the daemon and `monitor poll`) each
    sent every due delivery they had read; now the second one skips it."""
    db.execute("ALTER TABLE deliveries ADD COLUMN claimed_by TEXT")
    db.execute("ALTER TABLE deliveries ADD COLUMN claimed_until TEXT")


@migrations()
def m016_delivery_recipients_done(db: Database) -> None:
    """`recipients_done`: the recipients an attempt settled (accepted, or refused for good)
    while others were deferred (greylisting), as a JSON list, so that the retry goes to the
    deferred ones only. Before it, a recipient deferred while another accepted was never
    tried again."""
    db.execute("ALTER TABLE deliveries ADD COLUMN recipients_done TEXT")


@migrations()
def m017_seed_developments_dated_by_their_first_report(db: Database) -> None:
    """A seed's development was stored with the moment the seeds were loaded as its
    `first_seen`, and kept it once stories reported it: it is dated by the first of them
    (the decision that joined it or restated the seed), as the judge does from now on."""
    db.execute(
        """
        UPDATE developments SET first_seen = (
            SELECT min(d.decided_at) FROM decisions d
            WHERE d.topic = developments.topic
              AND (d.development = developments.id OR d.duplicate_of = developments.first_story)
        )
        WHERE first_story LIKE 'seed:%' AND story_count > 1 AND EXISTS (
            SELECT 1 FROM decisions d
            WHERE d.topic = developments.topic
              AND (d.development = developments.id OR d.duplicate_of = developments.first_story)
        )
        """
    )
