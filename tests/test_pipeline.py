"""The polling pipeline end to end against a real local HTTP server and a real SQLite file."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from monitor.config import Settings, load_settings, settings_from_dict
from monitor.fetch import Fetcher
from monitor.parse import parse_feed
from monitor.pipeline import Pipeline, PollSummary
from monitor.storage import FeedRow, Storage
from tests.feedserver import FeedServer, Reply, Request
from tests.test_parse import record_cleaning

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def rss(items: list[tuple[str, str, str]], *, title: str = "Test feed") -> bytes:
    """An RSS 2.0 document of (guid, title, description) items."""
    parts = [
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>{title}</title>'
        "<link>https://news.example/</link><description>d</description>"
    ]
    for number, (guid, headline, text) in enumerate(items):
        stamp = format_datetime(T0 - timedelta(minutes=number))
        parts.append(
            f"<item><guid>{guid}</guid><title>{headline}</title>"
            f"<link>https://news.example/{guid}</link><pubDate>{stamp}</pubDate>"
            f"<description>{text}</description></item>"
        )
    parts.append("</channel></rss>")
    return "".join(parts).encode()


def items(prefix: str, count: int) -> list[tuple[str, str, str]]:
    return [
        (
            f"{prefix}-{n}",
            f"Harbour report {prefix} number {n}",
            f"Fishing boats returned to port {n} with a modest catch, officials said.",
        )
        for n in range(count)
    ]


def one_item(guid: str, title: str, text: str, link: str | None = None) -> bytes:
    """An RSS document of one item; without ``link``, its guid is no permalink."""
    where = f"<link>{link}</link>" if link else ""
    perma = "" if link else " isPermaLink='false'"
    return rss([]).replace(
        b"</channel>",
        f"<item><guid{perma}>{guid}</guid>{where}<title>{title}</title>"
        f"<description>{text}</description></item></channel>".encode(),
    )


def write_config(tmp_path: Path, urls: list[str], **polling: Any) -> Path:
    lines = [f'[database]\npath = "{tmp_path / "monitor.db"}"\n', "[polling]"]
    lines += [f"{key} = {value!r}".replace("'", '"') for key, value in polling.items()]
    lines.append(f'\n[[topics]]\nname = "taliban-delisting"\nseeds = ["{ROOT / "seeds"}"]\n')
    lines.append("[alerts]\nfeed_failing_polls = 3\n")
    for number, url in enumerate(urls):
        lines.append(f'[[feeds]]\nurl = "{url}"\nname = "feed {number}"\n')
    path = tmp_path / "monitor.toml"
    path.write_text("\n".join(lines))
    return path


class Clock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def poll(settings: Settings, storage: Storage, clock: Clock) -> PollSummary:
    storage.sync_feeds(settings.feeds, clock())
    pipeline = Pipeline(settings, storage, clock=clock)
    return asyncio.run(pipeline.poll(only_due=False))


@contextmanager
def one_feed_pipeline(
    tmp_path: Path, feed_server: FeedServer, database: str, entries: int, start: datetime
) -> Iterator[tuple[Storage, Clock, Pipeline]]:
    """A feed of ``entries`` unrelated items at /a.xml, the topic "t" on the repository's
    seeds, ``database`` lines added to `[database]`; a clock at ``start`` and a pipeline on
    it, closed with the storage whatever the test does."""
    url = feed_server.route("/a.xml", Reply(200, rss(items("a", entries))))
    config = tmp_path / "monitor.toml"
    config.write_text(
        f'[database]\npath = "m.db"\n{database}\n\n'
        f'[[topics]]\nname = "t"\nseeds = ["{ROOT / "seeds"}"]\n\n'
        f'[[feeds]]\nurl = "{url}"\n'
    )
    settings = load_settings(config)
    storage = Storage(settings.database_path)
    clock = Clock(start)
    storage.sync_feeds(settings.feeds, clock())
    pipeline = Pipeline(settings, storage, clock=clock)
    try:
        yield storage, clock, pipeline
    finally:
        pipeline.close()
        storage.close()


def cycle(pipeline: Pipeline) -> PollSummary:
    return asyncio.run(pipeline.poll(only_due=False))


def feed_row(storage: Storage, url: str) -> dict[str, Any]:
    rows = list(storage.db.query("SELECT * FROM feeds WHERE config_url = ?", [url]))
    assert rows, url
    return rows[0]


def count(storage: Storage, sql: str, *params: Any) -> int:
    return int(storage.db.execute(sql, params).fetchone()[0])


@pytest.fixture
def setup(tmp_path: Path, feed_server: FeedServer) -> Callable[..., tuple[Settings, Storage]]:
    opened: list[Storage] = []

    def make(urls: list[str], **polling: Any) -> tuple[Settings, Storage]:
        settings = load_settings(write_config(tmp_path, urls, timeout="5s", **polling))
        storage = Storage(settings.database_path)
        opened.append(storage)
        return settings, storage

    yield make
    for storage in opened:
        storage.close()


def conditional(etag: str, last_modified: str, body: bytes) -> Callable[[Request], Reply]:
    """Answer 304 only when both validators come back exactly as sent."""

    def answer(request: Request) -> Reply:
        if (
            request.header("if-none-match") == etag
            and request.header("if-modified-since") == last_modified
        ):
            return Reply(304, headers={"ETag": etag})
        return Reply(
            200,
            body,
            {"ETag": etag, "Last-Modified": last_modified, "Content-Type": "application/rss+xml"},
        )

    return answer


def test_conditional_get_round_trip(feed_server: FeedServer, setup: Any) -> None:
    etag, modified = 'W/"v1-abc"', "Sat, 31 Oct 2026 10:00:00 GMT"
    url = feed_server.route("/feed.xml", conditional(etag, modified, rss(items("a", 5))))
    settings, storage = setup([url])
    clock = Clock()
    first = poll(settings, storage, clock)
    assert first.new == 5 and first.outcomes == {"ok": 1}
    row = feed_row(storage, url)
    assert (row["etag"], row["last_modified"]) == (etag, modified)
    clock.now += timedelta(hours=1)
    second = poll(settings, storage, clock)
    assert second.outcomes == {"not_modified": 1} and second.new == 0
    sent = feed_server.requests_for("/feed.xml")[-1]
    assert sent.header("if-none-match") == etag
    assert sent.header("if-modified-since") == modified
    row = feed_row(storage, url)
    assert row["last_outcome"] == "not_modified" and row["etag"] == etag
    assert row["next_due"] > (clock.now + timedelta(minutes=10)).isoformat()
    assert count(storage, "SELECT count(*) FROM stories") == 5
    assert count(storage, "SELECT count(*) FROM decisions") == 5


def test_a_feed_with_nothing_new_logs_at_debug_one_with_news_at_info(
    feed_server: FeedServer, setup: Any, caplog: pytest.LogCaptureFixture
) -> None:
    etag, modified = 'W/"v1-abc"', "Sat, 31 Oct 2026 10:00:00 GMT"
    url = feed_server.route("/feed.xml", conditional(etag, modified, rss(items("a", 2))))
    settings, storage = setup([url])
    clock = Clock()
    caplog.set_level(logging.DEBUG, logger="monitor.pipeline")

    def feed_lines() -> list[tuple[int, str]]:
        return [(r.levelno, r.getMessage()) for r in caplog.records if r.msg.startswith("feed ")]

    poll(settings, storage, clock)
    [(level, message)] = feed_lines()
    assert level == logging.INFO and "2 new" in message
    caplog.clear()
    clock.now += timedelta(hours=1)
    poll(settings, storage, clock)
    [(level, message)] = feed_lines()
    assert level == logging.DEBUG and "not_modified 304" in message


def test_a_feed_read_in_spite_of_a_flaw_says_which_in_its_line(
    feed_server: FeedServer, setup: Any, caplog: pytest.LogCaptureFixture
) -> None:
    flawed = rss(items("b", 2)).replace(b"modest catch", b"modest &bogus; catch")
    settings, storage = setup([feed_server.route("/bozo.xml", Reply(200, flawed))])
    caplog.set_level(logging.DEBUG, logger="monitor.pipeline")
    assert poll(settings, storage, Clock()).new == 2
    [record] = [r for r in caplog.records if r.msg.startswith("feed ")]
    assert "2 new" in record.getMessage() and "read in spite of: " in record.getMessage()
    assert "entities" in record.__dict__["warning"]  # (a field of its own in JSON logs)


def test_edited_entry_is_updated_not_new(feed_server: FeedServer, setup: Any) -> None:
    before = rss([("g1", "Port opens", "The port opened on Monday.")])
    after = rss([("g1", "Port opens early", "The port opened on Monday, a day early.")])
    url = feed_server.route("/edit.xml", Reply(200, before), Reply(200, after))
    settings, storage = setup([url])
    clock = Clock()
    poll(settings, storage, clock)
    clock.now += timedelta(hours=1)
    summary = poll(settings, storage, clock)
    assert (summary.new, summary.edited) == (0, 1)
    story = storage.db.execute("SELECT title, summary, updated_at FROM stories").fetchall()
    assert story == [
        ("Port opens early", "The port opened on Monday, a day early.", clock.now.isoformat())
    ]
    assert count(storage, "SELECT count(*) FROM decisions") == 1


def test_a_tracking_fragment_does_not_keep_a_copy_from_its_url(
    feed_server: FeedServer, setup: Any
) -> None:
    """One outlet's feeds tag the same article's link with their own tracking fragment
    ("#xtor=RSS-3208"), another feed links it bare: the same canonical URL, a copy."""
    article = "https://outlet.example/world/port-reopens.html"
    tagged = feed_server.route(
        "/outlet.xml",
        Reply(200, one_item("p", "Port reopens", "Ships.", f"{article}#xtor=RSS-3208")),
    )
    bare = feed_server.route(
        "/other.xml",
        Reply(200, one_item("u", "Unrelated", "Nothing.", "https://elsewhere.example/x")),
        Reply(200, one_item("o", "The port is open again", "Harbour officials said.", article)),
    )
    settings, storage = setup([tagged, bare])
    clock = Clock()
    poll(settings, storage, clock)
    clock.now += timedelta(hours=1)
    poll(settings, storage, clock)
    first = storage.db.execute("SELECT id FROM stories WHERE title = 'Port reopens'").fetchone()[0]
    (reasons,) = storage.db.execute(
        "SELECT d.reasons FROM decisions d JOIN stories s ON s.id = d.story_id "
        "WHERE s.title = 'The port is open again'"
    ).fetchone()
    copies = [r["text"] for r in json.loads(reasons) if r["kind"] == "duplicate"]
    assert copies == [f"same canonical URL as {first}"]


def test_an_edit_takes_the_source_the_item_now_names(feed_server: FeedServer, setup: Any) -> None:
    """A news-search item read by the previous version kept the search feed's name as its
    source and its title's " - Outlet"; read again, its title was mended in place but the
    source stayed, unlike every later story of the same feed."""
    item = (
        "<item><guid>CBMi1</guid><link>https://news.example/articles/CBMi1</link>"
        "<title>Port reopens - Harbour Times</title><description>Ships are back.</description>"
        "{source}</item>"
    )
    before = rss([]).replace(b"</channel>", item.format(source="").encode() + b"</channel>")
    after = rss([]).replace(
        b"</channel>",
        item.format(source='<source url="https://harbour.example">Harbour Times</source>').encode()
        + b"</channel>",
    )
    url = feed_server.route("/search.xml", Reply(200, before), Reply(200, after))
    settings, storage = setup([url])
    clock = Clock()
    poll(settings, storage, clock)
    clock.now += timedelta(hours=1)
    assert (
        poll(settings, storage, clock).edited,
        count(storage, "SELECT count(*) FROM stories"),
    ) == (1, 1)
    assert storage.db.execute("SELECT title, source FROM stories").fetchall() == [
        ("Port reopens", "Harbour Times")
    ]


def test_an_entry_whose_guid_changes_at_every_fetch_is_stored_once(
    feed_server: FeedServer, setup: Any
) -> None:
    """A feed that puts the time (or a session) into its guids: the same item, same link and
    same text, came back under a new guid at every poll and was stored and judged again."""

    def feed(fetch: int, stories: list[tuple[str, str]]) -> bytes:
        rotated = [
            f"<item><guid>https://news.example/{slug}?at={fetch}</guid><title>{title}</title>"
            f"<link>https://news.example/{slug}</link><description>{title}, said the harbour "
            f"master on Monday.</description></item>"
            for slug, title in stories
        ]
        return rss([]).replace(b"</channel>", "".join(rotated).encode() + b"</channel>")

    first = [("boats", "Boats return early"), ("nets", "Nets mended")]
    url = feed_server.route(
        "/rotating.xml",
        Reply(200, feed(1, first)),
        Reply(200, feed(2, first)),
        Reply(200, feed(3, [*first, ("port", "Port reopens")])),
        Reply(200, feed(4, [("boats", "Boats return early, and the catch is good"), *first[1:]])),
    )
    settings, storage = setup([url])
    clock = Clock()
    assert poll(settings, storage, clock).new == 2
    clock.now += timedelta(hours=1)
    again = poll(settings, storage, clock)
    assert (again.new, count(storage, "SELECT count(*) FROM stories")) == (0, 2)
    clock.now += timedelta(hours=1)
    assert poll(settings, storage, clock).new == 1  # a new item is still new
    clock.now += timedelta(hours=1)
    assert poll(settings, storage, clock).new == 1  # new text under a new guid: a new story
    assert count(storage, "SELECT count(*) FROM stories") == 4


def test_the_posts_of_a_live_page_are_entries_of_their_own_and_not_copies(
    feed_server: FeedServer, setup: Any
) -> None:
    """A live page's feed gives each post the page's address and a fragment of its own
    (".../live/port#block-2"): the fragment was dropped from the entry's identity, so every
    post after the first was lost as a repeat of it, and later as a copy of its URL. A
    story linking the same post is a copy; one linking the whole page is not a copy of a
    post, nor a post a copy of it (whichever feed is read first)."""
    page = "https://news.example/live/port"

    def feed(items: list[tuple[str, str, str, str]]) -> bytes:
        return rss([]).replace(
            b"</channel>",
            "".join(
                f"<item><guid>{guid}</guid><link>{link}</link><title>{title}</title>"
                f"<description>{text}</description></item>"
                for guid, link, title, text in items
            ).encode()
            + b"</channel>",
        )

    first = (f"{page}#block-1", f"{page}#block-1", "Ferry crews walk out", "Crews stopped work.")
    second = (f"{page}#block-2", f"{page}#block-2", "Harbour fire put out", "A warehouse fire.")
    live_url = feed_server.route(
        "/live.xml", Reply(200, feed([first])), Reply(200, feed([second, first]))
    )
    elsewhere = feed_server.route(
        "/other.xml",
        Reply(200, feed([])),
        Reply(
            200,
            feed(
                [
                    ("o-1", f"{page}#block-1", "Crews walk out at the port", "Ferry crews."),
                    ("o-2", page, "Live: port news", "Updates from the port through the day."),
                ]
            ),
        ),
    )
    settings, storage = setup([live_url, elsewhere])
    clock = Clock()
    poll(settings, storage, clock)
    clock.now += timedelta(hours=1)
    assert poll(settings, storage, clock).new == 3  # the second post, and the other feed's
    rows = storage.db.execute(
        "SELECT s.title, d.reasons FROM stories s JOIN decisions d ON d.story_id = s.id"
    ).fetchall()
    copies = {
        title: [r["text"] for r in json.loads(reasons) if r["kind"] == "duplicate"]
        for title, reasons in rows
    }
    first_id = storage.db.execute("SELECT id FROM stories ORDER BY rowid").fetchone()[0]
    assert copies == {
        "Ferry crews walk out": [],
        "Harbour fire put out": [],
        "Crews walk out at the port": [f"same canonical URL as {first_id}"],
        "Live: port news": [],
    }


def test_a_live_post_stored_by_the_previous_version_is_still_told_apart_by_its_fragment(
    tmp_path: Path,
) -> None:
    """The previous version keyed an entry without its guid's fragment (".../live/port" for
    the post ".../live/port#block-1", whose link is the page): a story linking the whole
    page was taken for a copy of that post, and a story linking the post was not."""
    page = "https://news.example/live/port"
    body = rss([]).replace(
        b"</channel>",
        f"<item><guid>{page}#block-1</guid><link>{page}</link><title>Ferry crews walk out"
        "</title><description>Crews stopped work.</description></item></channel>".encode(),
    )
    (post,) = parse_feed(body, {}, "https://news.example/live.xml", T0).entries
    assert post.key == f"{page}#block-1"
    storage = Storage(tmp_path / "m.db")
    try:
        with storage.atomic():  # stored as the previous version stored it
            sid = storage.insert_story(
                dataclasses.replace(post, key=page),
                origin="https://news.example/live.xml",
                feed_id=None,
                now=T0,
            )
        assert storage.story_with_url(page, exclude="", fragment="block-1") == sid
        assert storage.story_with_url(page, exclude="", fragment="") is None  # the whole page
    finally:
        storage.close()


def test_entries_without_a_link_are_not_copies_of_each_other(
    feed_server: FeedServer, setup: Any
) -> None:
    """An entry with no link has no canonical URL, and every story without one shared that
    "URL": each was taken for a copy of the first such story of any feed."""
    first = feed_server.route(
        "/a.xml", Reply(200, one_item("a-1", "Ferry crews walk out", "Crews stopped work."))
    )
    second = feed_server.route(
        "/b.xml", Reply(200, one_item("b-1", "Harbour fire put out", "A warehouse burnt."))
    )
    settings, storage = setup([first, second])
    assert poll(settings, storage, Clock()).new == 2
    rows = storage.db.execute(
        "SELECT s.canonical_url, d.duplicate_of, d.reasons FROM stories s "
        "JOIN decisions d ON d.story_id = s.id"
    ).fetchall()
    assert [(url, of) for url, of, _ in rows] == [("", None), ("", None)]
    assert not [
        r for _, _, reasons in rows for r in json.loads(reasons) if r["kind"] == "duplicate"
    ]


def test_known_entries_of_a_changed_feed_are_recognised_by_their_raw_hash(
    feed_server: FeedServer, setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = items("k", 4)
    markup = [
        (g, t, f"&lt;p&gt;{text}&lt;/p&gt;") if g == "k-1" else (g, t, text) for g, t, text in old
    ]
    edited = [(g, t, text + " Updated.") if g == "k-2" else (g, t, text) for g, t, text in old]
    url = feed_server.route(
        "/raw.xml",
        Reply(200, rss(old)),
        Reply(200, rss([*old, ("k-new", "Harbour report k new", "A new item.")])),
        Reply(200, rss(markup)),  # k-1: new markup, same clean text
        Reply(200, rss(edited)),  # k-2: edited
    )
    settings, storage = setup([url])
    clock = Clock()

    def raw_hashes() -> dict[str, int | None]:
        rows = storage.db.execute("SELECT entry_key, raw_hash FROM stories").fetchall()
        return dict(rows)

    poll(settings, storage, clock)
    first = raw_hashes()
    assert len(first) == 4 and all(isinstance(h, int) for h in first.values())

    clock.now += timedelta(hours=1)
    cleaned = record_cleaning(monkeypatch)
    summary = poll(settings, storage, clock)
    assert cleaned == ["k-new"]  # the four known entries were recognised uncleaned
    assert (summary.entries, summary.new, summary.edited) == (5, 1, 0)
    assert {k: h for k, h in raw_hashes().items() if k != "k-new"} == first

    clock.now += timedelta(hours=1)
    summary = poll(settings, storage, clock)
    assert (summary.entries, summary.new, summary.edited) == (4, 0, 0)
    third = raw_hashes()
    assert third["k-1"] != first["k-1"]  # the new digest is kept, the story is not edited
    assert {k: h for k, h in third.items() if k != "k-1"} == {
        k: h for k, h in first.items() if k != "k-1"
    } | {"k-new": third["k-new"]}

    clock.now += timedelta(hours=1)
    summary = poll(settings, storage, clock)
    assert (summary.entries, summary.new, summary.edited) == (4, 0, 1)
    text = storage.db.execute("SELECT summary FROM stories WHERE entry_key = 'k-2'").fetchone()
    assert text[0].endswith("Updated.")
    hits = storage.db.execute(
        "SELECT count(*) FROM stories_fts WHERE stories_fts MATCH 'updated'"
    ).fetchone()
    assert hits == (1,)  # the edit reached the full-text index
    assert count(storage, "SELECT count(*) FROM decisions") == 5


def poll_while_worker_busy(
    settings: Settings,
    storage: Storage,
    clock: Clock,
    waiting: int,
    queued: Callable[[Pipeline], int] = lambda pipeline: len(pipeline._unchanged),
) -> PollSummary:
    """Poll with the worker held until ``waiting`` feeds queue for it (as under load):
    304s waiting to be written, unless ``queued`` counts something else."""

    async def run() -> PollSummary:
        pipeline = Pipeline(settings, storage, clock=clock)
        release = threading.Event()
        held = asyncio.create_task(pipeline.on_worker(release.wait, 10.0))

        async def watch() -> None:
            for _ in range(1000):  # at most ~10 s
                if queued(pipeline) >= waiting:
                    break
                await asyncio.sleep(0.01)
            release.set()

        watcher = asyncio.create_task(watch())
        try:
            return await pipeline.poll(only_due=False)
        finally:
            release.set()
            await asyncio.gather(held, watcher)

    return asyncio.run(run())


def polled_once(
    feed_server: FeedServer, setup: Any, name: str, feeds: int
) -> tuple[list[str], Settings, Storage, Clock]:
    """``feeds`` feeds that answer 304 from their second poll on, polled once; an hour on."""
    etag, modified = '"v1"', "Sat, 31 Oct 2026 10:00:00 GMT"
    urls = [
        feed_server.route(f"/{name}-{n}.xml", conditional(etag, modified, rss(items(name, 2))))
        for n in range(feeds)
    ]
    settings, storage = setup(urls)
    clock = Clock()
    poll(settings, storage, clock)
    clock.now += timedelta(hours=1)
    return urls, settings, storage, clock


def test_unchanged_feeds_are_written_together(feed_server: FeedServer, setup: Any) -> None:
    _, settings, storage, clock = polled_once(feed_server, setup, "same", 12)
    ends: list[str] = []
    storage.db.conn.set_trace_callback(
        lambda sql: ends.append(sql) if sql.startswith(("COMMIT", "RELEASE SAVEPOINT")) else None
    )
    summary = poll_while_worker_busy(settings, storage, clock, waiting=12)
    storage.db.conn.set_trace_callback(None)
    assert summary.outcomes == {"not_modified": 12}
    rows = storage.db.execute("SELECT last_outcome, last_polled FROM feeds").fetchall()
    assert rows == [("not_modified", clock.now.isoformat())] * 12
    assert len(ends) == 1  # the twelve 304s that waited for the worker share one commit


def test_a_failing_state_write_spares_the_other_unchanged_feeds(
    feed_server: FeedServer, setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    urls, settings, storage, clock = polled_once(feed_server, setup, "keep", 6)
    bad = feed_row(storage, urls[3])["id"]
    real = storage.update_feed

    def update_feed(update: Any) -> None:  # a disk error cannot be made on demand here
        if update.feed_id == bad:
            raise sqlite3.OperationalError("disk I/O error")
        real(update)

    monkeypatch.setattr(storage, "update_feed", update_feed)
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        poll_while_worker_busy(settings, storage, clock, waiting=6)
    for url in urls:
        polled = feed_row(storage, url)["last_polled"]
        assert (polled == clock.now.isoformat()) == (url != urls[3]), url


def copies(storage: Storage) -> list[tuple[str, str, str | None]]:
    """(URL, status, URL of the story it copies) of every decision."""
    return storage.db.execute(
        "SELECT s.url, d.status, o.url FROM decisions d JOIN stories s ON s.id = d.story_id "
        "LEFT JOIN stories o ON o.id = d.duplicate_of ORDER BY s.url"
    ).fetchall()


def dated_item(guid: str, link: str, published: datetime) -> bytes:
    """A feed of one report of Kazakhstan's delisting, published at ``published``."""
    return one_item(guid, KAZAKH_TITLE, KAZAKH_TEXT, link).replace(
        f"{link}</link>".encode(),
        f"{link}</link><pubDate>{format_datetime(published)}</pubDate>".encode(),
    )


