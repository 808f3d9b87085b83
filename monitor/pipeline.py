"""The pipeline: from due feeds (or an archive) to stored decisions, in one readable order.

Polling, per feed:
    1. pick      the feeds that are due (or every enabled feed for `monitor poll`)
    2. fetch     conditional GET, concurrently, within per-host and global limits
    3. parse     bytes + headers → entries (a failure is a value recorded on the feed)
    4. identify  seen before? skip; same key with new content? update in place, no new story
    5. enrich    optionally fetch the linked article of a likely-related short item
    6. judge     score, dedupe and decide for every topic (`detect.Judge`)
    7. write     one transaction per feed: stories, decisions, developments, alerts, feed state

Replay enters at step 4 with archived items, in publication order, each item's
publication time used as "now", and shares every later step with polling.

Only fetching runs concurrently; every write happens here, on one connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from . import article
from .config import Settings
from .errors import FeedError, FetchError, ParseError, UserError
from .fetch import Fetcher, FetchLimits, host_of
from .models import Entry, FeedOutcome, Fetched
from .parse import entry_from_item, parse_feed
from .schedule import next_due
from .storage import FeedRow, FeedUpdate, Known, Storage, database_failure, is_busy
from .text import counted

if TYPE_CHECKING:  # imported when first needed: a poll of 304s never judges anything
    from .detect import Judge

log = logging.getLogger("monitor.pipeline")
MAX_JOIN_WAIT = 1.0  # seconds a write of waiting feeds waits for one the worker made ready
ORDER_WAIT = 5.0  # seconds changed feeds wait for the poll's requests in flight
SETTLE = 0.02  # seconds without a request in flight after which the poll's requests settle
READY_FOR_WORKER = 8  # fetched feeds that may wait for the worker (at most `concurrency`)
# `database.retention`: stories cleared a transaction of PRUNE_BATCH at a time, for at most
# PRUNE_SECONDS a cycle (the rest the next cycle: turning it on for a database of years
# must not hold up polling), then not looked for again for PRUNE_EVERY (or a tenth of the
# retention, if that is shorter)
PRUNE_BATCH = 2000
PRUNE_SECONDS = 1.0
PRUNE_EVERY = timedelta(hours=1)

_T = TypeVar("_T")
_J = TypeVar("_J")  # a job waiting in a `_Batch`

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class FeedReport:
    """What one poll did to one feed: the line logged and the figures summed."""

    feed: str
    outcome: str
    status: int | None = None
    entries: int = 0
    new: int = 0
    edited: int = 0
    error: str | None = None
    duration_ms: float = 0.0
    warning: str | None = None  # a feed read in spite of a flaw (the parser's words)


@dataclass(slots=True)
class PollSummary:
    feeds: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    entries: int = 0
    new: int = 0
    edited: int = 0
    decisions: Counter[str] = field(default_factory=Counter)
    alerts: int = 0
    reports: list[FeedReport] = field(default_factory=list)

    def add(self, report: FeedReport) -> None:
        self.feeds += 1
        self.outcomes[report.outcome] += 1
        self.entries += report.entries
        self.new += report.new
        self.edited += report.edited
        self.reports.append(report)

    def text(self) -> str:
        outcomes = ", ".join(f"{count} {name}" for name, count in sorted(self.outcomes.items()))
        decisions = ", ".join(f"{count} {name}" for name, count in sorted(self.decisions.items()))
        return (
            f"{counted(self.feeds, 'feed')} ({outcomes or 'none'}); "
            f"{counted(self.entries, 'entry', 'entries')}, {self.new} new, {self.edited} edited; "
            f"decisions: {decisions or 'none'}; {counted(self.alerts, 'alert')} raised"
        )


class Pipeline:
    """Runs polls and replays against one Storage, one Judge and (for polls) one Fetcher."""

    def __init__(self, settings: Settings, storage: Storage, *, clock: Clock = utcnow) -> None:
        self.settings = settings
        self.storage = storage
        self.clock = clock
        storage.start_checkpointer()  # the WAL is copied back on another thread meanwhile
        self._judge: Judge | None = None
        # Decisions written beside this pipeline (a `monitor poll` or `replay` next to the
        # daemon) are news to its judge: see `_judge_current`.
        self._decided_upto = 0  # the decisions' largest rowid when last checked
        self._decided_own = 0  # decisions this pipeline has written since
        self.dedupe_window = timedelta(seconds=settings.database.dedupe_window)
        self.retention = timedelta(seconds=settings.database.retention)
        self._prune_every = min(PRUNE_EVERY, self.retention / 10)
        self._prune_next: datetime | None = None  # nothing to clear before this
        polling = settings.polling
        self.limits = FetchLimits(
            timeout=polling.timeout,
            max_bytes=polling.max_bytes,
            max_redirects=polling.max_redirects,
            per_host=polling.per_host,
            global_limit=polling.concurrency,
        )
        self.observers: list[Callable[[FeedReport], None]] = []
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="monitor-pipeline")
        # Feeds waiting for the worker are written together when it gets to them: 304s in
        # one transaction for all; changed feeds in one too, their new entries judged in the
        # order they were published across the feeds (see `_write_changed`).
        self._unchanged: _Batch[Callable[[], FeedReport]] = _Batch(
            self.on_worker, self._write_unchanged, self._write_one_unchanged, self._commits
        )
        self._changed: _Batch[_Changed] = _Batch(
            self.on_worker,
            self._write_changed,
            lambda job: self._write_changed([job])[0],
            self._commits,
            before=self._fetches_settled,
        )
        self._fetching = 0  # requests of this poll in flight
        self._settled = asyncio.Event()  # set while none is (each poll makes its own)

    def _commits(self) -> int:
        return self.storage.commits

    @property
    def judge(self) -> Judge:
        """Built on first use: a poll where every feed answers 304 never pays for it."""
        if self._judge is None:
            from .detect import Judge

            self._decided_upto = self._last_decision()
            self._decided_own = 0
            self._judge = Judge.open(self.storage, self.settings.topics, self.clock())
        return self._judge

    def _last_decision(self) -> int:
        row = self.storage.db.execute("SELECT max(rowid) FROM decisions").fetchone()
        return int(row[0] or 0)

    def _judge_current(self) -> None:
        """Drop the judge when another process has judged stories since it last looked: it
        holds the topics' developments and examples as they were when it opened, and would
        take a development recorded beside it for a new one (a second alert). It is opened
        again, from the database, when next needed. Called before each poll or replay."""
        if self._judge is None:
            return
        count, last = self.storage.db.execute(
            "SELECT count(*), max(rowid) FROM decisions WHERE rowid > ?", [self._decided_upto]
        ).fetchone()
        if count > self._decided_own:
            self._judge = None
            return
        self._decided_upto = max(self._decided_upto, int(last or 0))
        self._decided_own = 0

    @contextmanager
    def _judging(self) -> Iterator[None]:
        """A transaction the judge takes part in. If it rolls back, what the judge learnt
        in it (the topics it wrote when opened, developments, examples, counts) is dropped
        with the judge, which is opened again from the database when next needed."""
        try:
            with self.storage.atomic():
                yield
        except BaseException:
            self._judge = None
            raise

    # -- polling ---------------------------------------------------------------------------

    async def poll(self, *, only_due: bool, fetcher: Fetcher | None = None) -> PollSummary:
        """Poll the due feeds (or all enabled ones), process each as its response arrives."""
        now = self.clock()
        feeds = self.storage.due_feeds(now) if only_due else self.storage.feeds(enabled_only=True)
        summary = PollSummary()
        if not feeds:
            return summary
        self._judge_current()
        if self._fetching == 0:  # (an event is bound to the loop it first waited in)
            self._settled = asyncio.Event()
        own = fetcher is None
        client = fetcher or Fetcher(self.limits)
        # A feed holds a slot from its request until its rows are written: responses never
        # pile up in memory faster than the worker can judge them (a cold poll of 1,000
        # feeds would otherwise hold every body at once). Every request slot, plus a short
        # queue of fetched feeds for the worker (a few are enough to keep it busy; each
        # waiting body costs memory: 64 slots instead of 40 added ~8 MB at concurrency 32).
        limit = self.limits.global_limit
        slots = asyncio.Semaphore(limit + min(limit, READY_FOR_WORKER))
        # A feed waits for its host's turn before it takes a slot: feeds queued for a slow
        # host (the per-host limit lets `per_host` through at a time) never hold the slots
        # that feeds on other hosts need. The turn ends with the fetch, not the write.
        hosts: dict[str, asyncio.Semaphore] = {}

        async def one(feed: FeedRow) -> FeedReport:
            key = host_of(feed.url)
            turn = hosts.get(key) or hosts.setdefault(
                key, asyncio.Semaphore(max(1, self.limits.per_host))
            )
            async with AsyncExitStack() as waiting:
                await waiting.enter_async_context(turn)
                async with slots:
                    started = time.perf_counter()
                    try:
                        outcome = await self._counted_fetch(client, feed)
                        await waiting.aclose()  # the host's turn is over
                        return await self._process(client, feed, outcome, started, summary)
                    except Exception as error:  # a bug, or a library error nobody translated
                        await waiting.aclose()
                        if database_failure(error):
                            # the database's failure (full, read-only, locked), not the
                            # feed's: the poll stops, and feeds not written are due again
                            raise
                        return await self._unexpected(feed, error, started, summary)

        tasks = [asyncio.create_task(one(feed)) for feed in feeds]
        try:
            for finished in asyncio.as_completed(tasks):
                report = await finished
                summary.add(report)
                self._log(report)
                for observer in self.observers:
                    observer(report)
            await self.on_worker(self.storage.write_buffered)
            await self.on_worker(self._keep_window, self.clock())
            await self.on_worker(self._keep_retention, self.clock())
        finally:
            unfinished = [task for task in tasks if not task.done()]
            for task in unfinished:  # stopped or failed: a feed's transaction is whole or none
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)
            for task in tasks:  # the feeds of a batch that failed with the one raised: their
                if not task.cancelled():  # errors are that one (asyncio would log each)
                    task.exception()
            if own:
                await client.aclose()
        return summary

    async def _counted_fetch(self, client: Fetcher, feed: FeedRow) -> Fetched | FetchError:
        """`_fetch`, counted among the requests in flight (see `_fetches_settled`)."""
        self._fetching += 1
        self._settled.clear()
        try:
            return await self._fetch(client, feed)
        finally:
            self._fetching -= 1
            if self._fetching == 0:
                # Settled once none has been in flight for a moment: the feed next in line
                # for this host's turn starts a few turns of the loop after this one ends
                # (23 feeds on one host, two at a time, settled between every two).
                settled = self._settled
                asyncio.get_running_loop().call_later(SETTLE, self._settle_if_idle, settled)

    def _settle_if_idle(self, settled: asyncio.Event) -> None:
        if self._fetching == 0:
            settled.set()

    async def _fetches_settled(self) -> None:
        """Wait, before changed feeds are written, until no request of the poll is in flight
        (`ORDER_WAIT` at most): the feeds that answer meanwhile are written with them, their
        new entries judged in the order they were published (`_write_changed`). Feeds still
        waiting for a slot are not in flight: those fetched hold the slots until written."""
        with suppress(TimeoutError):
            await asyncio.wait_for(self._settled.wait(), ORDER_WAIT)

    async def _fetch(self, client: Fetcher, feed: FeedRow) -> Fetched | FetchError:
        try:
            return await client.fetch(feed.url, etag=feed.etag, last_modified=feed.last_modified)
        except FetchError as error:
            return error

    async def _unexpected(
        self, feed: FeedRow, error: Exception, started: float, summary: PollSummary
    ) -> FeedReport:
        """An exception nobody foresaw while fetching or processing one feed: logged with its
        traceback and recorded on that feed like any failure (kind "internal", with backoff),
        so that the poll goes on with the others."""
        log.error("feed %s: unexpected error", feed.label, exc_info=error)
        failure = FeedError(f"{feed.url}: unexpected error: {error!r}"[:500], kind="internal")
        now = self.clock()
        return await self.on_worker(self._record_failure, feed, failure, now, started, summary)

    async def _process(
        self,
        client: Fetcher,
        feed: FeedRow,
        outcome: Fetched | FetchError,
        started: float,
        summary: PollSummary,
    ) -> FeedReport:
        """One feed's response, from bytes to written rows.

        Parsing, judging and writing run on the pipeline's one worker thread, so the event
        loop keeps serving the other downloads meanwhile (their deadlines keep running).
        """
        now = self.clock()
        if isinstance(outcome, FetchError):
            return await self.on_worker(self._record_failure, feed, outcome, now, started, summary)
        if outcome.not_modified:
            if feed.health_alerted:  # recovering: its alert is written on its own
                return await self.on_worker(
                    self._not_modified, feed, outcome, now, started, summary
                )
            return await self._not_modified_batched(feed, outcome, now, started)
        prepared = await self.on_worker(self._prepare_changed, feed, outcome, now, started, summary)
        if isinstance(prepared, FeedReport):
            return prepared
        articles = {}
        enrich = _fetches_articles(feed, prepared)
        if enrich:
            articles = await self._enrich(client, prepared.fresh)
        return await self._changed.write(
            _Changed(feed, outcome, prepared, articles, now, started, summary), expected=not enrich
        )

    def _prepare_changed(
        self, feed: FeedRow, outcome: Fetched, now: datetime, started: float, summary: PollSummary
    ) -> _Prepared | FeedReport:
        """`_prepare` on the worker; a feed to be written at once is announced to the batch
        of changed feeds, whose next write waits for it (see `_Batch.expect`)."""
        prepared = self._prepare(feed, outcome, now, started, summary)
        if not isinstance(prepared, FeedReport) and not _fetches_articles(feed, prepared):
            self._changed.expect()
        return prepared

    async def on_worker(self, function: Callable[..., _T], *args: Any) -> _T:
        """Run ``function(*args)`` on the thread that owns the pipeline's connection."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, partial(function, *args))

    def close(self) -> None:
        """Wait for the worker to finish its transaction; then the storage may close."""
        self._worker.shutdown(wait=True)

    def _not_modified(
        self, feed: FeedRow, outcome: Fetched, now: datetime, started: float, summary: PollSummary
    ) -> FeedReport:
        with self.storage.atomic():
            return self._not_modified_state(feed, outcome, now, started, summary)

    async def _not_modified_batched(
        self, feed: FeedRow, outcome: Fetched, now: datetime, started: float
    ) -> FeedReport:
        """A 304's new state, written with the other 304s that arrived while the worker was
        busy: one commit for many feeds (each feed's rows are still whole or absent)."""
        # no alert to count: a feed with a pending recovery alert goes through `_not_modified`
        return await self._unchanged.write(
            partial(self._not_modified_state, feed, outcome, now, started, PollSummary())
        )

    def _write_unchanged(self, jobs: list[Callable[[], FeedReport]]) -> list[FeedReport]:
        with self.storage.atomic():
            return [job() for job in jobs]

    def _write_one_unchanged(self, job: Callable[[], FeedReport]) -> FeedReport:
        with self.storage.atomic():
            return job()

    def _not_modified_state(
        self, feed: FeedRow, outcome: Fetched, now: datetime, started: float, summary: PollSummary
    ) -> FeedReport:
        """A 304's report and feed row, inside the caller's transaction."""
        report = FeedReport(feed.label, FeedOutcome.NOT_MODIFIED, status=304)
        self._write_feed_state(feed, outcome, report, now, started, summary)
        return report

    def _prepare(
        self, feed: FeedRow, outcome: Fetched, now: datetime, started: float, summary: PollSummary
    ) -> _Prepared | FeedReport:
        try:
            parsed = parse_feed(
                outcome.body, outcome.headers, outcome.url, now, source=feed.name,
                known=partial(self.storage.known_raw, feed.url),
            )  # fmt: skip
        except ParseError as error:  # (the response itself was a success: its status stays)
            return self._record_failure(feed, error, now, started, summary, outcome.status)
        entries = _unique(parsed.entries)
        known = self.storage.known_entries(feed.url, [entry.key for entry in entries])
        fresh = [entry for entry in entries if entry.key not in known]
        if fresh:  # the same link and text under a new guid is the same entry
            known.update(self.storage.known_by_link(feed.url, fresh))
            fresh = [entry for entry in fresh if entry.key not in known]
        # (judged oldest first with the rest of their batch: `_write_changed`)
        return _Prepared(parsed.title, entries, known, fresh, parsed.unchanged, parsed.warning)

    def _write_changed(self, jobs: list[_Changed]) -> list[FeedReport]:
        """Write changed feeds in one transaction (runs on the worker): each feed's edits
        and state, and their new entries judged in the order they were published across
        the feeds, as replay judges them. A feed lists its newest item first, and feeds
        answer in any order: judged as they came, a follow-up (or a copy) opened the
        development, and raised the alert, that the first report then only covered."""
        reports: list[FeedReport] = []
        written = [PollSummary() for _ in jobs]  # decisions and alerts, counted once committed
        fresh: list[tuple[Entry, int]] = []
        with self._judging():
            for number, job in enumerate(jobs):
                prepared = job.prepared
                reports.append(
                    FeedReport(
                        job.feed.label,
                        FeedOutcome.OK,
                        status=job.outcome.status,
                        entries=len(prepared.entries) + prepared.unchanged,
                        warning=prepared.warning,
                    )
                )
                for entry in prepared.entries:
                    seen = prepared.known.get(entry.key)
                    if seen is None:
                        continue
                    if seen.content_hash != entry.content_hash:
                        self.storage.update_story(seen.story_id, entry, job.now)
                        reports[number].edited += 1
                    elif seen.raw_hash != entry.raw_hash:  # same text, new markup or first look
                        self.storage.set_raw_hash(seen.story_id, entry.raw_hash)
                fresh.extend((entry, number) for entry in prepared.fresh)
            # (stable: a feed's own order among items of one time; undated ones, dated now,
            # come last)
            fresh.sort(key=lambda pair: pair[0].published)
            for entry, number in fresh:
                job = jobs[number]
                self._judge_new(
                    entry, job.feed.url, job.feed.id, job.now, written[number], job.feed.topics,
                    job.articles.get(entry.key),
                )  # fmt: skip
                reports[number].new += 1
            for number, job in enumerate(jobs):
                self._write_feed_state(
                    job.feed, job.outcome, reports[number], job.now, job.started,
                    written[number], title=job.prepared.title,
                )  # fmt: skip
            if fresh:  # dated in the transaction that signed them
                self.storage.mark_lsh(self.clock(), self.dedupe_window)
        for job, counts in zip(jobs, written, strict=True):
            job.summary.decisions.update(counts.decisions)
            job.summary.alerts += counts.alerts
        return reports

    async def _enrich(
        self, client: Fetcher, entries: list[Entry]
    ) -> dict[str, tuple[str | None, str]]:
        """Fetch the linked article of short, likely-related new entries.

        Returns entry key → (article text or None, status). Only new entries come here, so
        an article is fetched at most once per story, with the feeds' own politeness limits.
        """
        # The Judge (built on first use, reading the database) and its neighbour pools
        # belong to the worker thread: the first look runs there, between two feeds' writes.
        wanted = await self.on_worker(self._wanted_full_text, entries)
        timeout = self.settings.polling.full_text_timeout
        results = await asyncio.gather(
            *(self._article(client, entry.url, timeout) for entry in wanted)
        )
        return {entry.key: result for entry, result in zip(wanted, results, strict=True)}

    def _wanted_full_text(self, entries: list[Entry]) -> list[Entry]:
        """The new entries whose article is worth fetching (runs on the worker)."""
        return [e for e in entries if article.needs_full_text(e) and self.judge.first_gate(e)]

    async def _article(self, client: Fetcher, url: str, timeout: float) -> tuple[str | None, str]:
        try:
            fetched = await client.fetch(url, timeout=timeout)
        except FetchError as error:
            log.info("article %s not fetched: %s", url, error)
            return None, f"error: {error.kind}: {error}"[:300]
        # Extraction is CPU work: off the event loop, so other downloads' deadlines do not
        # count it, and off the worker, which judges meanwhile.
        text = await asyncio.to_thread(
            article.extract_text, fetched.body, fetched.headers, fetched.url
        )
        return text, "ok" if text else "no text found"

    def _record_failure(
        self,
        feed: FeedRow,
        error: FeedError,
        now: datetime,
        started: float,
        summary: PollSummary,
        status: int | None = None,
    ) -> FeedReport:
        gone = isinstance(error, FetchError) and error.kind == "gone"
        status = error.status if isinstance(error, FetchError) else status
        retry_after = error.retry_after if isinstance(error, FetchError) else None
        failures = feed.failures + 1
        since = feed.error_since or now
        polling = self.settings.polling
        due = next_due(
            now,
            interval=feed.interval_s or polling.interval,
            failures=failures,
            retry_after=retry_after,
            key=feed.url,
            jitter=polling.jitter,
            max_interval=polling.max_interval,
            max_backoff=polling.max_backoff,
        )
        report = FeedReport(
            feed.label,
            FeedOutcome.GONE if gone else FeedOutcome.ERROR,
            status=status,
            error=f"{error.kind}: {error}",
            duration_ms=(time.perf_counter() - started) * 1000,
        )
        alerts = self.settings.alerts
        failing_long = failures >= alerts.feed_failing_polls or now - since >= timedelta(
            seconds=alerts.feed_failing_after
        )
        raise_alert = failing_long and not feed.health_alerted
        with self.storage.atomic():
            if raise_alert and self.storage.set_health_alerted(feed.id, True):
                self._health_alert("feed_failing", feed, report.error, since, now, summary)
            self.storage.update_feed(
                FeedUpdate(
                    feed_id=feed.id,
                    polled_at=now,
                    outcome=report.outcome,
                    next_due=due,
                    status=status,
                    duration_ms=report.duration_ms,
                    failures=failures,
                    error_kind=error.kind,
                    error_message=str(error),
                    error_since=since,
                    disable_reason="the server said the feed is gone (HTTP 410)" if gone else None,
                    health_alerted=True if raise_alert else None,
                )
            )
        return report

    def _write_feed_state(
        self,
        feed: FeedRow,
        fetched: Fetched,
        report: FeedReport,
        now: datetime,
        started: float,
        summary: PollSummary,
        *,
        title: str | None = None,
    ) -> None:
        polling = self.settings.polling
        due = next_due(
            now,
            interval=feed.interval_s or polling.interval,
            max_age=fetched.max_age,
            key=feed.url,
            jitter=polling.jitter,
            max_interval=polling.max_interval,
            max_backoff=polling.max_backoff,
        )
        recovered = feed.health_alerted and self.storage.set_health_alerted(feed.id, False)
        if recovered:
            self._health_alert(
                "feed_recovered", feed, feed.error_message, feed.error_since, now, summary
            )
        report.duration_ms = (time.perf_counter() - started) * 1000
        moved_to = fetched.permanent_url
        if moved_to is not None:
            other = self.storage.feed_with_url(moved_to)
            if other is not None and other != feed.id:  # two feeds cannot share an address
                log.warning(
                    "feed %s moved permanently to %s, which feed %d already polls; "
                    "it keeps its old address",
                    feed.label, moved_to, other,
                )  # fmt: skip
                moved_to = None
        self.storage.update_feed(
            FeedUpdate(
                feed_id=feed.id,
                polled_at=now,
                outcome=report.outcome,
                next_due=due,
                status=fetched.status,
                duration_ms=report.duration_ms,
                url=moved_to,
                title=title,
                etag=fetched.etag,
                last_modified=fetched.last_modified,
                validators=not fetched.not_modified,
                new_entries=report.new,
                health_alerted=False if recovered else None,
            )
        )

    def _health_alert(
        self,
        kind: str,
        feed: FeedRow,
        error: str | None,
        since: datetime | None,
        now: datetime,
        summary: PollSummary,
    ) -> None:
        """One "feed failing" or "feed recovered" alert, in the feed's transaction."""
        self.storage.enqueue_alert(
            kind=kind,
            feed_id=feed.id,
            now=now,
            payload={
                "type": kind.replace("_", "."),
                "topic": None,
                "feed": {
                    "url": feed.url,
                    "name": feed.label,
                    "error": error,
                    "since": since.isoformat() if since else None,
                    "failures": feed.failures + (kind == "feed_failing"),
                },
            },
        )
        summary.alerts += 1

    # -- judging (shared by polling and replay) --------------------------------------------

    def _judge_new(
        self,
        entry: Entry,
        origin: str,
        feed_id: int | None,
        now: datetime,
        summary: PollSummary,
        topics: Sequence[str] = (),
        full_text: tuple[str | None, str] | None = None,
    ) -> None:
        sid = self.storage.insert_story(entry, origin=origin, feed_id=feed_id, now=now)
        if full_text is not None:
            text, status = full_text
            self.storage.set_full_text(sid, text, status)
            if text:
                entry = replace(entry, content=text)  # judged on the article itself
        intents = self.judge.process(sid, entry, now, topics=topics or None)
        self._decided_own += len(intents)
        for intent in intents:
            summary.decisions[intent.status] += 1
            summary.alerts += int(intent.alert)
            log.debug(
                "%s %s: %s (score %.2f) %s",
                intent.topic,
                sid,
                intent.status,
                intent.score,
                "; ".join(reason.text for reason in intent.reasons[:3]),
            )

    def _keep_window(self, now: datetime) -> None:
        """Remove what has left `database.dedupe_window` from the near-duplicate index
        (`keep_lsh_window`); a database error here is logged, and the next cycle tries
        again."""
        window = self.dedupe_window
        try:
            if not self.storage.lsh_window_due(now, window):
                return
            with self.storage.atomic():
                removed = self.storage.keep_lsh_window(now, window)
        except sqlite3.Error as error:
            log.warning("near-duplicate index window not kept: %s", error)
            return
        if removed:
            log.info(
                "near-duplicate index: %d keys removed, of stories signed before %s",
                removed,
                (now - window).isoformat(timespec="minutes"),
            )

    def _keep_retention(self, now: datetime) -> None:
        """Clear the text of the unrelated stories first seen longer ago than
        `database.retention` (`StoryStore.prune_bodies`); a database error is logged, and
        the next cycle tries again."""
        if self.retention <= timedelta(0):
            return
        waiting = self._prune_next - now if self._prune_next is not None else None
        if waiting is not None and timedelta(0) < waiting <= self._prune_every:
            return  # (further off than that, the clock was set back: look now)
        seen_before = now - self.retention
        cleared = 0
        started = time.perf_counter()
        try:
            if not self.storage.prunable(seen_before):  # most cycles: nothing new is due
                self._prune_next = now + self._prune_every
                return
            while True:
                with self.storage.foreign_keys_off(), self.storage.atomic():
                    batch = self.storage.prune_bodies(seen_before, now, limit=PRUNE_BATCH)
                cleared += batch
                if batch < PRUNE_BATCH:
                    self._prune_next = now + self._prune_every
                    break
                if time.perf_counter() - started >= PRUNE_SECONDS:
                    break  # more are waiting: the next cycle goes on
        except sqlite3.Error as error:
            log.warning("retention not applied: %s", error)
        if cleared:
            log.info(
                "retention: cleared the text of %d unrelated stories first seen before %s",
                cleared,
                seen_before.isoformat(timespec="minutes"),
            )

    # -- replay ------------------------------------------------------------------------------

    def replay(
        self, path: Path, *, progress: Callable[[int, int], None] | None = None
    ) -> PollSummary:
        """Process archived items (DESIGN.md §3.4) in publication order; return a summary."""
        items = read_archive(path)
        self._judge_current()
        origin = f"replay:{path.name}"
        summary = PollSummary()
        report = FeedReport(path.name, FeedOutcome.OK, entries=len(items))
        for done, (entry, published) in enumerate(items, 1):
            now = max(published, entry.published)
            self._keep_window(now)  # as a daemon would have, between its polls
            if not self.storage.known_entries(origin, [entry.key]):
                with self._judging():
                    self._judge_new(entry, origin, None, now, summary)
                    self.storage.mark_lsh(now, self.dedupe_window)  # at the item's time
                report.new += 1
            if progress:
                progress(done, len(items))
        self.storage.write_buffered()
        summary.add(report)
        return summary

    def _log(self, report: FeedReport) -> None:
        if report.error:
            log.warning(
                "feed %s: %s%s, %s (%.0f ms)",
                report.feed,
                report.outcome,
                f" {report.status}" if report.status else "",
                report.error,
                report.duration_ms,
                extra={
                    "feed": report.feed,
                    "outcome": report.outcome,
                    "status": report.status,
                    "error": report.error,
                    "duration_ms": round(report.duration_ms, 1),
                },
            )
        else:
            # A feed that brought nothing new (a 304, most polls) is a debug line: with
            # hundreds of feeds an INFO line each would bury the ones that changed.
            log.log(
                logging.INFO if report.new or report.edited else logging.DEBUG,
                "feed %s: %s%s, %d entries, %d new, %d edited (%.0f ms)%s",
                report.feed,
                report.outcome,
                f" {report.status}" if report.status else "",
                report.entries,
                report.new,
                report.edited,
                report.duration_ms,
                f"; read in spite of: {report.warning}" if report.warning else "",
                extra={
                    "feed": report.feed,
                    "outcome": report.outcome,
                    "status": report.status,
                    "entries": report.entries,
                    "new": report.new,
                    "edited": report.edited,
                    "duration_ms": round(report.duration_ms, 1),
                    **({"warning": report.warning} if report.warning else {}),
                },
            )


