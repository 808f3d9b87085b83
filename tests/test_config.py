"""Settings: the default config works, every mistake names the file and key, README complete."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.config import (
    load_settings,
    parse_duration,
    settings_from_dict,
    settings_markdown,
)
from monitor.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_default_config_is_complete() -> None:
    settings = load_settings(ROOT / "config/monitor.toml")
    assert [topic.name for topic in settings.topics] == ["taliban-delisting"]
    assert settings.topics[0].seeds == (ROOT / "config/../seeds",)
    assert 15 <= len(settings.feeds) <= 30
    assert all(feed.name for feed in settings.feeds)
    assert settings.alerts.email is not None and settings.alerts.email.host == "localhost"
    assert settings.alerts.webhooks and "localhost" in settings.alerts.webhooks[0].url


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {
                "feeds": [
                    {"url": "https://a.example/"},
                    {"url": "https://b.example/", "interval": "15x"},
                ]
            },
            'feeds[1].interval: "15x" is not a duration',
        ),
        (
            {"feeds": [{"url": "ftp://a.example/"}]},
            'feeds[0].url: "ftp://a.example/" is not an http(s) URL',
        ),
        ({"polling": {"timeout": -3}}, "polling.timeout: -3 is not a duration"),
        (
            {"database": {"retention": "800000d"}},
            'database.retention: "800000d" is longer than 100 years',
        ),
        ({"database": {"dedupe_window": float("inf")}}, "database.dedupe_window: inf is longer"),
        ({"polling": {"interval": float("nan")}}, "polling.interval: nan is not a duration"),
        ({"polling": {"tiemout": "3s"}}, "polling.tiemout: unknown key"),
        ({"topics": [{"seeds": ["x"]}]}, "topics[0].name: missing"),
        (
            {"topics": [{"name": "a", "seeds": ["x"], "threshold": 2}]},
            "topics[0].threshold: 2.0 is not between 0 and 1",
        ),
        ({"topics": [{"name": "a", "seeds": ["x"], "digest": "every day"}]}, "topics[0].digest:"),
        (
            {"topics": [{"name": "a", "seeds": ["x"], "timezone": "Mars/Base"}]},
            "is not a known time zone",
        ),
        (
            {"alerts": {"email": {"security": "ssl"}}},
            'alerts.email.security: "ssl" is not one of "none", "starttls", "tls"',
        ),
        ({"alerts": {"email": {"port": "25"}}}, 'alerts.email.port: "25" is not an integer'),
        (
            {"feeds": [{"url": "https://a.example/"}, {"url": "https://a.example/"}]},
            'feeds[1].url: "https://a.example/" is listed twice',
        ),
        (
            {
                "feeds": [
                    {"url": "https://a.example/"},
                    {"url": "https://b.example/"},
                    {"url": "https://b.example/"},
                    {"url": "https://a.example/"},
                ]
            },
            'feeds[2].url: "https://b.example/" is listed twice',  # the first repeat
        ),
        (
            {"topics": [{"name": "a", "seeds": ["x"]}, {"name": "a", "seeds": ["y"]}]},
            'topics[1].name: "a" is used by two topics',
        ),
        ({"service": {"listen": "8080"}}, 'service.listen: "8080" is not "host:port"'),
        ({"service": {"listen": "127.0.0.1:65536"}}, '"127.0.0.1:65536" is not "host:port"'),
        # Values that passed and then failed at run time (found by an audit):
        (
            {"feeds": [{"url": "http://a.example:99999/rss"}]},
            'feeds[0].url: "http://a.example:99999/rss" is not an http(s) URL (its port must '
            "be 1 to 65535)",
        ),
        (
            {"alerts": {"webhooks": [{"url": "https://h.example:65536/x", "secret_env": "S"}]}},
            'alerts.webhooks[0].url: "https://h.example:65536/x" is not an http(s) URL (its port',
        ),
        ({"feeds": [{"url": "http://:8080/rss"}]}, 'feeds[0].url: "http://:8080/rss" is not an'),
        (
            {"polling": {"concurrency": 1_000_000_000}},
            "polling.concurrency: 1000000000 is not between 1 and 1000",
        ),
        ({"polling": {"concurrency": 0}}, "polling.concurrency: 0 is not between 1 and 1000"),
        ({"polling": {"max_redirects": -1}}, "polling.max_redirects: -1 is negative"),
        ({"alerts": {"email": {"port": 70000}}}, "alerts.email.port: 70000 is not between 1 and"),
        ({"alerts": {"email": {"port": -1}}}, "alerts.email.port: -1 is not between 1 and 65535"),
        (
            {"topics": [{"name": "a", "seeds": []}]},
            "topics[0].seeds: [] is empty (expected at least one)",
        ),
        ({"topics": [{"name": " ", "seeds": ["x"]}]}, 'topics[0].name: " " is blank'),
        (
            {"topics": [{"name": "a", "seeds": ["x"], "keywords": ["ban", ""]}]},
            'topics[0].keywords: "" is blank',
        ),
        (
            {"topics": [{"name": "a", "seeds": ["x"], "alert_budget": -1}]},
            "topics[0].alert_budget: -1 is negative",
        ),
        (
            {"alerts": {"email": {"recipients": ["me@example.org", "boss at example.org"]}}},
            'alerts.email.recipients: "boss at example.org" is not an email address',
        ),
        (
            {"alerts": {"email": {"sender": "Monitor <monitor.example.org>"}}},
            'alerts.email.sender: "Monitor <monitor.example.org>" is not an email address',
        ),
        ({"polling": {"max_bytes": 10**12}}, "polling.max_bytes: 1000000000000 is not between"),
        ({"polling": {"per_host": 5000}}, "polling.per_host: 5000 is not between 1 and 1000"),
        (  # [alerts.webhooks] written for [[alerts.webhooks]]: "... {'url': ...} is not a list"
            {"alerts": {"webhooks": {"url": "https://h.example/x", "secret_env": "S"}}},
            "alerts.webhooks: one table where a list of them goes: write [[alerts.webhooks]]",
        ),
        (
            {"topics": {"name": "a", "seeds": ["x"]}},
            "topics: one table where a list of them goes: write [[topics]]",
        ),
    ],
)
def test_errors_name_the_file_and_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_dict(raw, Path("/etc/monitor/monitor.toml"))
    assert str(caught.value).startswith("/etc/monitor/monitor.toml: ")
    assert message in str(caught.value)


def test_durations() -> None:
    assert parse_duration("90s") == 90
    assert parse_duration("15m") == 900
    assert parse_duration("2h") == 7200
    assert parse_duration(12) == 12
    for bad in ("15x", "", "m", True, -1, None):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_relative_paths_follow_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "conf" / "m.toml"
    config.parent.mkdir()
    config.write_text('[database]\npath = "db/x.db"\n[[topics]]\nname = "t"\nseeds = "s"\n')
    settings = load_settings(config)
    assert settings.database.path == config.parent / "db/x.db"
    assert settings.topics[0].seeds == (config.parent / "s",)


def test_the_default_database_path_follows_the_config_file_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A config without database.path put the database at "../data/monitor.db" from the
    working directory, wherever the config file was."""
    monkeypatch.delenv("MONITOR_DB", raising=False)
    config = tmp_path / "conf" / "m.toml"
    expected = config.parent / "../data/monitor.db"
    assert settings_from_dict({}, config).database_path == expected
    with_section = settings_from_dict({"database": {"retention": "30d"}}, config)
    assert with_section.database_path == expected


