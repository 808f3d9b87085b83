"""The command line (DESIGN.md §3.1): thin click commands, each calling one function.

A `MonitorError` a user can cause (bad config, unreadable seed, unknown ID, a second daemon)
becomes one line on stderr and exit status 2; no traceback. Other monitor errors exit 1,
among them what SQLite says happened to the database (full, read-only, locked): one line
naming it, and the first error, not a failure of the close that follows it.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from . import __version__
from .config import Settings, config_path, load_settings
from .errors import AlreadyRunning, ConfigError, MonitorError, SeedError, UserError
from .log import setup_logging
from .text import counted

# httpx imports its own command-line client (click, rich, pygments: ~6 MB of a poll's
# memory) whenever click is installed, and `monitor` never runs it: marked absent before
# anything imports httpx, it makes httpx define a stub `main` instead.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

if TYPE_CHECKING:  # imported by the commands that open the database (~0.15 s: sqlite-utils)
    from .storage import Storage

F = TypeVar("F", bound=Callable[..., Any])

EXPORT_FIELDS = (
    "id",
    "topic",
    "url",
    "canonical_url",
    "title",
    "source",
    "published",
    "seen_at",
    "status",
    "score",
    "development",
    "duplicate_of",
    "alerted",
)


class MonitorGroup(click.Group):
    """Turns user errors into one clear line and exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ConfigError, SeedError, UserError, AlreadyRunning) as error:
            click.echo(f"monitor: {error}", err=True)
            ctx.exit(2)
        except MonitorError as error:
            click.echo(f"monitor: {error}", err=True)
            ctx.exit(1)


class App:
    """Lazily loaded settings and storage for one command."""

    def __init__(self, config: str | None, log_level: str | None, log_format: str | None) -> None:
        self.config_arg = config
        self.log_level = log_level
        self.log_format = log_format
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_arg)
            setup_logging(
                self.log_level or self._settings.logging.level,
                self.log_format or self._settings.logging.format,
            )
        return self._settings

    @contextmanager
    def storage(self, *, existing: bool = False) -> Iterator[Storage]:
        """The database, opened (and created or migrated) for one command. ``existing``:
        a command that only reads or corrects what is stored refuses to create one (a
        mistyped MONITOR_DB would otherwise show an empty monitor, and leave a file)."""
        from .storage import Storage, database_errors

        path = self.settings.database_path
        if existing and str(path) != ":memory:" and not path.exists():
            raise UserError(
                f"{path}: no database here yet (`monitor run` or `monitor poll` creates it; "
                "MONITOR_DB or database.path names it)"
            )
        with database_errors(path):
            storage = Storage(path)
            try:
                yield storage
            except BaseException as error:
                storage.close_after(error)
                raise
            storage.close()


pass_app = click.make_pass_decorator(App)


def entry() -> None:
    """The `monitor` program: `main`, then an immediate exit.

    When a command returns, its database is closed and its output written; what is left is
    the interpreter taking down every module and object one by one (the judge's caches,
    NumPy arrays, tens of thousands of words): ~0.07 s of a 2-second `monitor poll` run from
    cron. So the output is flushed and logging shut down here, and `os._exit` skips that
    teardown. Calling `main` directly (tests, `click.testing`) keeps the normal exit.
    """
    try:
        main(prog_name="monitor")  # standalone mode: always ends in SystemExit
        code: object = 0
    except SystemExit as stop:
        code = stop.code
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that went away, or a closed stream
            code = code or 1
    logging.shutdown()
    os._exit(int(code))


def now() -> datetime:
    return datetime.now(UTC)


def _json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2, default=str))


@click.group(cls=MonitorGroup)
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False),
    default=None,
    help="Config file (default: config/monitor.toml, or $MONITOR_CONFIG).",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
    default=None,
    help="Overrides [logging].level.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="Overrides [logging].format; json is one object a line.",
)
@click.version_option(__version__, prog_name="monitor")
@click.pass_context
def main(
    ctx: click.Context, config: str | None, log_level: str | None, log_format: str | None
) -> None:
    """Follow a news story across many feeds; alert once per new development."""
    ctx.obj = App(config, log_level, log_format)


@main.command()
@pass_app
def run(app: App) -> None:
    """Run the daemon: poll due feeds, deliver alerts, send digests, until SIGTERM/SIGINT."""
    from .daemon import run_daemon

    sys.exit(run_daemon(app.settings))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_app