def _fetches_articles(feed: FeedRow, prepared: _Prepared) -> bool:
    """Whether a changed feed's new entries have their articles fetched before it is
    written (the feed asks for full text): it joins a batch later than it was parsed."""
    return feed.full_text and bool(prepared.fresh)


@dataclass(slots=True)
class _Changed:
    """A changed feed, parsed, waiting for the worker to write it."""

    feed: FeedRow
    outcome: Fetched
    prepared: _Prepared
    articles: dict[str, tuple[str | None, str]]
    now: datetime
    started: float
    summary: PollSummary


class _Batch(Generic[_J]):
    """Feeds' writes waiting for the pipeline's worker. Those that arrive while it is busy
    are written together when it gets to them (`together`, one transaction), or one by
    one (`alone`) when that fails, so that one bad feed never stops the others; each
    feed's task gets its own report or error."""

    def __init__(
        self,
        on_worker: Callable[..., Awaitable[Any]],
        together: Callable[[list[_J]], list[FeedReport]],
        alone: Callable[[_J], FeedReport],
        commits: Callable[[], int],
        before: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._on_worker = on_worker
        self._commits = commits  # the storage's commits so far (`StorageBase.commits`)
        self._together = together
        self._alone = alone
        self._before = before  # awaited before the worker is asked to write
        self._waiting: list[tuple[_J, asyncio.Future[FeedReport]]] = []
        self._lock = threading.Condition()
        self._expected = 0  # feeds the worker has made ready that have not joined yet
        self._flush: asyncio.Task[None] | None = None
        self._flushes: set[asyncio.Task[None]] = set()  # held until done (asyncio: weak refs)

    def __len__(self) -> int:
        """Feeds waiting for the worker now."""
        return len(self._waiting)

    def expect(self) -> None:
        """A job the worker has just made ready will join (called on the worker). It joins
        from the event loop, when the loop gets to it; a write that the worker starts
        meanwhile waits for it (`MAX_JOIN_WAIT` at most), so the jobs made ready one after
        another on the worker are written together."""
        with self._lock:
            self._expected += 1

    async def write(self, job: _J, *, expected: bool = False) -> FeedReport:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[FeedReport] = loop.create_future()
        with self._lock:
            self._waiting.append((job, done))
            if expected:
                self._expected -= 1
                self._lock.notify_all()
            if self._flush is None:
                self._flush = flush = loop.create_task(self._write_waiting())
                self._flushes.add(flush)
                flush.add_done_callback(self._flushes.discard)
        return await done

    async def _write_waiting(self) -> None:
        try:
            if self._before is not None:
                await self._before()
            results = await self._on_worker(self._write_all)
        except BaseException as error:  # cancelled or no worker: no feed may wait forever
            for _, done in self._take():
                if not done.done():
                    done.set_exception(
                        error
                        if isinstance(error, Exception)
                        else RuntimeError("the write of waiting feeds was cancelled")
                    )
            raise
        for done, result in results:
            if done.done():
                continue  # its feed's task was cancelled meanwhile
            if isinstance(result, BaseException):
                done.set_exception(result)
            else:
                done.set_result(result)

    def _write_all(self) -> list[tuple[asyncio.Future[FeedReport], FeedReport | Exception]]:
        """Write every waiting feed (runs on the worker)."""
        batch = self._take(wait=True)
        if len(batch) > 1:
            commits = self._commits()
            try:
                reports = self._together([job for job, _ in batch])
                return [(done, report) for (_, done), report in zip(batch, reports, strict=True)]
            except Exception as error:  # retried feed by feed below; each error goes to its feed
                if is_busy(error) or self._commits() != commits:
                    # Not the feeds' failure: a lock held elsewhere, which each feed alone
                    # would wait for once more (30 s each), or a write after the commit
                    # (the term counts' flush), the feeds being in: written again, their
                    # stories would be refused as copies of themselves.
                    return [(done, error) for _, done in batch]
                log.debug("writing %d feeds together failed; one by one", len(batch))
        results: list[tuple[asyncio.Future[FeedReport], FeedReport | Exception]] = []
        busy: Exception | None = None  # the rest would wait for the lock as long: not tried
        for job, done in batch:
            if busy is not None:
                results.append((done, busy))
                continue
            try:
                results.append((done, self._alone(job)))
            except Exception as error:  # handed to that feed's task
                results.append((done, error))
                if is_busy(error):
                    busy = error
        return results

    def _take(self, *, wait: bool = False) -> list[tuple[_J, asyncio.Future[FeedReport]]]:
        """The waiting feeds, now owned by the caller; later ones schedule the next write.
        ``wait`` (on the worker only: they join from the event loop): for those expected."""
        with self._lock:
            if wait:  # (a job made ready whose task was cancelled never joins: bounded)
                self._lock.wait_for(lambda: self._expected <= 0, timeout=MAX_JOIN_WAIT)
            self._expected = 0
            batch, self._waiting = self._waiting, []
            self._flush = None
        return batch


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A parsed feed split into entries seen before and new ones."""

    title: str | None
    entries: list[Entry]  # cleaned: new, edited, or not yet recognised by their raw hash
    known: dict[str, Known]
    fresh: list[Entry]
    unchanged: int  # entries recognised by their raw hash and skipped uncleaned
    warning: str | None = None


def _unique(entries: Iterable[Entry]) -> list[Entry]:
    """Entries with distinct keys (a feed that repeats a guid keeps its first entry)."""
    seen: set[str] = set()
    unique = []
    for entry in entries:
        if entry.key not in seen:
            seen.add(entry.key)
            unique.append(entry)
    return unique


# An item's time is the replay's "now", which durations of up to a hundred years (the
# config's longest) are added to and taken from: far from both ends of `datetime`.
_EARLIEST_ITEM = datetime(1000, 1, 1, tzinfo=UTC)
_LATEST_ITEM = datetime(9000, 1, 1, tzinfo=UTC)
_TEXT_FIELDS = ("url", "title", "published")  # (required)
_OPTIONAL_TEXT_FIELDS = ("summary", "content", "source", "language")  # (may be null)


def read_archive(path: Path) -> list[tuple[Entry, datetime]]:
    """Read a replay file: entries with their publication time, in publication order.

    JSON Lines: one item a line, lines end at "\\n" only (and a "\\r" before it): a line
    separator, NEL or form feed inside a string belongs to the item. An item that is not
    one (bad JSON, a missing or non-string field, a date out of range) is a `UserError`
    naming the file and the line.
    """
    try:
        text = path.read_bytes().decode("utf-8")  # (no newline translation)
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot read the replay file: {error}") from None
    items: list[tuple[Entry, datetime]] = []
    for number, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            items.append(_archived_item(line))
        except (ValueError, TypeError) as error:
            raise UserError(f"{path}:{number}: not a replay item: {error}") from None
    items.sort(key=lambda pair: pair[1])
    return items


def _archived_item(line: str) -> tuple[Entry, datetime]:
    """One line of a replay file as an entry and its publication time (ValueError if not)."""
    try:
        raw: Any = json.loads(line)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    for key in _TEXT_FIELDS:
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise ValueError(f'"{key}" is missing or not a string')
    for key in _OPTIONAL_TEXT_FIELDS:
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise ValueError(f'"{key}" is not a string')
    stamp = raw["published"].strip()
    published = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    try:
        published = published.astimezone(UTC) if published.tzinfo else published.replace(tzinfo=UTC)
        in_range = _EARLIEST_ITEM <= published < _LATEST_ITEM
    except OverflowError:  # (year 1 east of UTC, or 9999 west of it)
        in_range = False
    if not in_range:
        raise ValueError(f'"published": "{stamp}" is not between the years 1000 and 8999')
    return entry_from_item(raw, published), published
