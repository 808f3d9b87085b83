#!/usr/bin/env python3
"""Render a timeline report (`monitor report`) to a PNG in headless Chromium.

    python scripts/render_report.py timeline.html docs/timeline.png
    python scripts/render_report.py --replay ../shared/eval/dev/stream.jsonl docs/timeline.png

With --replay, the archive is replayed into a throwaway database with the default config's
topic first, and the report of that database is rendered (the command above is how
docs/timeline.png is made, from the labelled development stream beside the checkout).

Uses Debian's `chromium` (apt-get install chromium), with background networking off and a
fresh profile, so the page is drawn exactly as a user's browser would show the file. Exits
non-zero when Chromium is missing or writes no image.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def screenshot(
    html: Path, png: Path, *, width: int = 1280, height: int = 2000, timeout: float = 90.0
) -> Path:
    """Draw `html` in headless Chromium and save a `width`×`height` PNG at `png`."""
    browser = find_chromium()
    if browser is None:
        raise SystemExit("chromium not found: apt-get install -y chromium")
    png = png.resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="monitor-chromium-") as profile:
        command = [
            browser,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--screenshot={png}",
            f"--window-size={width},{height}",
            html.resolve().as_uri(),
        ]
        subprocess.run(command, check=False, capture_output=True, timeout=timeout)
    if not png.exists() or png.stat().st_size == 0:
        raise SystemExit(f"chromium wrote no screenshot for {html}")
    return png


def dump_dom(html: Path, *, timeout: float = 90.0) -> str:
    """The DOM of `html` after Chromium has loaded it (what a test reads back)."""
    browser = find_chromium()
    if browser is None:
        raise SystemExit("chromium not found: apt-get install -y chromium")
    with tempfile.TemporaryDirectory(prefix="monitor-chromium-") as profile:
        done = subprocess.run(
            [browser, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", html.resolve().as_uri()],
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    return done.stdout


def report_from_replay(archive: Path, html: Path, topic: str | None) -> Path:
    """Replay `archive` into a throwaway database and write its report to `html`."""
    import os

    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory(prefix="monitor-report-") as folder:
        os.environ["MONITOR_DB"] = str(Path(folder) / "monitor.db")
        from monitor.config import load_settings
        from monitor.pipeline import Pipeline
        from monitor.report import write_report
        from monitor.storage import Storage

        settings = load_settings(ROOT / "config" / "monitor.toml")
        name = topic or settings.topics[0].name
        storage = Storage(settings.database_path)
        try:
            Pipeline(settings, storage).replay(archive)
            write_report(storage, name, html, datetime.now(UTC))
        finally:
            storage.close()
    return html


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="an HTML report, or with --replay a .jsonl")
    parser.add_argument("output", type=Path, help="the PNG to write")
    parser.add_argument(
        "--replay",
        action="store_true",
        help="SOURCE is a replay archive: replay it, then render its report",
    )
    parser.add_argument("--topic", default=None, help="topic of the report (with --replay)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=2000)
    args = parser.parse_args(argv)
    html = args.source
    if args.replay:
        html = args.output.with_suffix(".html")
        report_from_replay(args.source, html, args.topic)
    screenshot(html, args.output, width=args.width, height=args.height)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