def poll(app: App, as_json: bool) -> None:
    """Poll every enabled feed once now, process, deliver pending alerts, print a summary."""
    import asyncio

    from .channels import build_channels
    from .deliver import deliver_pending
    from .pipeline import Pipeline
    from .progress import poll_progress

    settings = app.settings
    # Before polling, as `run` does: a channel that cannot be built (an unset secret) is a
    # config error to report before the work, not after it in place of the summary.
    channels = build_channels(settings.alerts, source=settings.source)
    with app.storage() as storage:
        storage.sync_feeds(settings.feeds, now())
        pipeline = Pipeline(settings, storage)
        total = len(storage.feeds(enabled_only=True))
        with poll_progress(total) as advance:
            pipeline.observers.append(lambda report: advance())
            try:
                summary = asyncio.run(pipeline.poll(only_due=False))
            finally:
                pipeline.close()
        delivery = deliver_pending(storage, channels, settings, now)
    if as_json:
        _json(
            {
                "feeds": summary.feeds,
                "outcomes": dict(summary.outcomes),
                "entries": summary.entries,
                "new": summary.new,
                "edited": summary.edited,
                "decisions": dict(summary.decisions),
                "alerts": summary.alerts,
                "delivery": delivery.text(),
            }
        )
    else:
        click.echo(summary.text())
        click.echo(delivery.text())


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--deliver", is_flag=True, help="Also deliver the alerts raised.")
@pass_app
def replay(app: App, file: Path, deliver: bool) -> None:
    """Process archived items (JSON Lines) through the pipeline, in publication order."""
    from .channels import build_channels
    from .pipeline import Pipeline
    from .progress import replay_progress

    settings = app.settings
    channels = build_channels(settings.alerts, source=settings.source) if deliver else []
    with app.storage() as storage:
        pipeline = Pipeline(settings, storage)
        with replay_progress() as progress:
            summary = pipeline.replay(file, progress=progress)
        click.echo(f"replayed {file}: {summary.text()}")
        if deliver:
            from .deliver import deliver_pending

            delivery = deliver_pending(storage, channels, settings, now)
            click.echo(delivery.text())