def test_monitor_db_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MONITOR_DB", str(tmp_path / "other.db"))
    settings = settings_from_dict({}, tmp_path / "m.toml")
    assert settings.database_path == tmp_path / "other.db"


def test_the_limits_keep_the_values_that_work() -> None:
    settings = settings_from_dict(
        {
            "polling": {"concurrency": 1000, "max_redirects": 0},
            "feeds": [{"url": "http://127.0.0.1:65535/rss"}, {"url": "https://[::1]/rss"}],
            "alerts": {
                "email": {
                    "port": 65535,
                    "sender": "Monitor <monitor@example.org>",
                    "recipients": ["Me <me@example.org>", "josé@bücher.de", "a@localhost"],
                },
                "retry_base": "2h",  # (longer than retry_max: every delay is retry_max)
            },
        },
        Path("m.toml"),
    )
    assert (settings.polling.concurrency, settings.polling.max_redirects) == (1000, 0)
    assert settings.alerts.email is not None and len(settings.alerts.email.recipients) == 3


def test_a_database_path_that_is_a_directory_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """SQLite said only "unable to open database file", and `check` said OK."""
    monkeypatch.delenv("MONITOR_DB", raising=False)
    settings = settings_from_dict({"database": {"path": "data"}}, tmp_path / "m.toml")
    assert settings.database_path == tmp_path / "data"  # not there yet: the file to create
    (tmp_path / "data").mkdir()
    with pytest.raises(ConfigError) as caught:
        settings.database_path  # noqa: B018
    assert str(caught.value) == (
        f'{tmp_path / "m.toml"}: database.path: "{tmp_path / "data"}" is a directory, '
        "not an SQLite file"
    )
    monkeypatch.setenv("MONITOR_DB", str(tmp_path))
    with pytest.raises(ConfigError, match=f'^MONITOR_DB: "{tmp_path}" is a directory'):
        settings.database_path  # noqa: B018


def test_readme_lists_every_setting() -> None:
    assert settings_markdown() in (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[[feeds]]\nurl = "https://a.example/"\ninterval = "15x"\n',
            'feeds[0].interval: "15x" is not a duration',
        ),
        ("[polling\n", "not valid TOML"),
        (
            f'[database]\npath = "."\n[[topics]]\nname = "t"\nseeds = ["{ROOT / "seeds"}"]\n',
            'database.path: "',  # (then the folder of the config file)
        ),
    ],
)
def test_check_exits_2_with_one_line(tmp_path: Path, text: str, expected: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "--config", str(config), "check"],
        env={key: value for key, value in os.environ.items() if key != "MONITOR_DB"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert expected in done.stderr
    assert str(config) in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_check_counts_in_the_right_number(tmp_path: Path) -> None:
    """It printed "1 seed documents", "1 feeds", "0 alert channels" alike."""
    config = tmp_path / "ok.toml"
    config.write_text(
        f'[[topics]]\nname = "t"\nseeds = ["{ROOT / "seeds"}"]\n'
        '[[feeds]]\nurl = "https://one.example/rss"\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "--config", str(config), "check"],
        env={key: value for key, value in os.environ.items() if key != "MONITOR_DB"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:2] == [
        "topic t: 1 seed document", "1 feed, 0 alert channels (none)"
    ]  # fmt: skip


def test_missing_config_file(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "--config", str(tmp_path / "nope.toml"), "status"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "config file not found" in done.stderr