def parsed_together(pipeline: Pipeline) -> int:
    """The feeds' tasks queued on the held worker (their parsing): written as one batch."""
    return pipeline._worker._work_queue.qsize()


def test_new_entries_of_feeds_that_waited_together_are_judged_as_they_were_published(
    feed_server: FeedServer, setup: Any
) -> None:
    """Feeds that wait for the worker together (the first poll of their backlogs, or a
    catch-up) are judged in the order their entries were published, as replay judges them:
    as the responses came, a paper's copy of a wire story, fetched first, was the original
    and the wire's own report its duplicate (the alert named the paper)."""

    wire = "https://wire.example/kazakhstan-taliban"
    paper = "https://paper.example/world/kazakhstan-taliban"
    urls = [
        feed_server.route(
            "/paper.xml", Reply(200, dated_item("p1", paper, T0 - timedelta(hours=1)))
        ),
        feed_server.route("/wire.xml", Reply(200, dated_item("w1", wire, T0 - timedelta(hours=3)))),
    ]
    settings, storage = setup(urls)
    clock = Clock()
    storage.sync_feeds(settings.feeds, clock())
    # both parsed before either is written (the worker's queue: the two feeds' parsing)
    summary = poll_while_worker_busy(settings, storage, clock, 2, parsed_together)
    assert summary.decisions == {"development": 1, "duplicate": 1}
    assert copies(storage) == [(paper, "duplicate", wire), (wire, "development", None)]


