"""`monitor run`: the long-running service.

APScheduler (3.x) is only the clock. The schedule itself is data: every feed row carries
`next_due`, so the `poll_due` job (every `[polling].tick`, 30 s) polls the feeds that are
due, and a restart loses nothing. Jobs, each with ``max_instances=1, coalesce=True``:

- ``poll_due``        coroutine on the event loop: fetch due feeds, judge, write
- ``deliver_pending`` coroutine waiting on a worker thread with its own database
                      connection (SMTP blocks)
- ``digest:<topic>``  cron trigger in the topic's time zone: enqueue the digest

SIGTERM/SIGINT stop the scheduler; a poll in progress is cancelled only between feeds
(every write is a synchronous transaction with no await inside), so the current
transaction always finishes; a delivery run stops between two deliveries (the one being
sent finishes and is recorded, the rest wait for the next start). A second daemon on the
same database is refused.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from . import metrics
from .channels import build_channels
from .config import Settings
from .deliver import deliver_pending
from .digest import digest_trigger, enqueue_digest, missed_digest
from .errors import StorageError
from .fetch import Fetcher
from .pipeline import Pipeline, PollSummary, utcnow
from .service import Service, start_service
from .storage import Storage, database_errors
from .storage.alerts import claim_owner
from .text import counted

log = logging.getLogger("monitor.daemon")


@dataclass(slots=True)
class DaemonState:
    """What /healthz and `status` read about the running service."""

    started: datetime = field(default_factory=utcnow)
    running: bool = False
    last_poll_finished: datetime | None = None
    last_poll_error: str | None = None  # why the last poll stopped, until one finishes
    last_poll_summary: PollSummary | None = None
    last_delivery: datetime | None = None
    polls: int = 0


class Daemon:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state = DaemonState()
        self.storage = Storage(settings.database_path)
        self.storage.acquire_run_lock()
        released = self.storage.release_daemon_claims()
        if released:
            log.info("%d deliveries claimed by a daemon that died are due again", released)
        self.storage.sync_feeds(settings.feeds, utcnow())
        self.pipeline = Pipeline(settings, self.storage)
        self.pipeline.observers.append(metrics.observe_feed)
        self.tick = settings.polling.tick  # seconds between looks at `next_due`
        self.channels = build_channels(settings.alerts, source=settings.source)
        self._stop = asyncio.Event()
        self._fetcher: Fetcher | None = None
        self._delivery_storage: Storage | None = None
        self._deliver_lock = threading.Lock()
        self._stopping = threading.Event()  # the delivery thread's view of `_stop`
        self._claims = claim_owner(daemon=True)
        self.service: Service | None = None

    @contextmanager
    def _database_failing(self, job: str) -> Iterator[None]:
        """What SQLite says happened to the database (full, read-only, an I/O error, locked
        for too long) ends ``job`` with one error line naming the database, instead of
        APScheduler's traceback at every tick; the next tick tries again, and what was not
        written is still due then. Any other error is a bug and keeps its traceback."""
        try:
            with database_errors(self.settings.database_path):
                yield
        except StorageError as error:
            log.error("%s stopped: %s (tried again at the next tick)", job, error)
            if job == "poll":
                self.state.last_poll_error = str(error)

    async def poll_due(self) -> None:
        with self._database_failing("poll"):
            await self._poll_due()

    async def _poll_due(self) -> None:
        assert self._fetcher is not None
        started = time.monotonic()
        try:
            summary = await self.pipeline.poll(only_due=True, fetcher=self._fetcher)
        except asyncio.CancelledError:
            if not self._stop.is_set():
                raise
            # `run` cancels the poll to stop: each feed is written in one transaction, so
            # the feeds not yet written are simply due again at the next start. Ended
            # here, the job does not reach APScheduler's log as an error.
            log.info("poll interrupted by the stop after %.1f s", time.monotonic() - started)
            return
        metrics.observe_poll(summary, time.monotonic() - started)
        self.state.polls += 1
        self.state.last_poll_finished = utcnow()
        self.state.last_poll_error = None
        if summary.feeds:
            self.state.last_poll_summary = summary
            log.info("poll: %s", summary.text())

    async def deliver(self) -> None:
        try:
            with self._database_failing("delivery"):
                await asyncio.to_thread(self._deliver_locked)
        except asyncio.CancelledError:
            if not self._stop.is_set():
                raise
            # `run` stops the scheduler, which cancels the jobs it waits for: the thread goes
            # on to the end of its attempt, which `run` waits for. Ended here, the job does
            # not reach APScheduler's log as an error.

    def _deliver_locked(self) -> None:
        if not self._deliver_lock.acquire(blocking=False):
            return  # shutting down (the lock is held for good)
        try:
            self._deliver()
        finally:
            self._deliver_lock.release()

    def _deliver(self) -> None:
        if self._delivery_storage is None:
            self._delivery_storage = Storage(self.settings.database_path)
        deliver_pending(
            self._delivery_storage,
            self.channels,
            self.settings,
            utcnow,
            owner=self._claims,
            stop=self._stopping,
        )
        self.state.last_delivery = utcnow()  # (the run logged its own summary)

    async def digest(self, topic_name: str) -> None:
        with self._database_failing(f"digest for {topic_name}"):
            await self._digest(topic_name)

    async def _digest(self, topic_name: str) -> None:
        topic = self.settings.topic(topic_name)
        # The poll's connection belongs to the pipeline's worker: queue the digest there,
        # between two feeds' transactions, not inside one of them from another thread.
        alert_id = await self.pipeline.on_worker(enqueue_digest, self.storage, topic, utcnow())
        if alert_id:
            log.info("digest for %s queued as %s", topic_name, alert_id)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)
        self._fetcher = Fetcher(self.pipeline.limits)
        scheduler = AsyncIOScheduler(event_loop=loop, timezone=UTC)
        common = {"max_instances": 1, "coalesce": True, "misfire_grace_time": None}
        scheduler.add_job(
            self.poll_due,
            "interval",
            seconds=self.tick,
            id="poll_due",
            next_run_time=datetime.now(UTC),
            **common,
        )
        scheduler.add_job(
            self.deliver,
            "interval",
            seconds=self.settings.alerts.deliver_every,
            id="deliver_pending",
            next_run_time=datetime.now(UTC),
            **common,
        )
        for topic in self.settings.topics:
            scheduler.add_job(
                self.digest,
                digest_trigger(topic),
                args=[topic.name],
                id=f"digest:{topic.name}",
                **common,
            )
            missed = missed_digest(self.storage, topic, utcnow())
            if missed is not None:  # due while the daemon was stopped: sent now, once
                log.info("digest for %s was due at %s: queued now", topic.name, missed)
                scheduler.add_job(
                    self.digest,
                    args=[topic.name],
                    id=f"digest-missed:{topic.name}",
                    next_run_time=datetime.now(UTC),
                    **common,
                )
        if self.settings.service.listen:
            self.service = start_service(self.settings.service.listen, self)
            log.info("health and metrics at %s/healthz and /metrics", self.service.url)
        scheduler.start()
        self.state.running = True
        log.info(
            "monitor running: %s, %s, %s, database %s",
            counted(len(self.storage.feeds(enabled_only=True)), "feed"),
            counted(len(self.settings.topics), "topic"),
            counted(len(self.channels), "alert channel"),
            self.settings.database_path,
        )
        started = time.monotonic()
        await self._stop.wait()
        self._stopping.set()
        log.info("stopping after %.0f s", time.monotonic() - started)
        self.state.running = False
        scheduler.shutdown(wait=False)
        current = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in current:
            task.cancel()
        await asyncio.gather(*current, return_exceptions=True)
        # let a delivery running in its thread finish its attempt and record it (every step
        # has a timeout); it starts no other
        await asyncio.to_thread(self._deliver_lock.acquire)
        await self._fetcher.aclose()
        if self.service is not None:
            self.service.stop()
        return 0 if self.close() else 1

    def close(self) -> bool:
        """Close the pipeline and the connections; False when the database failed to take
        what they held back (logged in one line: exit status 1, no traceback)."""
        self.pipeline.close()
        closed = True
        closers: list[Callable[[], None]] = [self.storage.close]
        if self._delivery_storage is not None:
            closers.insert(0, self._delivery_storage.close)
        for closer in closers:
            try:
                with database_errors(self.settings.database_path):
                    closer()
            except StorageError as error:
                log.error("%s (at the stop)", error)
                closed = False
        return closed


def run_daemon(settings: Settings) -> int:
    # Until the event loop takes the signals over, SIGTERM and SIGINT interrupt start-up
    # (nothing is in progress then) and the process still exits 0.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    daemon: Daemon | None = None
    try:
        with database_errors(settings.database_path):  # at start-up (the jobs report theirs)
            daemon = Daemon(settings)
            return asyncio.run(daemon.run())
    except KeyboardInterrupt:
        log.info("stopped during start-up")
        return 0
    finally:
        if daemon is not None:
            daemon.storage.release_run_lock()