@main.command()
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True
)
@click.option("--topic", default=None, help="Only this topic.")
@click.option("--since", default=None, help="Only stories published since this date (ISO 8601).")
@pass_app
def export(app: App, fmt: str, topic: str | None, since: str | None) -> None:
    """Print the stored decisions, one per story and topic (DESIGN.md §3.3)."""
    since_at = _parse_date(since) if since else None
    if topic:
        app.settings.topic(topic)
    with app.storage(existing=True) as storage:
        rows = storage.export_rows(topic=topic, since=since_at)
        if fmt == "jsonl":
            for row in rows:
                click.echo(json.dumps({key: row[key] for key in EXPORT_FIELDS}, ensure_ascii=False))
        else:
            writer = csv.DictWriter(sys.stdout, fieldnames=EXPORT_FIELDS, extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow(row)


def _parse_date(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"--since: {value!r} is not an ISO 8601 date") from None
    try:
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except OverflowError:  # (year 1 east of UTC, or 9999 west of it)
        raise UserError(f"--since: {value!r} is out of range in UTC") from None


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@pass_app
def status(app: App, as_json: bool) -> None:
    """Database size, stories and their cleared text, feeds (last poll, errors, next due),
    decisions per status, pending and failed alerts."""
    from .status import collect_status, render_status

    with app.storage(existing=True) as storage:
        data = collect_status(storage, app.settings, now())
    if as_json:
        _json(data)
    else:
        render_status(data)


@main.command()
@click.argument("id_or_url")
@pass_app
def explain(app: App, id_or_url: str) -> None:
    """Why a story got its decision: scores, matched terms, nearest seed or story, duplicates."""
    from .detect import explain as explain_story

    with app.storage(existing=True) as storage:
        click.echo(explain_story(storage, id_or_url))


@main.command()
@click.argument("story_id")
@click.argument("verdict", type=click.Choice(["relevant", "irrelevant", "not-new"]))
@click.option("--topic", default=None, help="The topic it is about (needed if several judged it).")
@pass_app
def feedback(app: App, story_id: str, verdict: str, topic: str | None) -> None:
    """Tell the monitor it was wrong (or right); later decisions learn from it."""
    from .detect import record_feedback

    with app.storage(existing=True) as storage:
        click.echo(record_feedback(storage, story_id, verdict, now(), topic))


@main.command()
@pass_app
def check(app: App) -> None:
    """Validate the config and the seeds; exit 2 with a clear message on any problem."""
    settings = app.settings
    from .channels import build_channels
    from .corpus import load_seeds

    if not settings.topics:
        raise ConfigError(f"{settings.source}: topics: no topic configured")
    for topic in settings.topics:
        seeds = load_seeds(topic.seeds)
        click.echo(f"topic {topic.name}: {counted(len(seeds), 'seed document')}")
    channels = build_channels(settings.alerts, source=settings.source)
    click.echo(
        f"{counted(len(settings.feeds), 'feed')}, {counted(len(channels), 'alert channel')} "
        f"({', '.join(c.channel for c in channels) or 'none'})"
    )
    click.echo(f"database: {settings.database_path}")
    click.echo(f"{settings.source}: OK")


# -- feeds --------------------------------------------------------------------------------


@main.group()
def feeds() -> None:
    """List, add, remove, enable or disable feeds; import or export them as OPML."""


@feeds.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the feeds as JSON.")
@pass_app
def feeds_list(app: App, as_json: bool) -> None:
    """The feeds in the database, with their state."""
    from .status import feed_rows, render_feeds

    with app.storage(existing=True) as storage:
        storage.sync_feeds(app.settings.feeds, now())
        rows = feed_rows(storage)
    if as_json:
        _json(rows)
    else:
        render_feeds(rows)


@feeds.command("add")
@click.argument("url")
@click.option("--name", default=None, help="Display name.")
@click.option("--interval", default=None, help='Poll interval, like "30m".')
@pass_app
def feeds_add(app: App, url: str, name: str | None, interval: str | None) -> None:
    """Add a feed to the database (feeds in the config are added at start)."""
    from .config import _check_http_url, _positive, parse_duration

    try:
        _check_http_url(url)
    except ValueError as error:
        raise UserError(str(error)) from None
    try:  # as the config's feeds[].interval: 0 is not "the default"
        seconds = _positive(parse_duration(interval)) if interval is not None else None
    except ValueError as error:
        raise UserError(f"--interval: {error}") from None
    with app.storage() as storage:
        feed_id = storage.add_feed(url, name, seconds, now())
    click.echo(f"added feed {feed_id}: {url}")


@feeds.command("import")
@click.argument("path", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--interval", default=None, help='Poll interval of the feeds added, like "30m".')
@click.option("--dry-run", is_flag=True, help="Show what would be added; add nothing.")
@pass_app
def feeds_import(app: App, path: str, interval: str | None, dry_run: bool) -> None:
    """Add the feeds of an OPML file (a feed reader's export; - reads standard input)."""
    from .config import _check_http_url, _positive, parse_duration
    from .opml import read_subscriptions

    try:
        seconds = _positive(parse_duration(interval)) if interval is not None else None
    except ValueError as error:
        raise UserError(f"--interval: {error}") from None
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as error:
        raise UserError(f"{path}: cannot be read: {error.strerror or error}") from None
    wanted: list[tuple[str, str | None]] = []
    skipped = 0
    for feed in read_subscriptions(data, "standard input" if path == "-" else path):
        try:
            _check_http_url(feed.url)
        except ValueError as error:
            click.echo(f"skipped: {error}")
            skipped += 1
            continue
        wanted.append((feed.url, feed.title))
    if dry_run:  # nothing written, not even a new database
        known = {feed.url for feed in app.settings.feeds}
        if app.settings.database_path.exists():
            with app.storage(existing=True) as storage:
                known |= storage.known_feed_urls()
        outcome: dict[str, int | None] = {url: None if url in known else 0 for url, _ in wanted}
    else:
        with app.storage() as storage:
            storage.sync_feeds(app.settings.feeds, now())
            outcome = storage.add_feeds(wanted, seconds, now())
    for url, name in wanted:
        feed_id = outcome[url]
        shown = f"{url} ({name})" if name else url
        if feed_id is None:
            click.echo(f"already present: {shown}")
        else:
            click.echo(f"would add: {shown}" if dry_run else f"added feed {feed_id}: {shown}")
    added = sum(feed_id is not None for feed_id in outcome.values())
    verb = "would add" if dry_run else "added"
    click.echo(
        f"{verb} {added} of {counted(len(wanted) + skipped, 'feed')}; "
        f"{len(outcome) - added} already present, {skipped} skipped"
    )


@feeds.command("export")
@pass_app
def feeds_export(app: App) -> None:
    """Print the feeds in the database as OPML, for a feed reader (or `feeds import`)."""
    from .opml import write_opml

    with app.storage(existing=True) as storage:
        storage.sync_feeds(app.settings.feeds, now())
        feeds = [(feed.url, feed.label) for feed in storage.feeds()]
    click.echo(write_opml(feeds, now()), nl=False)


@feeds.command("remove")
@click.argument("id_or_url")
@pass_app
def feeds_remove(app: App, id_or_url: str) -> None:
    """Remove a feed (its stories stay). One the config lists is left: remove it there."""
    listed = {feed.url for feed in app.settings.feeds}
    with app.storage(existing=True) as storage:
        feed = storage.find_feed(id_or_url)
        if feed.url in listed or storage.config_url_of(feed) in listed:
            # every command syncs the config's feeds, so the next one would add it again
            raise UserError(
                f"feed {feed.id} ({feed.url}) is listed in {app.settings.source}: remove it "
                f"there, or `monitor feeds disable {feed.id}` to stop polling it"
            )
        storage.remove_feed(feed)
    click.echo(f"removed feed {feed.id}: {feed.url}")


@feeds.command("enable")
@click.argument("id_or_url")
@pass_app
def feeds_enable(app: App, id_or_url: str) -> None:
    """Enable a feed; it is polled at the next tick."""
    with app.storage(existing=True) as storage:
        feed = storage.find_feed(id_or_url)
        storage.set_enabled(feed, True)
    click.echo(f"enabled feed {feed.id}: {feed.url}")


@feeds.command("disable")
@click.argument("id_or_url")
@pass_app
def feeds_disable(app: App, id_or_url: str) -> None:
    """Disable a feed; it is no longer polled."""
    with app.storage(existing=True) as storage:
        feed = storage.find_feed(id_or_url)
        storage.set_enabled(feed, False)
    click.echo(f"disabled feed {feed.id}: {feed.url}")


# -- alerts -------------------------------------------------------------------------------


@main.group()
def alerts() -> None:
    """List, show, retry and test alerts."""


@alerts.command("list")
@click.option(
    "--status",
    "state",
    type=click.Choice(["pending", "delivered", "failed", "held"]),
    default=None,
    help="Only alerts in this state (failed, pending: or with a channel in it).",
)
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the alerts as JSON.")
@pass_app
def alerts_list(app: App, state: str | None, limit: int, as_json: bool) -> None:
    """Alerts, newest first, with their delivery state per channel."""
    from .status import render_alerts

    with app.storage(existing=True) as storage:
        rows = storage.alerts_list(status=state, limit=limit)
    if as_json:
        _json(rows)
    else:
        render_alerts(rows)


@alerts.command("show")
@click.argument("alert_id")
@click.option("--json", "as_json", is_flag=True, help="Print the alert as JSON.")
@pass_app
def alerts_show(app: App, alert_id: str, as_json: bool) -> None:
    """One alert: what it says, its deliveries and every attempt."""
    from .alerts_cli import show_alert

    with app.storage(existing=True) as storage:
        data, text = show_alert(storage, alert_id, str(app.settings.source.resolve()))
    if as_json:
        _json(data)
    else:
        click.echo(text)


@alerts.command("retry")
@click.argument("alert_id")
@pass_app
def alerts_retry(app: App, alert_id: str) -> None:
    """Queue a failed alert again on its failed channels."""
    with app.storage(existing=True) as storage:
        storage.retry_alert(alert_id, now())
    click.echo(f"alert {alert_id} queued again")


@alerts.command("test")
@pass_app
def alerts_test(app: App) -> None:
    """Send a test message through every configured channel and print each result."""
    from .channels import build_channels
    from .deliver import send_test

    channels = build_channels(app.settings.alerts, source=app.settings.source)
    if not channels:
        raise UserError(f"{app.settings.source}: no alert channel is configured")
    failed = 0
    for channel, ok, detail in send_test(channels, now()):
        failed += not ok
        click.echo(f"{channel}: {'OK' if ok else 'FAILED'} {detail}")
    if failed:
        sys.exit(1)


@main.command()
@click.option("--topic", required=True, help="The topic to report on.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("timeline.html"),
    show_default=True,
)
@pass_app
def report(app: App, topic: str, output: Path) -> None:
    """Write a self-contained HTML timeline of the story: stories per day and developments."""
    from .report import write_report

    app.settings.topic(topic)
    with app.storage(existing=True) as storage:
        write_report(storage, topic, output, now())
    click.echo(f"wrote {output}")


def default_config_path() -> Path:
    return config_path(None)
