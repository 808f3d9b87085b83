"""A command whose database stops taking writes half way (a full disk) says so in one line.

The disk is full for the command's process alone: RLIMIT_FSIZE caps every file it writes
(SIGXFSZ ignored, so a write past the cap fails with EFBIG instead of killing it). SQLite
reports that as "disk I/O error" (ENOSPC, a really full disk, as "database or disk is
full"). Either way the command must end in one line naming the database, exit 1, without a
traceback, and keep what it committed before.

It used to end in a traceback of the term counts' flush at close, which failed the same way
and hid the first error (and, in a poll, a traceback for each feed as an "unexpected error").
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from monitor.storage import Storage
from tests.feedserver import FeedServer, Reply
from tests.test_daemon import stderr_lines, wait_for

ROOT = Path(__file__).resolve().parents[1]
STREAM = ROOT / "tests/data/eval2/stream.jsonl"
# The cap on every file the command writes, the write-ahead log too. The database, already
# larger (`start`), cannot take a checkpoint's pages past it either, so the log fills up
# after a few items' writes: the run fails half way, with some of them committed.
CAP = 250_000

# The process caps its own files, then runs `python -m monitor` (no preexec_fn: the test
# process has threads, the feed server's).
CAPPED = (
    "import resource, runpy, signal, sys; "
    "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
    "cap = int(sys.argv.pop(1)); "
    "resource.setrlimit(resource.RLIMIT_FSIZE, (cap, cap)); "
    "runpy.run_module('monitor', run_name='__main__')"
)


def monitor(tmp_path: Path, *args: str, cap: int | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "monitor"]
    if cap is not None:
        command = [sys.executable, "-c", CAPPED, str(cap)]
    return subprocess.run(
        [*command, "--config", str(tmp_path / "monitor.toml"), *args],
        env={**os.environ, "MONITOR_DB": str(tmp_path / "cli.db")},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def start(tmp_path: Path, feeds: Sequence[str] = ()) -> None:
    """A database that holds the first archived item (the topic, its seeds and word
    tables: the big first writes, ~3 MB)."""
    (tmp_path / "monitor.toml").write_text(
        f'[[topics]]\nname = "valdoria"\nseeds = ["{ROOT / "tests/data/eval2/seeds"}"]\n'
        + "".join(f'[[feeds]]\nurl = "{url}"\n' for url in feeds)
    )
    first = tmp_path / STREAM.name  # (the same origin as the whole stream's replay)
    first.write_text(STREAM.read_text(encoding="utf-8").splitlines()[0] + "\n")
    done = monitor(tmp_path, "replay", str(first))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "cli.db").stat().st_size > CAP


def stored(tmp_path: Path) -> tuple[int, int, str]:
    """(stories, distinct URLs, integrity check) as another process sees them."""
    conn = sqlite3.connect(tmp_path / "cli.db")
    try:
        stories, urls = conn.execute("SELECT count(*), count(DISTINCT url) FROM stories").fetchone()
        (integrity,) = conn.execute("PRAGMA integrity_check").fetchone()
    finally:
        conn.close()
    return stories, urls, integrity


def assert_one_line(done: subprocess.CompletedProcess[str], db: Path) -> None:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("monitor: ")]
    assert errors in (
        [f"monitor: {db}: disk I/O error"],
        [f"monitor: {db}: database or disk is full"],
    ), done.stderr
    assert done.stderr.rstrip().endswith(errors[0])


def test_a_replay_that_fills_the_disk_ends_in_one_line(tmp_path: Path) -> None:
    start(tmp_path)
    done = monitor(tmp_path, "replay", str(STREAM), cap=CAP)
    assert_one_line(done, tmp_path / "cli.db")
    assert "replayed" not in done.stdout
    stories, urls, integrity = stored(tmp_path)
    assert integrity == "ok"
    assert urls == stories > 1  # the first item, and what the full run committed before it failed
    again = monitor(tmp_path, "replay", str(STREAM))  # with room: the rest, once each
    assert again.returncode == 0, again.stderr
    assert stored(tmp_path) == (58, 58, "ok")


def rss(items: list[dict[str, str]]) -> str:
    parts = ['<?xml version="1.0"?><rss version="2.0"><channel><title>Valdoria</title>']
    for item in items:
        parts.append(
            f"<item><title>{escape(item['title'])}</title><link>{escape(item['url'])}</link>"
            f"<description>{escape(item.get('summary') or '')}</description></item>"
        )
    parts.append("</channel></rss>")
    return "".join(parts)


def test_a_poll_that_fills_the_disk_ends_in_one_line(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    """The feeds' writes fail for the database's sake, not the feeds': no traceback for
    each as an "unexpected error", nothing recorded on them, and the poll stops."""
    items = [json.loads(line) for line in STREAM.read_text(encoding="utf-8").splitlines()]
    rest = items[1:]  # (the first one is replayed by `start`)
    feeds = [feed_server.route(f"/{n}.xml", Reply(200, rss(rest[n::6]))) for n in range(6)]
    start(tmp_path, feeds)
    done = monitor(tmp_path, "poll", cap=CAP)
    assert_one_line(done, tmp_path / "cli.db")
    assert "unexpected error" not in done.stderr
    stories, urls, integrity = stored(tmp_path)
    assert integrity == "ok"
    assert urls == stories > 1
    conn = sqlite3.connect(tmp_path / "cli.db")
    try:
        kinds = conn.execute("SELECT DISTINCT error_kind FROM feeds").fetchall()
    finally:
        conn.close()
    assert kinds == [(None,)]
    again = monitor(tmp_path, "poll")
    assert again.returncode == 0, again.stderr
    assert stored(tmp_path) == (58, 58, "ok")


def test_a_close_whose_flush_fails_still_closes(tmp_path: Path) -> None:
    """The term counts held back fail to fit (SQLite's own cap on the file's pages, on
    this connection): the error is raised, but only after the connection is closed and the
    run lock released, as a close must. `close_after`, for a caller already failing with
    an error of its own, only logs the second one."""
    for closing in ("close", "close_after"):
        path = tmp_path / f"{closing}.db"
        storage = Storage(path)
        storage.acquire_run_lock()
        storage.count_terms([f"word{number:05d}" for number in range(5000)])
        (pages,) = storage.db.execute("PRAGMA page_count").fetchone()
        storage.db.execute(f"PRAGMA max_page_count = {pages}")
        if closing == "close":
            with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
                storage.close()
        else:
            storage.close_after(RuntimeError("the first error"))
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            storage.db.conn.execute("SELECT 1")
        other = Storage(path)
        other.acquire_run_lock()  # (AlreadyRunning while the first one held it)
        # all of the counts or none: the flush is one transaction
        (written,) = other.db.execute(
            "SELECT count(*) FROM term_frequencies WHERE term LIKE 'word%'"
        ).fetchone()
        assert written == 0
        other.close()


def test_a_daemon_whose_disk_fills_says_so_at_each_tick_and_stops_cleanly(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    """`monitor run` logged APScheduler's traceback at every tick, and ended in one from
    the close's flush: each job that fails for the database now logs one line naming it
    (the next tick tries again), and the stop exits 1 with a last line saying why."""
    items = [json.loads(line) for line in STREAM.read_text(encoding="utf-8").splitlines()]
    feeds = [feed_server.route(f"/{n}.xml", Reply(200, rss(items[1:][n::6]))) for n in range(6)]
    start(tmp_path, feeds)
    config = tmp_path / "monitor.toml"
    config.write_text(
        '[polling]\ntick = "1s"\n[service]\nlisten = "127.0.0.1:0"\n'
        + config.read_text().replace("[[feeds]]\n", '[[feeds]]\ninterval = "1s"\n')
    )
    daemon = subprocess.Popen(
        [sys.executable, "-c", CAPPED, str(CAP), "--config", str(config), "run"],
        env={**os.environ, "MONITOR_DB": str(tmp_path / "cli.db")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines, reader = stderr_lines(daemon)
        failed = f"poll stopped: {tmp_path / 'cli.db'}: "
        wait_for(lambda: sum(failed in line for line in lines) >= 2, "two failed polls")
        (address,) = [
            line.split(" at ")[1].split("/healthz")[0] for line in lines if "/healthz" in line
        ]
        try:
            with urllib.request.urlopen(f"{address}/healthz", timeout=30) as answer:
                checks = json.loads(answer.read())["checks"]
        except urllib.error.HTTPError as unhealthy:
            checks = json.loads(unhealthy.read())["checks"]
        assert str(checks["last_poll_error"]).startswith(f"{tmp_path / 'cli.db'}: ")
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
        reader.join(timeout=30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(timeout=30)
    log = "".join(lines)
    assert "Traceback" not in log, log
    errors = [line for line in lines if " ERROR " in line]
    assert all(str(tmp_path / "cli.db") in line for line in errors), errors
    # whether anything was held back for the stop to write depends on where the writes
    # failed: if it could not be written, that is the last line, and the exit status 1
    stopped = errors[-1].rstrip().endswith("(at the stop)")
    assert (daemon.returncode, stopped) in ((0, False), (1, True)), log
    assert stored(tmp_path)[2] == "ok"
