"""The command line: every command documented, user errors exit 2 in one line, list --json."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from xml.etree import ElementTree

import click
import pytest

from monitor import __version__
from monitor.cli import EXPORT_FIELDS, main
from tests.feedserver import FeedServer, Reply
from tests.peers import Reply as HookReply
from tests.peers import SmtpPeer, WebhookReceiver

ROOT = Path(__file__).resolve().parents[1]
REPLAY = ROOT / "tests/data/eval2/stream.jsonl"


def commands(group: click.Group, prefix: str = "") -> list[str]:
    found = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += commands(command, f"{prefix}{name} ")
        else:
            found.append(f"{prefix}{name}")
    return found


def test_every_command_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("| command | does |") : readme.index("### Export format")]
    for name in commands(main):
        group, _, sub = name.partition(" ")
        assert f"`{group}" in table, f"`monitor {name}` is not in the README's command table"
        if sub:
            assert sub in table, f"`monitor {name}` is not in the README's command table"
    for name in commands(main):
        assert main.get_command(click.Context(main), name.split()[0]).help, name


def run(tmp_path: Path, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    config = config or tmp_path / "monitor.toml"
    if not config.exists():
        config.write_text(
            f'[[topics]]\nname = "valdoria"\nseeds = ["{ROOT / "tests/data/eval2/seeds"}"]\n'
        )
    return subprocess.run(
        [sys.executable, "-m", "monitor", "--config", str(config), *args],
        env={**os.environ, "MONITOR_DB": str(tmp_path / "cli.db")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("cli")
    done = run(tmp_path, "replay", str(REPLAY))
    assert done.returncode == 0, done.stderr
    assert "replayed" in done.stdout
    return tmp_path


def test_export_jsonl_and_csv(replayed: Path) -> None:
    lines = run(replayed, "export", "--format", "jsonl").stdout.splitlines()
    rows = [json.loads(line) for line in lines]
    items = REPLAY.read_text().splitlines()
    assert len(rows) == len(items)
    assert all(tuple(row) == EXPORT_FIELDS for row in rows)
    assert {row["status"] for row in rows} <= {"development", "coverage", "duplicate", "unrelated"}
    assert {row["url"] for row in rows} == {json.loads(item)["url"] for item in items}
    table = list(csv.DictReader(io.StringIO(run(replayed, "export", "--format", "csv").stdout)))
    assert [row["id"] for row in table] == [row["id"] for row in rows]
    since = run(replayed, "export", "--since", "2026-01-01").stdout.splitlines()
    assert 0 < len(since) < len(rows)
    assert all(json.loads(line)["published"] >= "2026-01-01" for line in since)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("explain", "s_nope"), "no story with ID or URL 's_nope'"),
        (("feedback", "s_nope", "irrelevant"), "s_nope"),
        (("export", "--topic", "nope"), "no topic named 'nope'"),
        (("export", "--since", "yesterday"), "--since: 'yesterday' is not an ISO 8601 date"),
        (("export", "--since", "0001-01-01T00:00:00+05:00"), "is out of range in UTC"),
        (("export", "--since", "9999-12-31T23:00:00-05:00"), "is out of range in UTC"),
        (("feeds", "remove", "99"), "no feed with ID or URL '99'"),
        (("feeds", "remove", "²"), "no feed with ID or URL '²'"),  # (isdigit, not int())
        (("feeds", "enable", "9" * 20), "no feed with ID or URL '99999"),  # (not an SQLite int)
        (("feeds", "add", "ftp://x.example/"), "is not an http(s) URL"),
        (("feeds", "add", "http://x.example:99999/"), "(its port must be 1 to 65535)"),
        (("feeds", "add", "https://x.example/", "--interval", "0"), "--interval: 0.0 must be"),
        (("feeds", "add", "https://x.example/", "--interval", ""), "--interval: "),
        (("feeds", "import", "/nonexistent.opml"), "/nonexistent.opml: cannot be read: No such"),
        (("feeds", "import", str(REPLAY)), f"{REPLAY}: no feeds in it; expected OPML"),
        (("alerts", "show", "a_nope"), "a_nope"),
        (("replay", "/nonexistent.jsonl"), "cannot read the replay file"),
    ],
)
def test_user_errors_exit_2_with_one_line(
    replayed: Path, args: tuple[str, ...], message: str
) -> None:
    done = run(replayed, *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args", [("status",), ("export",), ("alerts", "list"), ("explain", "s_1"), ("feeds", "list")]
)
def test_reading_commands_do_not_create_a_database(tmp_path: Path, args: tuple[str, ...]) -> None:
    """A mistyped MONITOR_DB must not show an empty monitor (and leave a new file there)."""
    done = run(tmp_path, *args)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{tmp_path / 'cli.db'}: no database here yet" in done.stderr
    assert not (tmp_path / "cli.db").exists()


def test_the_program_exits_at_once_with_everything_written(replayed: Path) -> None:
    """`monitor` ends with os._exit (`cli.entry`): the database must be whole and closed
    and the output complete by then."""
    db = sqlite3.connect(replayed / "cli.db")
    try:
        (indexed, last) = db.execute(
            "SELECT indexed_upto, (SELECT max(rowid) FROM stories) FROM stories_fts_state"
        ).fetchone()
        assert indexed == last > 0  # the last full-text batch was written on close
        assert db.execute("SELECT df FROM term_frequencies WHERE term = ''").fetchone()[0] > 0
    finally:
        db.close()
    assert not (replayed / "cli.db-wal").exists()  # closed: the log was copied back
    version = run(replayed, "--version")
    assert version.returncode == 0 and __version__ in version.stdout


def test_a_reader_that_stops_early_gets_no_traceback(replayed: Path) -> None:
    config = replayed / "monitor.toml"
    process = subprocess.Popen(
        [sys.executable, "-m", "monitor", "--config", str(config), "export"],
        env={**os.environ, "MONITOR_DB": str(replayed / "cli.db")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    fcntl.fcntl(process.stdout.fileno(), 1031, 4096)  # F_SETPIPE_SZ: less than the export
    assert json.loads(process.stdout.readline())["id"]
    process.stdout.close()  # like `monitor export | head -1`
    error = process.stderr.read().decode()
    assert process.wait(timeout=60) == 1  # what click answers to a broken pipe
    assert "Traceback" not in error


def test_bad_replay_line_names_file_and_line(tmp_path: Path) -> None:
    archive = tmp_path / "bad.jsonl"
    archive.write_text(
        '{"url": "https://a.example/1", "title": "A", "published": "2026-01-01T00:00:00Z"}\n'
        '{"url": "https://a.example/2", "title": "B"}\n'
    )
    done = run(tmp_path, "replay", str(archive))
    assert done.returncode == 2
    assert f"{archive}:2:" in done.stderr and '"published" is missing' in done.stderr


def test_replayed_posts_of_one_live_page_are_each_stored_and_judged(tmp_path: Path) -> None:
    """Archived items differing only by their link's fragment (a live page's posts) were
    merged into the first: the others were skipped as seen."""
    archive = tmp_path / "live.jsonl"
    archive.write_text(
        "".join(
            json.dumps(
                {
                    "url": f"https://g.example/live/port#block-{n}",
                    "title": title,
                    "summary": summary,
                    "published": f"2026-01-01T0{n}:00:00Z",
                }
            )
            + "\n"
            for n, title, summary in (
                (1, "Ferry crews walk out", "Ferry crews stopped work at dawn over pay."),
                (2, "Harbour fire put out", "Firefighters put out a blaze in a warehouse."),
            )
        )
    )
    assert run(tmp_path, "replay", str(archive)).returncode == 0
    rows = [json.loads(line) for line in run(tmp_path, "export").stdout.splitlines()]
    assert [(r["title"], r["url"], r["duplicate_of"]) for r in rows] == [
        ("Ferry crews walk out", "https://g.example/live/port#block-1", None),
        ("Harbour fire put out", "https://g.example/live/port#block-2", None),
    ]


def test_the_delivery_summary_is_one_plain_line(
    tmp_path: Path, webhook_receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It read "delivery: deliveries: 0 delivered, ...", the word twice."""
    monkeypatch.setenv("MONITOR_TEST_HOOK_SECRET", "not so secret")
    config = tmp_path / "monitor.toml"
    config.write_text(
        f'[[topics]]\nname = "valdoria"\nseeds = ["{ROOT / "tests/data/eval2/seeds"}"]\n'
        f'[[alerts.webhooks]]\nurl = "{webhook_receiver.url}"\n'
        'secret_env = "MONITOR_TEST_HOOK_SECRET"\n'
    )
    archive = tmp_path / "one.jsonl"
    item = {"url": "https://g.example/a", "title": "Ferry crews walk out"}
    archive.write_text(json.dumps({**item, "published": "2026-01-01T00:00:00Z"}) + "\n")
    done = run(tmp_path, "replay", str(archive), "--deliver", config=config)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "deliveries: 0 delivered, 0 to retry, 0 failed"


