"""Poll parity: do items that arrive through feeds get the decisions `monitor replay` gives?

    python bench/poll_parity.py [LABELS_DIR] [--step 1d | --step all] [--clock wall|step]
                                [--retention DURATION] [--seeds DIR] [--keep DIR]

The labelled stream (default: shared/eval/dev) is split by ``source`` into one feed per
outlet, served by a local HTTP server (a thread of this process, 127.0.0.1 only): every
other outlet RSS 2.0 (description + content:encoded), the rest Atom 1.0 (summary + content,
both type="html"), with the item's URL as link, a guid/id of its own, its date in its own
offset, the outlet's language, and the body as HTML paragraphs. The summary is published
as the stream has it (it may hold markup or entities), escaped once, as outlets do.

Items are revealed in publication order, a ``--step`` of time at a time (windows with
nothing new are skipped; ``--step all`` reveals everything at once: the daemon's first
poll of a backlog). After each step `monitor --config CFG poll` runs once (one database
for the whole run, MONITOR_DB in a temporary folder, fresh at the start), every feed
served with its newest 50 items so far, newest first, with ETag and Last-Modified (a
conditional request gets 304 when nothing new was revealed). Then `monitor export`, and
the same stream is replayed into another database and exported. Both exports are scored
by the labels' score.py and printed side by side, followed by every item whose status,
development or duplicate_of differs (development and duplicate_of as the item that opened
it or was copied, so that story IDs of two databases compare).

``--clock step`` polls with "now" set to the newest revealed item's time (the pipeline in
a child process of this script, with an injected clock) instead of the wall clock: the
difference between the two runs is what the wall clock alone does.

With ``--step 15m`` nearly every poll brings one item (~75 s in all); with ``--step 1d``
(~40 s) and ``--step all`` (~4 s) a poll brings several, judged feed by feed in the order
the responses arrive, so those runs vary a little between runs. ``--retention 0`` keeps
the text of unrelated stories, as replay does (with ``--clock step`` the default 180 days
clears it during the run).

Every child process has a deadline, and the server stops with the script.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "eval"
KEPT = 50  # items a feed carries
DEADLINE = 300  # seconds any one child process may take
METRICS = (
    "decisions", "missing", "relevance_precision", "relevance_recall", "dedup_recall",
    "dedup_precision", "translated_dedup_recall", "relevance_recall_other",
    "development_recall", "alert_precision", "alerts", "redundant_alerts", "false_alerts",
    "seed_alerts", "median_alert_rank", "missed_developments",
)  # fmt: skip


# ---------------------------------------------------------------------------------------
# Feeds


def _when(item: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(item["published"].replace("Z", "+00:00"))


def _body_html(text: str) -> str:
    """The stream's plain body (paragraphs between blank lines) as an outlet's HTML."""
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    return "\n".join(f"<p>{escape(p, quote=False)}</p>" for p in paragraphs)


def _rss_item(item: dict[str, Any]) -> str:
    parts = [
        f"<item>\n<title>{escape(item['title'], quote=False)}</title>",
        f"<link>{escape(item['url'])}</link>",
        f'<guid isPermaLink="false">urn:parity:{item["id"]}</guid>',
        f"<pubDate>{format_datetime(_when(item))}</pubDate>",
    ]
    if item.get("summary"):
        parts.append(f"<description>{escape(item['summary'], quote=False)}</description>")
    if item.get("content"):
        parts.append(
            f"<content:encoded><![CDATA[{_body_html(item['content'])}]]></content:encoded>"
        )
    return "\n".join(parts) + "\n</item>\n"


def _atom_entry(item: dict[str, Any]) -> str:
    stamp = item["published"]
    parts = [
        f"<entry>\n<title>{escape(item['title'], quote=False)}</title>",
        f'<link rel="alternate" type="text/html" href="{escape(item["url"])}"/>',
        f"<id>tag:parity.example,2026:{item['id']}</id>",
        f"<published>{stamp}</published>\n<updated>{stamp}</updated>",
    ]
    if item.get("summary"):
        parts.append(f'<summary type="html">{escape(item["summary"], quote=False)}</summary>')
    if item.get("content"):
        parts.append(f'<content type="html">{escape(_body_html(item["content"]))}</content>')
    return "\n".join(parts) + "\n</entry>\n"


def _document(kind: str, name: str, url: str, language: str, items: list[dict]) -> bytes:
    """A feed of ``items`` (newest first)."""
    newest = _when(items[0]) if items else datetime(2023, 1, 1, tzinfo=UTC)
    title = escape(name, quote=False)
    if kind == "rss":
        head = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">\n'
            f"<channel>\n<title>{title}</title>\n<link>{url}</link>\n"
            f"<description>{title}</description>\n<language>{language}</language>\n"
            f"<lastBuildDate>{format_datetime(newest)}</lastBuildDate>\n"
        )
        return (head + "".join(map(_rss_item, items)) + "</channel>\n</rss>\n").encode()
    head = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="{language}">\n'
        f'<title>{title}</title>\n<id>{url}</id>\n<link rel="self" href="{url}"/>\n'
        f"<updated>{newest.isoformat()}</updated>\n"
    )
    return (head + "".join(map(_atom_entry, items)) + "</feed>\n").encode()


class _Feeds(BaseHTTPRequestHandler):
    """GET /feeds/<n>.xml: that outlet's items among the first `revealed` of the stream."""

    protocol_version = "HTTP/1.1"
    outlets: ClassVar[list[tuple[str, str, str, list[dict]]]] = []  # kind, name, lang, items
    revealed: ClassVar[int] = 0
    order: ClassVar[dict[str, int]] = {}  # item id → its place in the stream
    requests: ClassVar[int] = 0
    not_modified: ClassVar[int] = 0
    lock = threading.Lock()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        with self.lock:
            _Feeds.requests += 1
            revealed = self.revealed
        name = self.path.removeprefix("/feeds/").removesuffix(".xml")
        if not name.isdigit() or int(name) >= len(self.outlets):
            self.send_error(404)
            return
        kind, outlet, language, items = self.outlets[int(name)]
        shown = [i for i in items if self.order[i["id"]] < revealed][::-1][:KEPT]
        url = f"http://{self.headers.get('Host', '127.0.0.1')}{self.path}"
        body = _document(kind, outlet, url, language, shown)
        etag = '"' + hashlib.blake2b(body, digest_size=8).hexdigest() + '"'
        modified = format_datetime(_when(shown[0]) if shown else datetime(2023, 1, 1, tzinfo=UTC))
        since = self.headers.get("If-Modified-Since")
        unchanged = self.headers.get("If-None-Match") == etag or (
            self.headers.get("If-None-Match") is None
            and since is not None
            and parsedate_to_datetime(since) >= parsedate_to_datetime(modified)
        )
        if unchanged:
            with self.lock:
                _Feeds.not_modified += 1
            self.send_response(304)
            self.send_header("ETag", etag)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        content_type = "application/rss+xml" if kind == "rss" else "application/atom+xml"
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", modified)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _outlets(items: list[dict]) -> list[tuple[str, str, str, list[dict]]]:
    """One feed per source, in order of first appearance; RSS and Atom in turn."""
    by_source: dict[str, list[dict]] = {}
    for item in items:
        by_source.setdefault(item["source"], []).append(item)
    outlets = []
    for n, (source, own) in enumerate(by_source.items()):
        languages = [i.get("language") or "en" for i in own]
        language = max(set(languages), key=languages.count)
        outlets.append(("rss" if n % 2 == 0 else "atom", source, language, own))
    return outlets