def test_a_changed_feed_waits_for_the_polls_requests_in_flight(
    feed_server: FeedServer, setup: Any
) -> None:
    """The wire answers half a second after the paper: the paper's copy, written at once,
    was the original. Changed feeds wait for the poll's requests in flight, then are
    judged together, oldest entry first."""
    wire = "https://wire.example/kazakhstan-taliban"
    paper = "https://paper.example/world/kazakhstan-taliban"
    urls = [
        feed_server.route(
            "/paper.xml", Reply(200, dated_item("p1", paper, T0 - timedelta(hours=1)))
        ),
        feed_server.route(
            "/wire.xml", Reply(200, dated_item("w1", wire, T0 - timedelta(hours=3)), delay=0.5)
        ),
    ]
    settings, storage = setup(urls)
    summary = poll(settings, storage, Clock())
    assert summary.decisions == {"development": 1, "duplicate": 1}
    assert copies(storage) == [(paper, "duplicate", wire), (wire, "development", None)]


def test_requests_settle_only_when_none_starts_after_the_last_one(
    feed_server: FeedServer, setup: Any
) -> None:
    """Feeds of one host are fetched one after another (its per-host limit): between two,
    no request is in flight for a few turns of the loop. Taken for settled, the changed
    feeds were written then, before the host's next feed was fetched (the dev stream's 23
    feeds on one host, a day of items per poll: 10 items decided apart from replay)."""
    urls = [feed_server.route(f"/h{n}.xml", Reply(200, rss(items(f"h{n}", 1)), delay=0.1))
            for n in range(2)]  # fmt: skip
    settings, storage = setup(urls)
    storage.sync_feeds(settings.feeds, T0)
    pipeline = Pipeline(settings, storage)
    feeds = storage.feeds()

    async def run() -> list[str]:
        pipeline._settled = asyncio.Event()
        events: list[str] = []
        turn = asyncio.Semaphore(1)  # one request at a time, as for one host
        client = Fetcher(pipeline.limits)

        async def fetch(feed: FeedRow) -> None:
            async with turn:
                await pipeline._counted_fetch(client, feed)
                events.append(f"fetched {feed.url.rsplit('/', 1)[1]}")

        async def write() -> None:
            await asyncio.sleep(0.05)  # the first feed is in flight
            await pipeline._fetches_settled()
            events.append("settled")

        try:
            await asyncio.gather(*(fetch(feed) for feed in feeds), write())
        finally:
            await client.aclose()
        return events

    try:
        assert asyncio.run(run()) == ["fetched h0.xml", "fetched h1.xml", "settled"]
    finally:
        pipeline.close()