def test_a_report_that_cannot_be_written_is_one_line_naming_it(replayed: Path) -> None:
    for output, reason in (
        (replayed / "monitor.toml" / "x.html", f"{replayed / 'monitor.toml'} is a file"),
        (replayed / ("x" * 300 + ".html"), "File name too long"),
    ):
        done = run(replayed, "report", "--topic", "valdoria", "--output", str(output))
        assert done.returncode == 2
        assert done.stderr.strip() == f"monitor: {output}: cannot write the report: {reason}"


def test_feeds_commands(replayed: Path) -> None:
    assert (
        run(
            replayed,
            "feeds",
            "add",
            "https://news.example/rss",
            "--name",
            "Example",
            "--interval",
            "30m",
        ).returncode
        == 0
    )
    feeds = json.loads(run(replayed, "feeds", "list", "--json").stdout)
    assert [(f["name"], f["url"], f["enabled"]) for f in feeds] == [
        ("Example", "https://news.example/rss", True)
    ]
    assert run(replayed, "feeds", "disable", "https://news.example/rss").returncode == 0
    assert json.loads(run(replayed, "feeds", "list", "--json").stdout)[0]["enabled"] is False
    assert run(replayed, "feeds", "enable", str(feeds[0]["id"])).returncode == 0
    assert json.loads(run(replayed, "feeds", "list", "--json").stdout)[0]["enabled"] is True
    again = run(replayed, "feeds", "add", "https://news.example/rss")
    assert again.returncode == 2 and "already" in again.stderr
    assert run(replayed, "feeds", "remove", str(feeds[0]["id"])).returncode == 0
    assert json.loads(run(replayed, "feeds", "list", "--json").stdout) == []