# ---------------------------------------------------------------------------------------
# Runs


def _steps(items: list[dict], step: str) -> list[int]:
    """How many items each poll sees: the items published before each window's end."""
    if step == "all":
        return [len(items)]
    amount, unit = float(step[:-1]), step[-1]
    width = timedelta(**{{"h": "hours", "d": "days", "m": "minutes"}[unit]: amount})
    start = _when(items[0]).astimezone(UTC)
    cuts: list[int] = []
    for n, item in enumerate(items, 1):
        window = (_when(item).astimezone(UTC) - start) // width
        later = n < len(items) and (_when(items[n]).astimezone(UTC) - start) // width == window
        if not later:
            cuts.append(n)
    return cuts


def _config(
    folder: Path,
    port: int,
    outlets: Sequence[tuple[str, str, str, list]],
    seeds: Path,
    retention: str | None,
) -> Path:
    lines = [f'[database]\nretention = "{retention}"\n'] if retention else []
    lines.append(f'[[topics]]\nname = "parity"\nseeds = ["{seeds}"]\n')
    for n, (_, name, _, _) in enumerate(outlets):
        lines.append(f'[[feeds]]\nname = "{name}"\nurl = "http://127.0.0.1:{port}/feeds/{n}.xml"\n')
    path = folder / "parity.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _monitor(config: Path, db: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """`monitor ARGS` on ``db`` in a child process (with ``env`` added); its output."""
    env = {**os.environ, "MONITOR_DB": str(db), "PYTHONPATH": str(ROOT), **(env or {})}
    cmd = [sys.executable, "-m", "monitor", "--config", str(config), *args]
    done = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=DEADLINE, cwd=ROOT, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout


def _poll_at(config: Path, db: Path, at: str) -> str:
    """A `monitor poll` whose clock reads ``at`` (a child process running this script)."""
    env = {**os.environ, "MONITOR_DB": str(db), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, __file__, "--poll-at", at, "--config", str(config)]
    done = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=DEADLINE, cwd=ROOT, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"poll at {at} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout


def _child_poll(config: str, at: str) -> int:
    """What `monitor poll` does, with ``at`` for the pipeline's clock (no alert delivery)."""
    sys.path.insert(0, str(ROOT))
    from monitor.config import load_settings
    from monitor.pipeline import Pipeline
    from monitor.storage import Storage

    moment = datetime.fromisoformat(at)
    settings = load_settings(config)
    storage = Storage(settings.database_path)
    storage.sync_feeds(settings.feeds, moment)
    pipeline = Pipeline(settings, storage, clock=lambda: moment)
    try:
        summary = asyncio.run(pipeline.poll(only_due=False))
    finally:
        pipeline.close()
    storage.close()
    print(summary.text())
    return 0


