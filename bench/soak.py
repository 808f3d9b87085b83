"""Memory of a long-running daemon: `monitor run` against feeds that never stop publishing.

    python bench/soak.py [--feeds 60] [--seconds 300] [--interval 2] [--dedupe-window 60s]
                         [--retention 60s]

A local HTTP server (a thread of this process, 127.0.0.1 only) serves ``--feeds`` RSS feeds;
every request for a feed returns its 20 newest items, 5 of them new since the last request
(written by the farm's `_rss`: titles of 8 and bodies of 60-300 words drawn from wordfreq's
5,000 most frequent English words, so the vocabulary stops growing early and whatever still
grows is the daemon's).
`monitor run` polls every feed each ``--interval`` seconds with the repository's seeds as
its topic, in a child process; every ``--sample`` seconds its resident memory (VmRSS) and
the number of stored stories are read, and the size of the database (file and WAL) with the
number of stories whose text `database.retention` has cleared. The daemon is stopped with
SIGTERM at the end and must exit 0. The figure to read is the growth of RSS after the
warm-up (the first fifth of the run), per 10,000 stories; with ``--retention``, also the
database's growth per 10,000 stories.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

from farm import _Entry, _rss  # bench/ is on the path when run as a script

ROOT = Path(__file__).resolve().parents[1]
NEW_PER_REQUEST = 5
KEPT = 20


class _Feeds(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    words: ClassVar[list[str]] = []
    served: ClassVar[dict[str, int]] = {}  # path → items published so far
    lock = threading.Lock()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        with self.lock:
            newest = self.served[self.path] = self.served.get(self.path, 0) + NEW_PER_REQUEST
        entries = [self._entry(i) for i in range(newest - 1, max(0, newest - KEPT) - 1, -1)]
        body = _rss(0, "http://127.0.0.1", entries, entries[0].published)
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _entry(self, i: int) -> _Entry:
        rng = random.Random(f"{self.path}#{i}")
        title = " ".join(rng.choices(self.words, k=8)).capitalize()
        text = " ".join(rng.choices(self.words, k=rng.randint(60, 300)))
        return _Entry(
            uid=f"{self.path}#{i}",
            link=f"http://127.0.0.1{self.path}/{i}",
            title=title,
            html=f"<p>{text}</p>",
            summary=text[:200],
            published=datetime(2023, 11, 14, tzinfo=UTC) + timedelta(minutes=i),
            author="Soak Desk",
            categories=[],
        )


def _config(
    folder: Path, port: int, feeds: int, interval: float, window: str | None, retention: str
) -> Path:
    kept = f'dedupe_window = "{window}"\n' if window else ""
    kept += f'retention = "{retention}"\n'
    lines = [
        f'[database]\npath = "soak.db"\n{kept}',
        f'[polling]\ninterval = "{interval:g}s"\ntick = "1s"\njitter = 0.0\n',
        f'[[topics]]\nname = "soak"\nseeds = ["{ROOT / "seeds"}"]\n',
    ]
    lines += [f'[[feeds]]\nurl = "http://127.0.0.1:{port}/f/{n}"\n' for n in range(feeds)]
    path = folder / "soak.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _stories(db: Path) -> tuple[int, int]:
    """Stories stored, and how many of them had their text cleared."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            total, cleared = conn.execute(
                "SELECT count(*), count(pruned_at) FROM stories"
            ).fetchone()
            return int(total), int(cleared)
    except sqlite3.Error:
        return 0, 0


def _db_mb(db: Path) -> float:
    from monitor.storage import database_bytes

    return database_bytes(db) / 1e6


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--feeds", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--interval", type=float, default=2.0, help="poll interval, s")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    parser.add_argument(
        "--dedupe-window", metavar="DURATION",
        help='database.dedupe_window (e.g. "60s": the near-duplicate index keeps a minute)',
    )  # fmt: skip
    parser.add_argument(
        "--retention", metavar="DURATION", default="180d",
        help='database.retention (e.g. "60s": unrelated stories\' text is cleared after a minute)',
    )  # fmt: skip
    args = parser.parse_args()

    from wordfreq import top_n_list

    _Feeds.words = top_n_list("en", 5000)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Feeds)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    samples: list[tuple[float, float, int, float]] = []  # (s, RSS MB, stories, database MB)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = _config(
            folder, server.server_address[1], args.feeds, args.interval, args.dedupe_window,
            args.retention,
        )  # fmt: skip
        db = folder / "soak.db"
        env = {**os.environ, "MONITOR_DB": str(db)}
        log = (folder / "run.log").open("w")
        cmd = [sys.executable, "-m", "monitor", "--config", str(config), "run"]
        child = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        started = time.monotonic()
        try:
            while (elapsed := time.monotonic() - started) < args.seconds:
                time.sleep(min(args.sample, max(0.0, args.seconds - elapsed)))
                if child.poll() is not None:
                    break
                rss = _rss_mb(child.pid)
                if rss is not None:
                    stories, cleared = _stories(db)
                    size = _db_mb(db)
                    samples.append((time.monotonic() - started, rss, stories, size))
                    print(
                        f"{samples[-1][0]:7.0f} s  {rss:6.1f} MB  {stories:8} stories "
                        f"({cleared} cleared)  database {size:7.1f} MB"
                    )
        finally:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
            try:
                code = child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
                code = child.wait()
            server.shutdown()
            log.close()
            tail = (folder / "run.log").read_text(errors="replace").splitlines()[-3:]
    print(f"monitor run exited with {code}; last log lines:", *tail, sep="\n  ")
    warm = [s for s in samples if s[0] >= args.seconds * 0.2]  # pools and caches fill first
    if code != 0 or len(warm) < 2 or warm[-1][2] <= warm[0][2]:
        print("!! the daemon failed, or stored nothing after the warm-up")
        return 1
    first, last = warm[0], warm[-1]
    peak = max(s[1] for s in samples)
    per_10k = (last[1] - first[1]) / (last[2] - first[2]) * 10_000
    disk_10k = (last[3] - first[3]) / (last[2] - first[2]) * 10_000
    print(
        f"after the warm-up: {first[1]:.1f} MB at {first[2]} stories -> {last[1]:.1f} MB at "
        f"{last[2]} stories ({per_10k:+.2f} MB per 10,000 stories); peak {peak:.1f} MB\n"
        f"database: {first[3]:.1f} MB -> {last[3]:.1f} MB ({disk_10k:+.1f} MB per 10,000 "
        f"stories, retention {args.retention})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