# A feed reader's export as readers write them: folders, a feed in two folders, an "&" left
# unescaped (an XML parser refuses the file), an outline with no title, one that is no feed.
READER_OPML = """<?xml version="1.0" encoding="UTF-8"?>
<opml version="1.0"><head><title>Subscriptions</title></head><body>
<outline text="World" title="World">
  <outline type="rss" text="Steppe Wire" title="Steppe Wire" xmlUrl="https://steppe.example/rss"/>
  <outline type="rss" text="Listed" xmlUrl="https://listed.example/rss"/>
</outline>
<outline text="Asia">
  <outline type="rss" text="Steppe Wire" xmlUrl="https://steppe.example/rss"/>
  <outline type="rss" text="Kabul & Region" xmlUrl="https://kabul.example/feed?a=1&b=2"/>
  <outline type="rss" xmlUrl="https://untitled.example/atom.xml"/>
  <outline type="rss" text="Old" xmlUrl="ftp://old.example/feed"/>
</outline>
</body></opml>
"""


def test_feeds_import_an_opml_file_and_export_one(tmp_path: Path) -> None:
    config = tmp_path / "monitor.toml"
    config.write_text(
        f'[[topics]]\nname = "valdoria"\nseeds = ["{ROOT / "tests/data/eval2/seeds"}"]\n'
        '[[feeds]]\nurl = "https://listed.example/rss"\n'
    )
    opml = tmp_path / "subscriptions.opml"
    opml.write_text(READER_OPML)
    dry = run(tmp_path, "feeds", "import", str(opml), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert not (tmp_path / "cli.db").exists()  # a dry run writes nothing, not even a database
    assert dry.stdout.splitlines() == [
        'skipped: "ftp://old.example/feed" is not an http(s) URL',
        "would add: https://steppe.example/rss (Steppe Wire)",
        "already present: https://listed.example/rss (Listed)",
        "would add: https://kabul.example/feed?a=1&b=2 (Kabul & Region)",
        "would add: https://untitled.example/atom.xml",
        "would add 3 of 5 feeds; 1 already present, 1 skipped",
    ]
    done = run(tmp_path, "feeds", "import", str(opml), "--interval", "20m")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "added 3 of 5 feeds; 1 already present, 1 skipped"
    rows = sqlite3.connect(tmp_path / "cli.db").execute(
        "SELECT url, name, interval_s, enabled, from_config FROM feeds ORDER BY id"
    )
    assert rows.fetchall() == [
        ("https://listed.example/rss", None, None, 1, 1),
        ("https://steppe.example/rss", "Steppe Wire", 1200.0, 1, 0),
        ("https://kabul.example/feed?a=1&b=2", "Kabul & Region", 1200.0, 1, 0),
        ("https://untitled.example/atom.xml", None, 1200.0, 1, 0),
    ]
    again = run(tmp_path, "feeds", "import", str(opml))
    assert again.stdout.splitlines()[-1] == "added 0 of 5 feeds; 4 already present, 1 skipped"

    exported = run(tmp_path, "feeds", "export")
    assert exported.returncode == 0, exported.stderr
    outlines = ElementTree.fromstring(exported.stdout).findall("./body/outline")
    assert [(o.get("xmlUrl"), o.get("text")) for o in outlines] == [
        ("https://listed.example/rss", "https://listed.example/rss"),
        ("https://steppe.example/rss", "Steppe Wire"),
        ("https://kabul.example/feed?a=1&b=2", "Kabul & Region"),
        ("https://untitled.example/atom.xml", "https://untitled.example/atom.xml"),
    ]
    # ... which another monitor imports as the same feeds, names and all
    other = tmp_path / "other"
    other.mkdir()
    (other / "list.opml").write_text(exported.stdout)
    assert run(other, "feeds", "import", str(other / "list.opml")).returncode == 0
    copied = sqlite3.connect(other / "cli.db").execute("SELECT url, name FROM feeds ORDER BY id")
    assert copied.fetchall() == [
        ("https://listed.example/rss", None),
        ("https://steppe.example/rss", "Steppe Wire"),
        ("https://kabul.example/feed?a=1&b=2", "Kabul & Region"),
        ("https://untitled.example/atom.xml", None),
    ]


def test_an_exported_name_with_control_characters_is_still_xml() -> None:
    """A feed's name may hold what a terminal or a feed put there (ESC, U+0001): written as
    given, the OPML was no XML any reader could open."""
    from monitor.opml import write_opml

    text = write_opml([("https://a.example/rss", "Wire\x01 \x1b[31mDesk")], datetime.now(UTC))
    (outline,) = ElementTree.fromstring(text).findall("./body/outline")
    assert outline.get("text") == "Wire [31mDesk"


def test_feeds_import_refuses_a_file_too_large_to_be_a_subscription_list(tmp_path: Path) -> None:
    huge = tmp_path / "huge.opml"
    huge.write_bytes(READER_OPML.encode() + b" " * (10 * 1024 * 1024))
    done = run(tmp_path, "feeds", "import", str(huge))
    assert done.returncode == 2 and not (tmp_path / "cli.db").exists()
    assert done.stderr.strip().endswith("more than a subscription list's 10 MB: not imported")


def test_a_feed_the_config_lists_is_not_removed_but_named_back_to_the_config(
    tmp_path: Path,
) -> None:
    """Removing a config feed from the database lasted until the next command, which synced
    the config and added it again: it is refused, naming the file and `feeds disable`."""
    config = tmp_path / "monitor.toml"
    config.write_text(
        f'[[topics]]\nname = "valdoria"\nseeds = ["{ROOT / "tests/data/eval2/seeds"}"]\n'
        '[[feeds]]\nurl = "https://listed.example/rss"\n'
    )
    assert run(tmp_path, "feeds", "add", "https://added.example/rss").returncode == 0
    feeds = json.loads(run(tmp_path, "feeds", "list", "--json").stdout)
    ids = {f["url"]: f["id"] for f in feeds}
    refused = run(tmp_path, "feeds", "remove", "https://listed.example/rss")
    assert refused.returncode == 2
    number = ids["https://listed.example/rss"]
    assert refused.stderr.strip() == (
        f"monitor: feed {number} (https://listed.example/rss) is listed in {config}: remove "
        f"it there, or `monitor feeds disable {number}` to stop polling it"
    )
    removed = run(tmp_path, "feeds", "remove", str(ids["https://added.example/rss"]))
    assert removed.returncode == 0
    left = json.loads(run(tmp_path, "feeds", "list", "--json").stdout)
    assert [f["url"] for f in left] == ["https://listed.example/rss"]
    config.write_text(
        f'[[topics]]\nname = "valdoria"\nseeds = ["{ROOT / "tests/data/eval2/seeds"}"]\n'
    )  # taken out of the config: now it may go
    assert run(tmp_path, "feeds", "remove", "https://listed.example/rss").returncode == 0
    assert json.loads(run(tmp_path, "feeds", "list", "--json").stdout) == []


def test_status_and_alerts_list(replayed: Path) -> None:
    status = json.loads(run(replayed, "status", "--json").stdout)
    decisions = status["decisions"]["valdoria"]
    assert sum(decisions.values()) == len(REPLAY.read_text().splitlines())
    assert status["alerts"]["pending"] == decisions.get("development", 0)
    alerts = json.loads(run(replayed, "alerts", "list", "--json").stdout)
    assert len(alerts) == decisions.get("development", 0)
    assert status["stories"] == {"total": sum(decisions.values()), "text_cleared": 0}
    assert status["retention_s"] == 180 * 86400 and status["database_bytes"] > 100_000
    text = run(replayed, "status").stdout
    assert "Decisions" in text and "valdoria" in text
    assert f"stories {sum(decisions.values()):,}, text cleared for 0" in text


def _feed_cells(text: str, url: str) -> list[str]:
    """The cells of the feeds table's row for ``url``, as printed to a pipe."""
    row = next(line for line in text.splitlines() if url in line)
    return [cell.strip() for cell in row.split("│")[1:-1]]


def test_a_feed_waiting_for_its_first_poll_shows_it_is_due_now(tmp_path: Path) -> None:
    """A feed never polled, or enabled again, is taken at the next tick, but its "next due"
    showed "-", as if it were not due at all."""
    url = "https://news.example/rss"
    assert run(tmp_path, "feeds", "add", url).returncode == 0
    for args in (("feeds", "list"), ("status",)):
        assert _feed_cells(run(tmp_path, *args).stdout, url)[6] == "now"
    assert run(tmp_path, "feeds", "disable", url).returncode == 0
    assert _feed_cells(run(tmp_path, "feeds", "list").stdout, url)[6] == "disabled by user"
    assert run(tmp_path, "feeds", "enable", url).returncode == 0
    assert _feed_cells(run(tmp_path, "feeds", "list").stdout, url)[6] == "now"


def test_status_names_a_channel_that_failed_when_another_delivered(
    tmp_path: Path,
    smtp_server: SmtpPeer,
    webhook_receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An alert is delivered once one channel confirms it: with the email sent and the
    webhook refused for good, status counted every alert delivered and none failed."""
    webhook_receiver.default = HookReply(400)
    monkeypatch.setenv("MONITOR_TEST_HOOK_SECRET", "not so secret")
    config = tmp_path / "monitor.toml"
    config.write_text(
        f'[[topics]]\nname = "valdoria"\nseeds = ["{ROOT / "tests/data/eval2/seeds"}"]\n'
        f'[alerts.email]\nhost = "127.0.0.1"\nport = {smtp_server.port}\n'
        'recipients = ["me@example.org"]\n'
        f'[[alerts.webhooks]]\nurl = "{webhook_receiver.url}"\n'
        'secret_env = "MONITOR_TEST_HOOK_SECRET"\n'
    )
    done = run(tmp_path, "replay", str(REPLAY), "--deliver", config=config)
    assert done.returncode == 0, done.stderr
    alerts = json.loads(run(tmp_path, "alerts", "list", "--json", config=config).stdout)
    assert alerts and {a["status"] for a in alerts} == {"delivered"}
    assert len(smtp_server.received) == len(webhook_receiver.requests) == len(alerts)
    text = run(tmp_path, "status", config=config).stdout
    assert f"deliveries by channel: 0 pending, {len(alerts)} failed" in text
    # ... and `alerts list --status failed` lists them (it listed none: no alert "failed")
    listed = run(tmp_path, "alerts", "list", "--status", "failed", "--json", config=config)
    assert [a["id"] for a in json.loads(listed.stdout)] == [a["id"] for a in alerts]
    pending = run(tmp_path, "alerts", "list", "--status", "pending", "--json", config=config)
    assert json.loads(pending.stdout) == []


UNSET = "MONITOR_TEST_NEVER_SET_SECRET"


@pytest.mark.parametrize("args", [("poll",), ("replay", str(REPLAY), "--deliver")])
def test_a_channel_that_cannot_be_built_stops_the_command_before_any_work(
    tmp_path: Path, feed_server: FeedServer, args: tuple[str, ...]
) -> None:
    """An unset secret is a config error naming the file, reported before polling or
    replaying (it came after the whole poll, in place of its summary, without the file)."""
    assert UNSET not in os.environ
    feed_server.route(
        "/f.xml",
        Reply(
            200,
            "<rss version='2.0'><channel><title>x</title>"
            "<item><title>Hello</title><guid>1</guid></item></channel></rss>",
        ),
    )
    config = tmp_path / "monitor.toml"
    config.write_text(
        f'[[topics]]\nname = "valdoria"\nseeds = ["{ROOT / "tests/data/eval2/seeds"}"]\n'
        f'[[feeds]]\nurl = "{feed_server.url("/f.xml")}"\n'
        f'[[alerts.webhooks]]\nurl = "http://127.0.0.1:9/hook"\nsecret_env = "{UNSET}"\n'
    )
    done = run(tmp_path, *args, config=config)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.strip() == (
        f"monitor: {config}: alerts.webhooks[0].secret_env: the environment variable {UNSET} "
        f'is not set (the config names it in alerts.webhooks[0].secret_env = "{UNSET}")'
    )
    assert feed_server.requests_for("/f.xml") == []  # nothing was polled
    assert not (tmp_path / "cli.db").exists()  # nor replayed


def test_channel_errors_name_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "monitor.toml"
    config.write_text(
        f'[[topics]]\nname = "valdoria"\nseeds = ["{ROOT / "tests/data/eval2/seeds"}"]\n'
        '[alerts.email]\nhost = "localhost"\n'
    )
    for args in (("check",), ("alerts", "test"), ("run",)):
        done = run(tmp_path, *args, config=config)
        assert done.returncode == 2
        assert done.stderr.strip() == (
            f"monitor: {config}: alerts.email: at least one recipient is needed"
        )
