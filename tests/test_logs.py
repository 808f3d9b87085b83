"""Logs: one line per feed per poll (outcome, counts, duration), JSON with --log-format json,
decisions explained at DEBUG, and no secret in any line."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from monitor.config import settings_from_dict
from monitor.log import register_secret, setup_logging
from monitor.pipeline import Pipeline, utcnow
from monitor.storage import Storage

ROOT = Path(__file__).resolve().parent.parent
FEED = (ROOT / "tests" / "data" / "feeds" / "rss20.xml").read_bytes()
REPLAY = ROOT / "tests" / "data" / "service_story.jsonl"
TOPIC = "taliban-delisting"
DECISION = re.compile(
    rf"{TOPIC} \S+: (development|coverage|duplicate|unrelated) \(score \d+\.\d\d\)"
)


@pytest.fixture
def feed_server() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/feed.xml":
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml")
                self.send_header("Content-Length", str(len(FEED)))
                self.end_headers()
                self.wfile.write(FEED)
            else:
                self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def poll(tmp_path: Path, base: str) -> None:
    settings = settings_from_dict(
        {
            "database": {"path": str(tmp_path / "monitor.db")},
            "topics": [{"name": TOPIC, "seeds": [str(ROOT / "seeds")]}],
            "feeds": [
                {"url": f"{base}/feed.xml", "name": "Local feed"},
                {"url": f"{base}/missing.xml", "name": "Missing feed"},
            ],
        },
        tmp_path / "monitor.toml",
    )
    storage = Storage(settings.database_path)
    try:
        storage.sync_feeds(settings.feeds, utcnow())
        asyncio.run(Pipeline(settings, storage).poll(only_due=False))
    finally:
        storage.close()


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    logging.getLogger().handlers.clear()


def test_one_readable_line_per_feed_per_poll(
    tmp_path: Path,
    feed_server: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MONITOR_DB", raising=False)
    setup_logging("INFO", "text")
    poll(tmp_path, feed_server)
    lines = [line for line in capsys.readouterr().err.splitlines() if "monitor.pipeline" in line]
    local = [line for line in lines if "feed Local feed:" in line]
    missing = [line for line in lines if "feed Missing feed:" in line]
    assert len(local) == 1 and len(missing) == 1, lines
    assert re.search(r"ok 200, \d+ entries, \d+ new, 0 edited \(\d+ ms\)", local[0])
    assert "WARNING" in missing[0] and "404" in missing[0] and re.search(r"\(\d+ ms\)", missing[0])


def test_json_lines_carry_the_figures(
    tmp_path: Path,
    feed_server: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MONITOR_DB", raising=False)
    setup_logging("INFO", "json")
    poll(tmp_path, feed_server)
    records = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]
    feeds = [r for r in records if r.get("logger") == "monitor.pipeline" and "feed" in r]
    by_name = {r["feed"]: r for r in feeds}
    assert set(by_name) == {"Local feed", "Missing feed"}
    ok = by_name["Local feed"]
    assert ok["outcome"] == "ok" and ok["status"] == 200
    assert ok["entries"] >= 1 and ok["new"] == ok["entries"] and ok["edited"] == 0
    assert isinstance(ok["duration_ms"], float)
    assert ok["level"] == "info" and ok["time"]
    failed = by_name["Missing feed"]
    assert failed["outcome"] == "error" and failed["level"] == "warning" and failed["error"]


def test_cli_log_format_json_explains_decisions_at_debug(tmp_path: Path) -> None:
    config = tmp_path / "monitor.toml"
    config.write_text(
        f'[[topics]]\nname = "{TOPIC}"\nseeds = ["{ROOT / "seeds"}"]\n', encoding="utf-8"
    )
    env = {**os.environ, "MONITOR_DB": str(tmp_path / "monitor.db")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "monitor",
            "--config",
            str(config),
            "--log-format",
            "json",
            "--log-level",
            "DEBUG",
            "replay",
            str(REPLAY),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert records and len(records) == len([x for x in done.stderr.splitlines() if x.strip()])
    explained = [r for r in records if r["level"] == "debug" and DECISION.search(r["message"])]
    assert len(explained) == sum(1 for line in REPLAY.read_text().splitlines() if line.strip())


def test_secrets_never_reach_a_line(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO", "json")
    register_secret("hunter2-very-secret")
    logging.getLogger("monitor.test").warning(
        "login failed for %s", "hunter2-very-secret", extra={"detail": "hunter2-very-secret"}
    )
    err = capsys.readouterr().err
    assert "hunter2-very-secret" not in err and "***" in err