def test_a_database_locked_elsewhere_stops_a_batch_of_changed_feeds_at_its_first_wait(
    feed_server: FeedServer, setup: Any
) -> None:
    """Another connection holds the write lock (busy timeout cut to 0.3 s here; 30 s in
    use): the batch's transaction waits once and the poll stops. Retried feed by feed, it
    waited once more for each of them (40 feeds: 20 minutes) before the poll could stop."""
    urls = [feed_server.route(f"/l{n}.xml", Reply(200, rss(items(f"l{n}", 2)))) for n in range(6)]
    settings, storage = setup(urls)
    clock = Clock()
    storage.sync_feeds(settings.feeds, clock())
    storage.db.execute("PRAGMA busy_timeout = 300")
    begun: list[str] = []
    storage.db.conn.set_trace_callback(
        lambda sql: begun.append(sql) if sql.startswith("BEGIN") else None
    )
    other = sqlite3.connect(settings.database_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            poll_while_worker_busy(settings, storage, clock, 6, parsed_together)
    finally:
        other.execute("ROLLBACK")
        other.close()
        storage.db.conn.set_trace_callback(None)
    assert begun == ["BEGIN IMMEDIATE"]


def test_a_batch_committed_before_its_term_flush_filled_the_disk_is_not_written_again(
    feed_server: FeedServer,
    setup: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The term counts that came due in a batch are written after its commit, in their
    own transaction, which finds the disk full (SQLite's cap on the file's pages): the
    poll stops on that error, and the feeds keep what was committed. Retried feed by feed,
    the batch met its own stories ("UNIQUE constraint failed"), and every feed was
    recorded as failing with an internal error, with its traceback; the feeds of the
    batch that failed with the error raised were each logged as "never retrieved"."""
    urls = [feed_server.route(f"/t{n}.xml", Reply(200, rss(items(f"t{n}", 2)))) for n in range(4)]
    settings, storage = setup(urls)
    clock = Clock()
    storage.sync_feeds(settings.feeds, clock())
    monkeypatch.setattr(storage, "TERM_FLUSH_STORIES", 8)  # the batch's eight stories
    flush = storage.flush_terms
    pages = count(storage, "PRAGMA max_page_count")
    flushes: list[None] = []

    def flush_terms() -> None:  # the first: more counts than the pages left can take
        if not flushes:
            storage.count_terms([f"word{number:05d}" for number in range(5000)])
            storage.db.execute(f"PRAGMA max_page_count = {count(storage, 'PRAGMA page_count')}")
        flushes.append(None)
        flush()

    monkeypatch.setattr(storage, "flush_terms", flush_terms)
    with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
        poll_while_worker_busy(settings, storage, clock, 4, parsed_together)
    gc.collect()  # (a task whose exception nobody retrieved says so when collected)
    storage.db.execute(f"PRAGMA max_page_count = {pages}")  # room again, for the close
    assert count(storage, "SELECT count(*) FROM stories") == 8
    rows = storage.db.execute("SELECT last_outcome, failures, error_message FROM feeds")
    assert rows.fetchall() == [("ok", 0, None)] * 4
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_a_pipeline_polls_again_from_another_event_loop(
    feed_server: FeedServer, setup: Any
) -> None:
    """A pipeline kept for the next `asyncio.run` (as tests and scripts do): the event
    its changed feeds wait on for the requests in flight belonged to the first loop, and
    every changed feed of the second poll failed with an internal error."""
    paths = ["/e1.xml", "/e2.xml"]
    urls = [feed_server.route(path, Reply(200, rss(items(path[1:3], 2)))) for path in paths]
    settings, storage = setup(urls)
    clock = Clock()
    storage.sync_feeds(settings.feeds, clock())
    pipeline = Pipeline(settings, storage, clock=clock)
    try:
        for poll_number in range(2):
            for path in paths:  # new items each time; the second feed answers late
                body = rss(items(f"{path[1:3]}-{poll_number}", 2))
                feed_server.route(path, Reply(200, body, delay=0.5 if path == paths[1] else 0))
            summary = cycle(pipeline)
            assert summary.outcomes == {"ok": 2}, [report.error for report in summary.reports]
            assert summary.new == 4
    finally:
        pipeline.close()


def test_one_failing_feed_never_stops_the_others(feed_server: FeedServer, setup: Any) -> None:
    good = feed_server.route("/good.xml", Reply(200, rss(items("g", 3))))
    broken = feed_server.route("/broken.xml", Reply(500, b"oops"))
    html = feed_server.route(
        "/page.html",
        Reply(
            200,
            b"<!doctype html><html><body><p>Hi</p></body></html>",
            {"Content-Type": "text/html"},
        ),
    )
    sitemap = feed_server.route(
        "/sitemap.xml",
        Reply(200, b'<?xml version="1.0"?><!-- a comment --><urlset><url/></urlset>'),
    )
    gone = feed_server.route("/gone.xml", Reply(410, b""))
    bozo = feed_server.route(
        "/bozo.xml",
        Reply(200, rss(items("b", 2)).replace(b"modest catch", b"modest &nbsp; catch &bogus;")),
    )
    settings, storage = setup([good, broken, html, sitemap, gone, bozo])
    summary = poll(settings, storage, Clock())
    assert summary.new == 5
    assert feed_row(storage, good)["last_outcome"] == "ok"
    row = feed_row(storage, broken)
    assert (row["error_kind"], row["failures"], row["last_status"]) == ("http", 1, 500)
    row = feed_row(storage, html)
    assert row["error_kind"] == "parse" and "not a feed" in row["error_message"]
    assert row["last_status"] == 200  # the response was a success; its body was no feed
    row = feed_row(storage, sitemap)
    assert "not a feed: an XML document whose root is <urlset>" in row["error_message"]
    row = feed_row(storage, gone)
    assert row["enabled"] == 0 and "410" in row["disabled_reason"]
    assert count(storage, "SELECT count(*) FROM stories WHERE origin = ?", bozo) == 2


def _attributes(count: int, prefix: str = "a") -> bytes:
    return b" ".join(b'%s%d="v"' % (prefix.encode(), n) for n in range(count))


def _declaring(entities: bytes, text: bytes) -> bytes:
    """A feed whose DOCTYPE declares ``entities`` and whose item's description is ``text``."""
    document = rss([("e", "Entities", "TEXT")]).replace(b"TEXT", text)
    return document.replace(b"?>", b"?><!DOCTYPE rss [" + entities + b"]>", 1)


_MALFORMED = (b"<description>d</description>", b"<description>d<br></description>")
_WIDE = rss(items("w", 2)).replace(b"<item>", b"<item " + _attributes(1_001) + b">", 1)
_DENSE = rss(items("d", 2)).replace(b"<item>", b"<x/>" * 250_001 + b"<item>", 1)
HOSTILE = {
    "crowded tag": (_WIDE, "a tag with more than 1,000 attributes or namespace declarations"),
    "namespaces": (
        rss(items("n", 2)).replace(b"<rss ", b"<rss " + _attributes(1_001, "xmlns:n") + b" "),
        "more than 1,000 attributes or namespace declarations (<rss> on line 1)",
    ),
    "crowded tag, malformed": (
        _WIDE.replace(*_MALFORMED),  # read by feedparser
        "a tag with more than 1,000 attributes or namespace declarations (<item> on line 1)",
    ),
    "crowded tag, UTF-16": (  # feedparser's too; a scan of its bytes would see no tag
        _WIDE.decode().replace('encoding="utf-8"', 'encoding="utf-16"').encode("utf-16"),
        "a tag with more than 1,000 attributes or namespace declarations",
    ),
    "tags for feedparser": (
        _DENSE.replace(*_MALFORMED),
        "tags and attributes in a document the fast parser cannot read; feedparser is "
        "given at most 250,000",
    ),
    "too many entries": (
        rss([]).replace(b"</channel>", b"<item/>" * 100_001 + b"</channel>"),
        "refused: 100,001 entries, more than 100,000",
    ),
    "entity bomb": (
        _declaring(
            b'<!ENTITY a "ha"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;">',
            b"&c;&c;",
        ),
        "its entity &b; is made of entities",
    ),
    "entity flood": (
        _declaring(b'<!ENTITY w "' + b"x" * 1_000 + b'">', b"&w;" * 1_100),
        "the entities it declares expand to 1,100,000 bytes of text",
    ),
    "parameter entity": (
        _declaring(b"<!ENTITY % p \"<!ENTITY w 'x'>\"> %p;", b"&w;"),
        "declares parameter entities",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_feed_is_refused_with_its_reason_and_the_others_are_read(
    feed_server: FeedServer, setup: Any, case: str
) -> None:
    """Parsing runs on the one worker thread: a document a parser would spend minutes or
    gigabytes on (quadratic in one tag's attributes, expanding entities, ...) is refused
    before the parser sees it, and its feed records why."""
    body, reason = HOSTILE[case]
    good = feed_server.route("/good.xml", Reply(200, rss(items("g", 3))))
    hostile = feed_server.route("/hostile.xml", Reply(200, body))
    settings, storage = setup([hostile, good])
    summary = poll(settings, storage, Clock())
    row = feed_row(storage, hostile)
    assert row["error_kind"] == "parse" and "refused: " in row["error_message"], row
    assert reason in row["error_message"]
    assert row["last_status"] == 200 and row["failures"] == 1
    assert count(storage, "SELECT count(*) FROM stories WHERE origin = ?", hostile) == 0
    assert feed_row(storage, good)["last_outcome"] == "ok"
    assert count(storage, "SELECT count(*) FROM stories WHERE origin = ?", good) == 3
    assert summary.new == 3


def test_backoff_then_recovery_with_one_health_alert_each_way(
    feed_server: FeedServer, setup: Any
) -> None:
    url = feed_server.route(
        "/flaky.xml", *([Reply(503, b"busy")] * 4), Reply(200, rss(items("f", 2)))
    )
    settings, storage = setup([url])
    clock = Clock()
    dues = []
    for _ in range(4):
        poll(settings, storage, clock)
        row = feed_row(storage, url)
        dues.append(datetime.fromisoformat(row["next_due"]) - clock.now)
        clock.now += timedelta(hours=7)
    assert row["failures"] == 4
    assert dues[0] < dues[1] < dues[2]  # exponential backoff (jitter is ±10%)
    kinds = [r[0] for r in storage.db.execute("SELECT kind FROM alerts ORDER BY created_at")]
    assert kinds == ["feed_failing"]  # one alert, not one per poll
    poll(settings, storage, clock)
    row = feed_row(storage, url)
    assert (row["failures"], row["error_kind"], row["last_outcome"]) == (0, None, "ok")
    kinds = [r[0] for r in storage.db.execute("SELECT kind FROM alerts ORDER BY created_at")]
    assert kinds == ["feed_failing", "feed_recovered"]


def test_feeds_waiting_for_a_slow_host_do_not_hold_up_other_hosts(
    feed_server: FeedServer, setup: Any
) -> None:
    """Twelve feeds on a slow host come first, a feed on another host last. The host lets
    two requests through at a time; the others wait for its turn without holding the poll's
    slots, so the other host's feed is asked for at once, not after most of the slow ones."""
    slow = [
        feed_server.route(f"/slow{n}.xml", Reply(200, rss(items(f"s{n}", 1)), delay=0.3))
        for n in range(12)
    ]
    asked_before: list[int] = []  # slow requests received when the fast one arrived

    def fast_reply(request: Request) -> Reply:
        asked_before.append(len(feed_server.requests))
        return Reply(200, rss(items("f", 1)))

    with FeedServer() as other:
        fast = other.route("/fast.xml", fast_reply)
        settings, storage = setup([*slow, fast], concurrency=4, per_host=2)
        summary = poll(settings, storage, Clock())
    assert dict(summary.outcomes) == {"ok": 13}
    assert asked_before and asked_before[0] <= 3  # (without the turns: 8 or more)


def test_retry_after_moves_next_due(feed_server: FeedServer, setup: Any) -> None:
    url = feed_server.route("/busy.xml", Reply(429, b"", {"Retry-After": "7200"}))
    settings, storage = setup([url], interval="5m")
    clock = Clock()
    poll(settings, storage, clock)
    row = feed_row(storage, url)
    assert row["error_kind"] == "rate_limited"
    assert datetime.fromisoformat(row["next_due"]) >= clock.now + timedelta(seconds=7200)


def test_permanent_redirect_moves_the_feed_temporary_does_not(
    feed_server: FeedServer, setup: Any
) -> None:
    feed_server.route("/new.xml", Reply(200, rss(items("n", 1))))
    feed_server.route("/tmp-target.xml", Reply(200, rss(items("t", 1))))
    moved = feed_server.redirect("/old.xml", "/new.xml", 301)
    temporary = feed_server.redirect("/tmp.xml", "/tmp-target.xml", 302)
    settings, storage = setup([moved, temporary])
    clock = Clock()
    poll(settings, storage, clock)
    assert feed_row(storage, moved)["url"] == feed_server.url("/new.xml")
    assert feed_row(storage, temporary)["url"] == temporary
    clock.now += timedelta(hours=1)
    again = poll(settings, storage, clock)  # the config still names the old URL: no 2nd feed
    assert count(storage, "SELECT count(*) FROM feeds") == 2
    assert feed_server.requests_for("/new.xml")[-1].header("if-none-match") is None
    assert len(feed_server.requests_for("/old.xml")) == 1
    # the entry read through the redirect is known at the new address: not stored again
    assert again.new == 0 and count(storage, "SELECT count(*) FROM stories") == 2
    assert count(storage, "SELECT count(*) FROM stories WHERE origin = ?", moved) == 0


def test_a_feed_moved_onto_another_feed_keeps_its_address(
    feed_server: FeedServer, setup: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A 301 to a URL another feed already polls (two feeds cannot share an address) used
    to break the feed's write with a UNIQUE error and end the whole poll."""
    new = feed_server.route("/new.xml", Reply(200, rss(items("n", 3))))
    old = feed_server.redirect("/old.xml", "/new.xml", 301)
    settings, storage = setup([new, old])
    summary = poll(settings, storage, Clock())
    assert dict(summary.outcomes) == {"ok": 2}
    assert feed_row(storage, old)["url"] == old and feed_row(storage, new)["url"] == new
    assert "moved permanently to" in caplog.text and "keeps its old address" in caplog.text


KAZAKH_TITLE = "Kazakhstan drops Taliban from list of banned organisations"
KAZAKH_TEXT = (
    "Kazakhstan has removed Afghanistan's Taliban movement from its national register of "
    "prohibited organisations, a foreign ministry spokesman told a briefing on Friday. The "
    "spokesman said the decision followed from the fact that the Taliban is not included in "
    "the United Nations Security Council's list of terrorist organisations."
)


def test_a_feed_whose_write_rolls_back_takes_what_the_judge_learnt_with_it(
    feed_server: FeedServer, setup: Any
) -> None:
    """The first feed's transaction opens the judge (writing the topic and its seeds) and
    judges a new development, then fails on its next story and rolls back. The other feed,
    carrying the same report, must find the database and the judge agreeing: the topic is
    there, and its report is the new development (with its alert), not coverage of a story
    that was never stored."""
    poisoned = feed_server.route(
        "/a.xml", Reply(200, rss([("k1", KAZAKH_TITLE, KAZAKH_TEXT), ("p1", "Poison pill", "x")]))
    )
    other = feed_server.route("/b.xml", Reply(200, rss([("k2", KAZAKH_TITLE, KAZAKH_TEXT)])))
    settings, storage = setup([poisoned, other], concurrency=1)
    storage.db.execute(
        "CREATE TRIGGER poison BEFORE INSERT ON stories WHEN NEW.title = 'Poison pill' "
        "BEGIN SELECT RAISE(ABORT, 'a poisoned story'); END"
    )
    for _ in range(2):  # and again: the failing feed keeps failing alone
        summary = poll(settings, storage, Clock())
        assert dict(summary.outcomes) == {"error": 1, "ok": 1}
        row = feed_row(storage, poisoned)
        assert row["error_kind"] == "internal" and "a poisoned story" in row["error_message"]
        assert feed_row(storage, other)["error_kind"] is None
    assert count(storage, "SELECT count(*) FROM topics") == 1
    assert count(storage, "SELECT count(*) FROM stories") == 1
    (status, development) = storage.db.execute(
        "SELECT d.status, d.development FROM decisions d JOIN stories s ON s.id = d.story_id "
        "WHERE s.url = 'https://news.example/k2'"
    ).fetchone()
    assert status == "development"
    first = storage.db.execute(
        "SELECT first_story FROM developments WHERE id = ?", [development]
    ).fetchone()[0]
    assert count(storage, "SELECT count(*) FROM stories WHERE id = ?", first) == 1
    assert count(storage, "SELECT count(*) FROM alerts WHERE kind = 'development'") == 1


KAZAKH_AGAIN_TITLE = "Astana takes the Taliban off its register of banned groups"
KAZAKH_AGAIN_TEXT = (
    "Kazakhstan's foreign ministry said the Taliban no longer appears on the country's "
    "register of banned organisations, because the movement is not on the UN Security "
    "Council's terrorist list. Officials in Astana stressed that removing the Taliban from "
    "the list was not a recognition of the government in Kabul."
)


def test_a_development_another_process_recorded_is_known_to_a_running_pipeline(
    feed_server: FeedServer, setup: Any, tmp_path: Path
) -> None:
    """A daemon's judge is opened once; a `monitor replay` (or `poll`) beside it records a
    development it never saw. Its next cycle must know it: the same report from its own
    feed is coverage of that development, not a second alert for it."""
    url = feed_server.route(
        "/copy.xml",
        *[Reply(200, rss(items("u", 1)))] * 2,
        Reply(200, rss([*items("u", 1), ("k2", KAZAKH_AGAIN_TITLE, KAZAKH_AGAIN_TEXT)])),
    )
    settings, storage = setup([url])
    clock = Clock()
    storage.sync_feeds(settings.feeds, clock())
    daemon = Pipeline(settings, storage, clock=clock)
    try:
        assert cycle(daemon).new == 1  # an unrelated story: the judge is open from now on
        judge = daemon.judge
        assert cycle(daemon).new == 0 and daemon.judge is judge  # its own decisions: kept
        archive = tmp_path / "wire.jsonl"
        item = {"url": "https://wire.example/k1", "title": KAZAKH_TITLE, "summary": KAZAKH_TEXT,
                "published": (T0 - timedelta(hours=2)).isoformat(), "source": "Wire"}  # fmt: skip
        archive.write_text(json.dumps(item) + "\n", encoding="utf-8")
        other = Storage(settings.database_path)  # another process's connection
        beside = Pipeline(settings, other, clock=clock)
        try:
            assert beside.replay(archive).decisions == {"development": 1}
        finally:
            beside.close()
            other.close()
        clock.now += timedelta(hours=1)
        assert cycle(daemon).new == 1
    finally:
        daemon.close()
    (status,) = storage.db.execute(
        "SELECT d.status FROM decisions d JOIN stories s ON s.id = d.story_id "
        "WHERE s.url = 'https://news.example/k2'"
    ).fetchone()
    assert status == "coverage"
    assert count(storage, "SELECT count(*) FROM alerts WHERE kind = 'development'") == 1


def test_a_feeds_new_entries_are_judged_oldest_first(feed_server: FeedServer, setup: Any) -> None:
    """A feed lists its newest item first. Two reports of one event new in the same poll
    (a cold start, a catch-up, a flash and its story within one interval) are judged in
    publication order, as replay judges them: the earlier report opens the development and
    raises the alert, and the later one covers it."""
    url = feed_server.route(
        "/news.xml",
        Reply(
            200,
            rss([("k2", KAZAKH_AGAIN_TITLE, KAZAKH_AGAIN_TEXT), ("k1", KAZAKH_TITLE, KAZAKH_TEXT)]),
        ),
    )
    settings, storage = setup([url])
    assert poll(settings, storage, Clock()).decisions == {"development": 1, "coverage": 1}
    statuses = dict(
        storage.db.execute(
            "SELECT s.guid, d.status FROM decisions d JOIN stories s ON s.id = d.story_id"
        ).fetchall()
    )
    assert statuses == {"k1": "development", "k2": "coverage"}
    (alerted,) = storage.db.execute(
        "SELECT s.guid FROM alerts a JOIN stories s ON s.id = a.story_id "
        "WHERE a.kind = 'development'"
    ).fetchall()
    assert alerted == ("k1",)


def test_an_unexpected_error_in_one_feed_spares_the_others(
    feed_server: FeedServer, setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug that raises while one feed is processed is recorded on that feed (error kind
    "internal", with the exception) and the poll goes on with the others."""
    from monitor import pipeline as pipeline_module

    good = feed_server.route("/good.xml", Reply(200, rss(items("g", 2))))
    bad = feed_server.route("/bad.xml", Reply(200, rss(items("b", 2))))
    real_parse = pipeline_module.parse_feed

    def parse_or_fail(body: bytes, headers: Any, url: str, *args: Any, **kwargs: Any) -> Any:
        if url.endswith("/bad.xml"):
            raise KeyError("a parser bug")
        return real_parse(body, headers, url, *args, **kwargs)

    monkeypatch.setattr(pipeline_module, "parse_feed", parse_or_fail)
    settings, storage = setup([good, bad])
    summary = poll(settings, storage, Clock())
    assert dict(summary.outcomes) == {"ok": 1, "error": 1}
    assert count(storage, "SELECT count(*) FROM stories") == 2
    row = feed_row(storage, bad)
    assert row["error_kind"] == "internal" and "a parser bug" in row["error_message"]
    assert row["failures"] == 1 and row["next_due"] is not None


def test_a_feed_whose_transaction_rolls_back_counts_no_decisions(
    feed_server: FeedServer, setup: Any
) -> None:
    """The poll's summary counted the decisions of a feed whose transaction then rolled
    back (57 decisions for 10 entries, in an audit's failed run): it counts what was
    committed. The failure here is the database's own: a trigger refuses the bad feed's
    second decision, after its first was written."""
    good = feed_server.route("/good.xml", Reply(200, rss(items("g", 2))))
    bad = feed_server.route("/bad.xml", Reply(200, rss(items("b", 2))))
    settings, storage = setup([good, bad])
    storage.sync_feeds(settings.feeds, Clock()())
    storage.db.execute(
        "CREATE TRIGGER refuse_second BEFORE INSERT ON decisions WHEN (SELECT count(*) "
        "FROM decisions d JOIN stories s ON s.id = d.story_id JOIN feeds f ON f.id = s.feed_id "
        "WHERE f.url LIKE '%/bad.xml') >= 1 AND (SELECT f.url FROM stories s JOIN feeds f "
        "ON f.id = s.feed_id WHERE s.id = NEW.story_id) LIKE '%/bad.xml' "
        "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
    )
    summary = poll(settings, storage, Clock())
    assert dict(summary.outcomes) == {"ok": 1, "error": 1}
    assert "refused by the test" in feed_row(storage, bad)["error_message"]
    assert sum(summary.decisions.values()) == count(storage, "SELECT count(*) FROM decisions")
    assert count(storage, "SELECT count(*) FROM decisions") == 2


def test_an_unexpected_error_while_fetching_is_that_feeds_failure(
    feed_server: FeedServer, setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from monitor.fetch import Fetcher

    good = feed_server.route("/good.xml", Reply(200, rss(items("g", 2))))
    bad = feed_server.route("/bad.xml", Reply(200, rss(items("b", 2))))
    real_fetch = Fetcher.fetch

    async def fetch_or_fail(self: Fetcher, url: str, **kwargs: Any) -> Any:
        if url.endswith("/bad.xml"):
            raise ValueError("a fetcher bug")
        return await real_fetch(self, url, **kwargs)

    monkeypatch.setattr(Fetcher, "fetch", fetch_or_fail)
    settings, storage = setup([good, bad])
    summary = poll(settings, storage, Clock())
    assert dict(summary.outcomes) == {"ok": 1, "error": 1}
    row = feed_row(storage, bad)
    assert row["error_kind"] == "internal" and "a fetcher bug" in row["error_message"]


def test_ten_thousand_entries(feed_server: FeedServer, setup: Any) -> None:
    url = feed_server.route("/big.xml", Reply(200, rss(items("big", 10_000)), gzip=True))
    settings, storage = setup([url], max_bytes=50_000_000)
    summary = poll(settings, storage, Clock())
    assert summary.new == 10_000
    assert count(storage, "SELECT count(*) FROM stories") == 10_000
    assert count(storage, "SELECT count(*) FROM decisions") == 10_000


def _kill_mid_poll(config: Path, db: Path) -> None:
    env = {**os.environ, "MONITOR_DB": str(db)}
    process = subprocess.Popen(
        [sys.executable, "-m", "monitor", "--config", str(config), "poll"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with sqlite3.connect(db, timeout=1) as conn:
                    if conn.execute("SELECT count(*) FROM stories").fetchone()[0] > 0:
                        break
            except sqlite3.Error:
                pass
            time.sleep(0.02)
        assert process.poll() is None, "the poll finished before it could be killed"
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)


def test_killed_poll_then_new_poll_stores_every_entry_once(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    urls = [
        feed_server.route(f"/f{n}.xml", Reply(200, rss(items(f"k{n}", 40)), delay=0.3 * (n % 4)))
        for n in range(12)
    ]
    # one request at a time: two fetched feeds fill the slots and are written together,
    # so the poll commits two feeds at a time, and the kill falls between two of them
    config = write_config(tmp_path, urls, per_host=1, concurrency=1)
    db = tmp_path / "killed.db"
    _kill_mid_poll(config, db)
    with sqlite3.connect(db) as conn:
        partial = conn.execute("SELECT count(*) FROM stories").fetchone()[0]
        orphans = conn.execute(
            "SELECT count(*) FROM stories s WHERE NOT EXISTS "
            "(SELECT 1 FROM decisions d WHERE d.story_id = s.id)"
        ).fetchone()[0]
    assert 0 < partial < 12 * 40 and partial % 40 == 0  # whole feeds only
    assert orphans == 0
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "--config", str(config), "poll"],
        env={**os.environ, "MONITOR_DB": str(db)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(db) as conn:
        stories = conn.execute(
            "SELECT count(*), count(DISTINCT origin || entry_key) FROM stories"
        ).fetchone()
        decisions = conn.execute("SELECT count(*) FROM decisions").fetchone()[0]
    assert stories == (12 * 40, 12 * 40)
    assert decisions == 12 * 40


ARTICLE = (
    "<html><head><title>Moscow moves</title></head><body><nav>Home | World | Sport</nav>"
    "<article><h1>Russia to take the Taliban off its terrorist list</h1>"
    + "".join(
        f"<p>Paragraph {n}: Russia's Supreme Court was asked to suspend the ban on the Taliban, "
        "which has been on the country's list of terrorist organisations since 2003, the "
        "Prosecutor General's office said in a statement on Tuesday.</p>"
        for n in range(6)
    )
    + "</article><footer>Copyright Example News</footer></body></html>"
)


def test_full_text_is_fetched_once_for_short_likely_related_items(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    page = feed_server.route("/article/1", Reply(200, ARTICLE, {"Content-Type": "text/html"}))
    other = feed_server.route("/article/2", Reply(200, ARTICLE, {"Content-Type": "text/html"}))
    stamp = format_datetime(T0)
    body = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Search</title>'
        f"<item><guid>1</guid><title>Russia moves to take Taliban off terrorist list</title>"
        f"<link>{page}</link><pubDate>{stamp}</pubDate>"
        "<description>Moscow acts.</description></item>"
        f"<item><guid>2</guid><title>Harbour report: modest catch</title>"
        f"<link>{other}</link><pubDate>{stamp}</pubDate>"
        "<description>Boats return.</description></item>"
        "</channel></rss>"
    ).encode()
    url = feed_server.route("/search.xml", Reply(200, body))
    config = write_config(tmp_path, [url], timeout="5s")
    config.write_text(
        config.read_text().replace(f'url = "{url}"', f'url = "{url}"\nfull_text = true')
    )
    settings = load_settings(config)
    storage = Storage(settings.database_path)
    try:
        clock = Clock()
        poll(settings, storage, clock)
        clock.now += timedelta(hours=1)
        poll(settings, storage, clock)
        rows = dict(storage.db.execute("SELECT url, full_text_status FROM stories").fetchall())
        text = storage.db.execute("SELECT full_text FROM stories WHERE url = ?", [page]).fetchone()[
            0
        ]
    finally:
        storage.close()
    assert rows == {page: "ok", other: None}
    assert "Prosecutor General" in text and "Copyright" not in text and "Home |" not in text
    assert len(feed_server.requests_for("/article/1")) == 1
    assert feed_server.requests_for("/article/2") == []


def test_responses_wait_for_the_worker_instead_of_piling_up(
    feed_server: FeedServer, setup: Any
) -> None:
    """While the worker is busy, no more than `concurrency` + min(`concurrency`, 8) feeds
    are fetched: the bodies of a large poll are never all held in memory at once. Then
    every feed lands."""
    urls = [feed_server.route(f"/f{n}.xml", Reply(200, rss(items(f"f{n}", 2)))) for n in range(30)]
    settings, storage = setup(urls, concurrency=2, per_host=2)
    storage.sync_feeds(settings.feeds, T0)
    pipeline = Pipeline(settings, storage, clock=Clock())
    gate = threading.Event()
    pipeline._worker.submit(gate.wait, 30)  # the worker is busy judging something else

    async def run() -> tuple[int, PollSummary]:
        task = asyncio.create_task(pipeline.poll(only_due=False))
        for _ in range(250):  # bounded: up to 5 s for the four fetches that may start
            await asyncio.sleep(0.02)
            if len(feed_server.requests) >= 4:
                break
        await asyncio.sleep(0.3)  # time for any fetch beyond the slots to show up
        fetched_while_busy = len(feed_server.requests)
        gate.set()
        return fetched_while_busy, await task

    fetched_while_busy, summary = asyncio.run(run())
    pipeline.close()
    assert 1 <= fetched_while_busy <= 4
    assert summary.outcomes == {"ok": 30} and summary.new == 60
    assert len(feed_server.requests) == 30


@pytest.mark.parametrize(
    "stream", [ROOT / "tests/data/eval2", ROOT.parent / "shared/eval/dev"], ids=["eval2", "dev"]
)
def test_a_judge_opened_from_the_database_knows_what_the_judge_kept_open_knew(
    tmp_path: Path, stream: Path
) -> None:
    """`monitor poll` from cron opens a judge from the database at every run, a daemon at
    every start. It must know the topic as the judge that wrote the database did: it put
    duplicates' leads in the topic's vocabulary and took every related story for an
    example (the judge kept open does neither), read developments' terms cut to 120
    while the kept judge's grew, and would take every unrelated story below `REJECT` for a
    negative example, those a related story was close to included. An item-by-item replay
    of the dev stream raised two seed alerts (d047, d048) and took a development (d098)
    for coverage."""
    if not (stream / "stream.jsonl").exists():
        pytest.skip(f"{stream}: labelled stream not present")
    from monitor.detect import Judge

    seeds = stream / "seeds" if (stream / "seeds").is_dir() else ROOT / "seeds"
    settings = settings_from_dict(
        {"database": {"path": "kept.db"}, "topics": [{"name": "t", "seeds": [str(seeds)]}]},
        tmp_path / "monitor.toml",
    )
    storage = Storage(settings.database_path)
    pipeline = Pipeline(settings, storage, clock=lambda: T0)
    try:
        pipeline.replay(stream / "stream.jsonl")
        kept = pipeline.judge.topics["t"]
        opened = Judge.open(storage, settings.topics, T0).topics["t"]
        assert kept.vocabulary.n > 10 and kept.vocabulary == opened.vocabulary
        assert list(kept.profile.related.examples) == list(opened.profile.related.examples)
        opened.profile.unrelated.index()  # (its examples are read when it is first queried)
        assert list(kept.profile.unrelated.examples) == list(opened.profile.unrelated.examples)
        assert {d.id: (d.bag, d.first_seen, d.last_seen) for d in kept.developments} == {
            d.id: (d.bag, d.first_seen, d.last_seen) for d in opened.developments
        }
    finally:
        pipeline.close()
        storage.close()
