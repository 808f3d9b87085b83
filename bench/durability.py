"""Durability: does `monitor run` alert each development once, by email and webhook, through
kills, restarts and outages?

    python bench/durability.py [LABELS_DIR] [--seed 1] [--seconds 200] [--kills 6]
                               [--keep DIR]

The labelled stream (default: shared/eval/dev) is served as feeds by poll_parity's server
(a thread of this process, 127.0.0.1 only), a few items revealed every few seconds over
``--seconds`` of wall time. The real daemon, `python -m monitor run`, polls them in a child
process every few seconds and delivers its alerts to two peers of this process: an SMTP
server (aiosmtpd) and an HTTP receiver that checks every webhook's Standard Webhooks
signature. Both record what they accepted: the email's Message-ID and subject, the webhook's
webhook-id and body.

Meanwhile (times drawn from ``--seed``):

- the daemon is killed with SIGKILL ``--kills`` times and started again a moment later:
  half at random moments, half right after one of the peers accepted an alert (the kill
  then falls between the send and its record: that alert goes out once more, with the same
  ID, which is allowed and counted);
- the SMTP server is down (connection refused) for a period;
- the receiver answers 503 for a period, and 429 with a Retry-After for another.

After the last item the daemon runs until every feed was polled since, and the outbox is
drained (bounded waits), then gets SIGTERM and must exit 0. The report: the development
alerts in the database and their delivery states; for each channel the deliveries
received, distinct alert IDs, duplicates (each explained by a kill between two receipts, or
not), alerts never received (lost) and receipts of IDs the database does not have; the
tracebacks and errors in the daemon's logs; and the developments alerted compared with a
`monitor replay` of the same stream (they differ a little: a poll brings several items at
once, from feeds answering in any order). Exit 1 on a loss, an unexplained duplicate, a bad
signature, a daemon that died by itself or did not exit 0 on SIGTERM, or an alert left
undelivered. The moments of kills and outages follow the seed; what the daemon was doing
at each depends on the machine, so two runs with one seed differ in their details.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from poll_parity import _Feeds, _monitor, _outlets  # bench/ is on the path as a script
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "eval"
SECRET = "whsec_" + "ZHVyYWJpbGl0eS1iZW5jaC1zZWNyZXQtMDEyMzQ1Ng=="
DRAIN = 240.0  # seconds the daemon may take after the last item to poll it and drain
STOP = 60.0  # seconds a SIGTERM may take


# ---------------------------------------------------------------------------------------
# Peers


@dataclass
class Receipt:
    alert_id: str
    at: float  # time.time() when the peer accepted it
    detail: str  # subject, or the body's story title


@dataclass
class Peers:
    """What both peers accepted, and the daemon to kill when a receipt is awaited."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    email: list[Receipt] = field(default_factory=list)
    webhook: list[Receipt] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)  # webhook answers other than 2xx
    bad_signatures: int = 0
    hook_mode: tuple[int, dict[str, str]] = (204, {})
    kill_next: Any = None  # a callable, set while a kill waits for the next receipt
    kill_on: str = ""  # ... on this channel

    def accepted(self, channel: str, receipt: Receipt) -> None:
        with self.lock:
            getattr(self, channel).append(receipt)
            kill = None
            if self.kill_on == channel:
                kill, self.kill_next = self.kill_next, None
        if kill is not None:
            kill(f"after {channel} accepted {receipt.alert_id}")


class _Sink:
    """aiosmtpd handler: accepts every message, keeping its Message-ID and subject."""

    def __init__(self, peers: Peers, ids: dict[str, str]) -> None:
        self.peers = peers
        self.ids = ids  # Message-ID → alert ID, filled in as alerts appear

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        message = message_from_bytes(envelope.original_content or b"", policy=policy.default)
        msgid = str(message.get("Message-ID", ""))
        alert = self.ids.get(msgid) or msgid.strip("<>").split("@")[0]
        self.peers.accepted("email", Receipt(alert, time.time(), str(message["Subject"])))
        return "250 2.0.0 OK"