def _score(labels: Path, export: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(labels.parent / "score.py"), str(labels), str(export), "--json"],
        capture_output=True, text=True, timeout=DEADLINE, check=False,
    )  # fmt: skip
    return dict(json.loads(done.stdout))


def _by_item(rows: list[dict], items: list[dict]) -> dict[str, dict[str, str | None]]:
    """Each item's (status, development, duplicate_of), with story and development IDs
    written as the item that is that story or opened that development."""
    item_of = {i["url"]: i["id"] for i in items}
    story = {r["id"]: item_of.get(r["url"], r["id"]) for r in rows}
    opened = {r["development"]: story[r["id"]] for r in rows if r["status"] == "development"}
    out = {}
    for row in rows:
        dev, dup = row["development"], row["duplicate_of"]
        out[story[row["id"]]] = {
            "status": row["status"],
            "development": None if dev is None else opened.get(dev, "seed"),
            "duplicate_of": None if dup is None else story.get(dup, dup.split(":")[0]),
        }
    return out


def _table(left: dict[str, Any], right: dict[str, Any], names: tuple[str, str]) -> str:
    lines = [f"{'':26}{names[0]:>22}{names[1]:>22}"]
    for key in METRICS:
        a, b = left.get(key), right.get(key)
        mark = "" if a == b else "   <-"
        lines.append(f"{key:26}{_cell(a):>22}{_cell(b):>22}{mark}")
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "-"
    return str(value)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("labels", nargs="?", type=Path, default=SHARED / "dev")
    parser.add_argument("--seeds", type=Path, default=ROOT / "seeds")
    parser.add_argument("--step", default="1d", help='window per poll: "6h", "1d", ... or "all"')
    parser.add_argument("--clock", choices=("wall", "step"), default="wall")
    parser.add_argument(
        "--retention", metavar="DURATION",
        help='database.retention ("0": unrelated stories keep their text, as in a replay)',
    )  # fmt: skip
    parser.add_argument("--keep", type=Path, help="keep databases and exports here")
    parser.add_argument("--poll-at", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.poll_at:
        return _child_poll(args.config, args.poll_at)

    stream = args.labels / "stream.jsonl"
    items = [json.loads(line) for line in stream.read_text(encoding="utf-8").splitlines() if line]
    _Feeds.outlets = _outlets(items)
    _Feeds.order = {item["id"]: n for n, item in enumerate(items)}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Feeds)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cuts = _steps(items, args.step)
    rss = sum(1 for o in _Feeds.outlets if o[0] == "rss")
    print(
        f"{len(items)} items in {len(_Feeds.outlets)} feeds ({rss} RSS, "
        f"{len(_Feeds.outlets) - rss} Atom); {len(cuts)} polls (step {args.step}, "
        f"clock {args.clock})"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        config = _config(
            folder, server.server_address[1], _Feeds.outlets, args.seeds.resolve(), args.retention
        )
        polled, replayed = folder / "poll.db", folder / "replay.db"
        for db in (polled, replayed):
            for path in db.parent.glob(db.name + "*"):
                path.unlink()
        try:
            for n, cut in enumerate(cuts, 1):
                _Feeds.revealed = cut
                if args.clock == "step":
                    at = (_when(items[cut - 1]).astimezone(UTC) + timedelta(minutes=1)).isoformat()
                    out = _poll_at(config, polled, at)
                else:
                    out = _monitor(config, polled, "poll")
                if len(cuts) <= 10 or n % 10 == 0 or n == len(cuts):
                    print(f"  poll {n}/{len(cuts)}: {cut} items revealed; {out.splitlines()[0]}")
        finally:
            server.shutdown()
        print(f"server: {_Feeds.requests} requests, {_Feeds.not_modified} answered 304")
        (folder / "poll.jsonl").write_text(_monitor(config, polled, "export", "--format", "jsonl"))
        _monitor(config, replayed, "replay", str(stream))
        (folder / "replay.jsonl").write_text(
            _monitor(config, replayed, "export", "--format", "jsonl")
        )
        exports = {}
        for name in ("poll", "replay"):
            text = (folder / f"{name}.jsonl").read_text()
            exports[name] = [json.loads(line) for line in text.splitlines() if line]
        scores = [_score(args.labels, folder / f"{name}.jsonl") for name in ("poll", "replay")]
    print()
    print(_table(scores[0], scores[1], ("poll", "replay")))
    polled_items = _by_item(exports["poll"], items)
    replayed_items = _by_item(exports["replay"], items)
    labels = {i["id"]: i for i in items}
    differ = [i["id"] for i in items if polled_items.get(i["id"]) != replayed_items.get(i["id"])]
    print(f"\n{len(differ)} items decided differently (poll | replay):")
    for item_id in differ:
        label = labels[item_id]
        truth = f"g{label['grade']} {label['development'] or '-'} {label['dup_group'] or '-'}"
        sides = []
        for side in (polled_items.get(item_id), replayed_items.get(item_id)):
            if side is None:
                sides.append("missing")
                continue
            text = side["status"][:5]
            if side["development"]:
                text += f" dev={side['development']}"
            if side["duplicate_of"]:
                text += f" of={side['duplicate_of']}"
            sides.append(text)
        print(f"  {item_id} [{truth:16}] {sides[0]:34} | {sides[1]:34} {label['title'][:50]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