class SmtpPeer:
    """aiosmtpd on one port for the whole run, that can be taken down and brought back."""

    def __init__(self, handler: _Sink) -> None:
        self.handler = handler
        self.port = 0
        self.controller: Controller | None = None
        self.hole: socket.socket | None = None
        self.start()

    def start(self) -> None:
        self.stop()
        if self.port == 0:
            with socket.socket() as sock:  # the port is kept from then on
                sock.bind(("127.0.0.1", 0))
                self.port = sock.getsockname()[1]
        self.controller = Controller(
            self.handler, hostname="127.0.0.1", port=self.port, ready_timeout=10.0
        )
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None
        if self.hole is not None:
            self.hole.close()
            self.hole = None

    def hang(self) -> None:
        """Take connections on the port and never say a word (a hung server)."""
        self.stop()
        self.hole = socket.socket()
        self.hole.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.hole.bind(("127.0.0.1", self.port))
        self.hole.listen(64)


class _Server(ThreadingHTTPServer):
    """A server whose client may be killed mid-request: that is no error here."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _receiver(peers: Peers) -> ThreadingHTTPServer:
    verifier = Webhook(SECRET)

    class Hook(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                payload = verifier.verify(body, headers)
            except WebhookVerificationError:
                with peers.lock:
                    peers.bad_signatures += 1
                self._answer(400, {})
                return
            status, extra = peers.hook_mode
            self._answer(status, extra)
            if 200 <= status < 300:
                title = str((payload.get("story") or {}).get("title") or payload.get("type"))
                peers.accepted("webhook", Receipt(headers["webhook-id"], time.time(), title))
            else:
                with peers.lock:
                    peers.refused[str(status)] += 1

        def _answer(self, status: int, extra: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.flush()
            self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = _Server(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# ---------------------------------------------------------------------------------------
# The daemon


class Daemon:
    """`monitor run` in a child process, started again after each kill; a log per start."""

    def __init__(self, config: Path, db: Path, folder: Path) -> None:
        self.config, self.db, self.folder = config, db, folder
        self.process: subprocess.Popen[bytes] | None = None
        self.lock = threading.Lock()
        self.starts = 0
        self.kills: list[tuple[float, str]] = []  # (time.time(), why)
        self.deaths: list[str] = []  # exits nobody asked for
        self.terms: list[tuple[int | None, float]] = []  # SIGTERMs: exit status, seconds

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "MONITOR_DB": str(self.db),
            "MONITOR_WEBHOOK_SECRET": SECRET,
            "PYTHONPATH": str(ROOT),
        }

    def start(self) -> None:
        self.starts += 1
        log = (self.folder / f"run-{self.starts}.log").open("wb")
        cmd = [sys.executable, "-m", "monitor", "--config", str(self.config), "run"]
        with self.lock:
            self.process = subprocess.Popen(
                cmd, env=self.env(), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
            )
        log.close()

    def alive(self) -> bool:
        with self.lock:
            return self.process is not None and self.process.poll() is None

    def kill(self, why: str) -> bool:
        with self.lock:
            if self.process is None or self.process.poll() is not None:
                return False
            self.process.send_signal(signal.SIGKILL)
            self.kills.append((time.time(), why))
            self.process.wait(timeout=30)
            self.process = None
            return True

    def check(self) -> None:
        """Note a daemon that exited though nobody killed it (then start it again)."""
        with self.lock:
            process = self.process
        if process is not None and process.poll() is not None:
            self.deaths.append(f"start {self.starts} exited with {process.returncode}")
            with self.lock:
                self.process = None

    def terminate(self) -> int | None:
        with self.lock:
            process = self.process
        if process is None or process.poll() is not None:
            return None
        process.send_signal(signal.SIGTERM)
        try:
            code: int | None = process.wait(timeout=STOP)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
            code = None
        with self.lock:
            self.process = None
        return code

    def logs(self) -> list[tuple[int, str]]:
        out = []
        for n in range(1, self.starts + 1):
            text = (self.folder / f"run-{n}.log").read_text(errors="replace")
            out += [(n, line) for line in text.splitlines()]
        return out


def _config(folder: Path, feeds: int, feed_port: int, smtp_port: int, hook_url: str) -> Path:
    lines = [
        '[polling]\ninterval = "3s"\ntick = "1s"\njitter = 0.0\n',
        f'[[topics]]\nname = "durability"\nseeds = ["{ROOT / "seeds"}"]\nalert_budget = 1000\n',
        '[alerts]\ndeliver_every = "2s"\nretry_base = "1s"\nretry_max = "6s"\nmax_attempts = 100\n',
        f'[alerts.email]\nhost = "127.0.0.1"\nport = {smtp_port}\ntimeout = "5s"\n'
        'sender = "monitor@durability.example"\nrecipients = ["reader@durability.example"]\n',
        f'[[alerts.webhooks]]\nurl = "{hook_url}"\nsecret_env = "MONITOR_WEBHOOK_SECRET"\n'
        'timeout = "5s"\n',
    ]
    lines += [
        f'[[feeds]]\nurl = "http://127.0.0.1:{feed_port}/feeds/{n}.xml"\n' for n in range(feeds)
    ]
    path = folder / "durability.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _query(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute(sql, params).fetchall()
    except sqlite3.Error:
        return []


# ---------------------------------------------------------------------------------------
# The schedule


@dataclass(order=True)
class Event:
    at: float  # seconds from the start
    what: str
    arg: Any = field(default=None, compare=False)


def _schedule(
    rng: random.Random, items: int, seconds: float, kills: int, terms: int
) -> list[Event]:
    """Reveals, kills and outages, in the order they happen."""
    events = []
    steps = max(1, round(seconds / 4.5))
    cuts = [*sorted(rng.sample(range(1, items), min(steps - 1, items - 1))), items]
    for n, cut in enumerate(cuts):
        events.append(Event(seconds * n / len(cuts) + rng.uniform(0, 1.5), "reveal", cut))
    for n in range(kills):
        at = rng.uniform(10, seconds * 0.95)
        if n % 2 == 0:
            events.append(Event(at, "kill"))
        else:  # kill right after the next receipt on a channel
            events.append(Event(at, "arm", "email" if n % 4 == 1 else "webhook"))
    events += [Event(rng.uniform(10, seconds * 0.95), "term") for _ in range(terms)]
    smtp = rng.uniform(0.15, 0.35) * seconds
    events += [Event(smtp, "smtp down"), Event(smtp + 25, "smtp up")]
    hung = rng.uniform(0.82, 0.9) * seconds
    events += [Event(hung, "smtp hangs"), Event(hung + 15, "smtp up")]
    outage = rng.uniform(0.45, 0.6) * seconds
    events += [Event(outage, "hook", (503, {})), Event(outage + 20, "hook", (204, {}))]
    busy = rng.uniform(0.7, 0.8) * seconds
    events += [
        Event(busy, "hook", (429, {"Retry-After": "4"})),
        Event(busy + 10, "hook", (204, {})),
    ]
    return sorted(events)


# ---------------------------------------------------------------------------------------
# The report


def _duplicates(
    receipts: list[Receipt], kills: list[tuple[float, str]], recorded: dict[str, int]
) -> tuple[dict[str, int], dict[str, int]]:
    """Alert ID → duplicate receipts explained by a kill, and → those not explained.

    A repeat is explained when a kill fell between it and the receipt before it, and the
    database recorded one confirmation fewer than there were receipts per such kill (the
    kill took the record of the first send with it).
    """
    by_id: dict[str, list[float]] = {}
    for receipt in receipts:
        by_id.setdefault(receipt.alert_id, []).append(receipt.at)
    explained, unexplained = {}, {}
    for alert_id, times in by_id.items():
        if len(times) < 2:
            continue
        times.sort()
        gaps = sum(1 for a, b in itertools.pairwise(times) if any(a <= k <= b for k, _ in kills))
        unrecorded = len(times) - recorded.get(alert_id, 0)
        ok = min(len(times) - 1, gaps, unrecorded)
        if ok:
            explained[alert_id] = ok
        if len(times) - 1 - ok:
            unexplained[alert_id] = len(times) - 1 - ok
    return explained, unexplained


def _alerted(db: Path, urls: dict[str, str]) -> dict[str, str]:
    """Stream item → its development alert's ID, for the development alerts in ``db``."""
    rows = _query(
        db,
        "SELECT s.url, a.id FROM alerts a JOIN stories s ON s.id = a.story_id "
        "WHERE a.kind = 'development'",
    )
    return {urls.get(url, url): alert_id for url, alert_id in rows}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("labels", nargs="?", type=Path, default=SHARED / "dev")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=200.0, help="time to reveal all items")
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--terms", type=int, default=2, help="restarts by SIGTERM")
    parser.add_argument("--keep", type=Path, help="keep the database and the logs here")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from monitor.render import message_id

    stream = args.labels / "stream.jsonl"
    items = [json.loads(line) for line in stream.read_text(encoding="utf-8").splitlines() if line]
    _Feeds.outlets = _outlets(items)
    _Feeds.order = {item["id"]: n for n, item in enumerate(items)}
    _Feeds.revealed = 0
    feeds = _Server(("127.0.0.1", 0), _Feeds)
    threading.Thread(target=feeds.serve_forever, daemon=True).start()
    peers = Peers()
    ids: dict[str, str] = {}
    smtp = SmtpPeer(_Sink(peers, ids))
    hooks = _receiver(peers)
    hook_url = f"http://127.0.0.1:{hooks.server_address[1]}/hook"
    rng = random.Random(args.seed)
    events = _schedule(rng, len(items), args.seconds, args.kills, args.terms)
    print(
        f"{len(items)} items in {len(_Feeds.outlets)} feeds, revealed over {args.seconds:g} s; "
        f"seed {args.seed}: "
        + ", ".join(f"{e.what} at {e.at:.0f}s" for e in events if e.what != "reveal")
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for old in [*folder.glob("durability.db*"), *folder.glob("replay.db*")]:
            old.unlink()
        config = _config(folder, len(_Feeds.outlets), feeds.server_address[1], smtp.port, hook_url)
        db = folder / "durability.db"
        daemon = Daemon(config, db, folder)
        code: int | None = None
        try:
            code = _drive(daemon, events, peers, smtp, db, len(items), rng, ids, message_id)
        finally:
            if daemon.alive():
                daemon.kill("left running at the end")
            smtp.stop()
            feeds.shutdown()
            hooks.shutdown()
        failures = _report(daemon, peers, db, code, items, ids, message_id)
        replayed = folder / "replay.db"
        _monitor(config, replayed, "replay", str(stream), env={"MONITOR_WEBHOOK_SECRET": SECRET})
        _compare(db, replayed, items)
    if failures:
        print("\nFAILED: " + "; ".join(failures))
        return 1
    print("\nOK")
    return 0


def _drive(
    daemon: Daemon,
    events: list[Event],
    peers: Peers,
    smtp: SmtpPeer,
    db: Path,
    total: int,
    rng: random.Random,
    ids: dict[str, str],
    message_id: Any,
) -> int | None:
    """Play the schedule, restart the daemon after each kill, wait for the drain, SIGTERM."""
    started = time.monotonic()
    restart_at: float | None = 0.0
    pending = list(events)
    last_reveal = max(e.at for e in events if e.what == "reveal")

    def remember_ids() -> None:
        for (alert_id,) in _query(db, "SELECT id FROM alerts"):
            ids.setdefault(message_id(alert_id), alert_id)

    def armed_kill(why: str) -> None:
        if daemon.kill(why):
            print(f"  {time.monotonic() - started:6.1f}s  SIGKILL {why}")

    while pending or restart_at is not None:
        now = time.monotonic() - started
        remember_ids()
        daemon.check()
        if restart_at is not None and now >= restart_at and not daemon.alive():
            daemon.start()
            restart_at = None
        if not daemon.alive() and restart_at is None:
            restart_at = now + rng.uniform(0.5, 3.0)
            print(f"  {now:6.1f}s  daemon down; restart in {restart_at - now:.1f}s")
        while pending and pending[0].at <= now:
            event = pending.pop(0)
            if event.what in ("kill", "term") and not daemon.alive():
                pending.append(Event(now + 0.5, event.what))  # once it is back
                pending.sort()
                continue
            if event.what == "reveal":
                _Feeds.revealed = event.arg
            elif event.what == "kill":
                daemon.kill("at a random moment")
                print(f"  {now:6.1f}s  SIGKILL at a random moment")
            elif event.what == "arm":
                with peers.lock:
                    peers.kill_next, peers.kill_on = armed_kill, event.arg
                print(f"  {now:6.1f}s  armed: SIGKILL after the next {event.arg} receipt")
            elif event.what == "term":
                began = time.monotonic()
                code = daemon.terminate()
                took = time.monotonic() - began
                print(f"  {now:6.1f}s  SIGTERM: exit {code} after {took:.1f}s")
                daemon.terms.append((code, took))
            elif event.what == "smtp hangs":
                smtp.hang()
                print(f"  {now:6.1f}s  SMTP server hangs")
            elif event.what == "smtp down":
                smtp.stop()
                print(f"  {now:6.1f}s  SMTP server down")
            elif event.what == "smtp up":
                smtp.start()
                print(f"  {now:6.1f}s  SMTP server up")
            elif event.what == "hook":
                peers.hook_mode = event.arg
                print(f"  {now:6.1f}s  webhook receiver answers {event.arg[0]}")
        time.sleep(0.05)
    with peers.lock:
        if peers.kill_next is not None:
            print("  (an armed kill found no receipt before the end)")
        peers.kill_next = None
    print(
        f"  {time.monotonic() - started:6.1f}s  all {total} items revealed; waiting for the drain"
    )

    def drained() -> bool:
        decided = _query(db, "SELECT count(DISTINCT story_id) FROM decisions")
        busy = _query(
            db,
            "SELECT count(*) FROM alerts a WHERE a.status = 'pending' OR EXISTS "
            "(SELECT 1 FROM deliveries d WHERE d.alert_id = a.id AND d.status = 'pending')",
        )
        return bool(decided and decided[0][0] >= total and busy and busy[0][0] == 0)

    deadline = time.monotonic() + DRAIN
    while time.monotonic() < deadline and not drained():
        daemon.check()
        if not daemon.alive():
            daemon.start()
        time.sleep(0.5)
    remember_ids()
    print(
        f"  {time.monotonic() - started:6.1f}s  "
        f"{'drained' if drained() else 'NOT drained'} ({last_reveal:.0f}s was the last reveal)"
    )
    time.sleep(2.5)  # a last delivery run, had one been racing the check
    code = daemon.terminate()
    remember_ids()
    print(f"  {time.monotonic() - started:6.1f}s  SIGTERM: exit {code}")
    return code


def _report(
    daemon: Daemon,
    peers: Peers,
    db: Path,
    code: int | None,
    items: list[dict[str, Any]],
    ids: dict[str, str],
    message_id: Any,
) -> list[str]:
    failures: list[str] = []
    alerts = dict(_query(db, "SELECT id, kind FROM alerts"))
    developments = [a for a, kind in alerts.items() if kind == "development"]
    states = Counter(
        status for (status,) in _query(db, "SELECT status FROM alerts WHERE kind = 'development'")
    )
    print(f"\n{daemon.starts} starts, {len(daemon.kills)} kills:")
    for at, why in daemon.kills:
        print(f"  {time.strftime('%H:%M:%S', time.localtime(at))} {why}")
    print(
        f"\nalerts: {len(developments)} development ("
        + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        + f"), {len(alerts) - len(developments)} of other kinds "
        + str(dict(Counter(k for k in alerts.values() if k != "development")))
    )
    for channel, status, n in _query(
        db,
        "SELECT d.channel, d.status, count(*) FROM deliveries d JOIN alerts a ON a.id = d.alert_id"
        " WHERE a.kind = 'development' GROUP BY 1, 2 ORDER BY 1, 2",
    ):
        print(f"  deliveries {channel:28} {status:10} {n}")
    stuck = sum(n for s, n in states.items() if s != "delivered")
    if stuck:
        failures.append(f"{stuck} development alerts not delivered")
    print(
        f"webhook answers other than 2xx: {dict(peers.refused)}; "
        f"bad signatures: {peers.bad_signatures}"
    )
    if peers.bad_signatures:
        failures.append(f"{peers.bad_signatures} webhooks failed the signature check")
    for channel, receipts in (("email", peers.email), ("webhook", peers.webhook)):
        prefix = "email" if channel == "email" else "webhook:"
        recorded = Counter(
            alert_id
            for (alert_id,) in _query(
                db,
                "SELECT alert_id FROM delivery_attempts WHERE outcome = 'delivered' "
                "AND substr(channel, 1, ?) = ?",
                (len(prefix), prefix),
            )
        )
        got = {r.alert_id for r in receipts}
        explained, unexplained = _duplicates(receipts, daemon.kills, recorded)
        lost = [a for a in developments if a not in got]
        unknown = sorted(got - set(alerts))
        print(
            f"{channel:8} received {len(receipts)}, distinct {len(got)}, "
            f"duplicates {sum(explained.values())} explained by a kill between send and record"
            f" + {sum(unexplained.values())} unexplained, LOST {len(lost)}, "
            f"unknown ids {len(unknown)}, other kinds "
            f"{sum(1 for a in got if a in alerts and alerts[a] != 'development')}"
        )
        for alert_id, n in sorted(explained.items()):
            print(f"    duplicate (explained) {alert_id} x{n + 1}")
        for alert_id, n in sorted(unexplained.items()):
            print(f"    duplicate (UNEXPLAINED) {alert_id} x{n + 1}, {recorded[alert_id]} recorded")
            failures.append(f"{channel}: unexplained duplicate {alert_id}")
        for alert_id in lost:
            print(f"    LOST {alert_id}")
        if lost:
            failures.append(f"{channel}: {len(lost)} lost")
        if unknown:
            failures.append(f"{channel}: {len(unknown)} unknown ids")
    lines = daemon.logs()
    tracebacks = [(n, line) for n, line in lines if "Traceback" in line]
    errors = [(n, line) for n, line in lines if " ERROR " in line or "CRITICAL" in line]
    print(f"daemon logs: {len(tracebacks)} tracebacks, {len(errors)} ERROR lines")
    for n, line in (tracebacks + errors)[:20]:
        print(f"    [start {n}] {line[:200]}")
    if tracebacks:
        failures.append(f"{len(tracebacks)} tracebacks in the daemon's log")
    if daemon.deaths:
        failures.append("the daemon died by itself: " + "; ".join(daemon.deaths))
    if code != 0:
        failures.append(f"SIGTERM: the daemon exited with {code}")
    bad = [c for c, _ in daemon.terms if c != 0]
    if bad:
        failures.append(f"SIGTERM during the run: exit {bad}")
    return failures


def _compare(polled: Path, replayed: Path, items: list[dict[str, Any]]) -> None:
    urls = {item["url"]: item["id"] for item in items}
    labels = {item["id"]: item for item in items}
    live, replay = _alerted(polled, urls), _alerted(replayed, urls)

    def developments(alerted: dict[str, str]) -> set[str]:
        return {labels[i]["development"] for i in alerted if i in labels} - {None}

    print(
        f"\nalerted items: daemon {len(live)}, replay {len(replay)}, "
        f"both {len(set(live) & set(replay))};"
        f" labelled developments alerted: daemon {len(developments(live))}, replay "
        f"{len(developments(replay))}"
    )
    for name, one, other in (("daemon only", live, replay), ("replay only", replay, live)):
        for item_id in sorted(set(one) - set(other)):
            label = labels.get(item_id, {})
            print(
                f"  {name:12} {item_id} [g{label.get('grade')} {label.get('development') or '-'}]"
                f" {str(label.get('title', ''))[:60]}"
            )


if __name__ == "__main__":
    sys.exit(main())
