"""Settings: one declarative definition drives TOML loading, defaults, validation and `check`.

Each section is a frozen dataclass; a field's type (plus optional metadata) says how a TOML
value becomes a Python value. `load_settings` walks the definition, so a new setting is one
new field. Every error names the file, the key path and what was expected, e.g.::

    config/monitor.toml: feeds[3].interval: "15x" is not a duration (like "90s", "15m", "2h")

Relative paths are relative to the config file. Secrets never sit in the file: `*_env`
keys name environment variables, read only when a notifier is built. This module reads the
config file and the environment, and looks whether the database path is a directory; it
does no other I/O.
"""

from __future__ import annotations

import functools
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConfigError

DEFAULT_CONFIG = Path("config/monitor.toml")

MAX_CONCURRENCY = 1000  # polling.concurrency: the fetcher holds a client per 10 requests
MAX_BYTES = 1_000_000_000  # polling.max_bytes: a body is held whole in memory

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


MAX_DURATION = 100 * 365 * 86400.0  # "now minus a duration" must stay a date


def parse_duration(value: object) -> float:
    """'90s', '15m', '2h', '1d' or a number of seconds → seconds (float), at most 100 years."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    seconds: float | None = None
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"{value!r} is not a duration (negative)")
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds is None or math.isnan(seconds):
        raise ValueError(f'{_show(value)} is not a duration (like "90s", "15m", "2h")')
    if seconds > MAX_DURATION:  # (infinity too)
        raise ValueError(f"{_show(value)} is longer than 100 years")
    return seconds


def _show(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


class Duration(float):
    """Marker type: a duration in seconds, written as "15m" in TOML."""


def format_duration(seconds: float) -> str:
    """A duration as the config writes it: "180d", "1h", "90s"."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _check_http_url(value: str) -> str:
    try:
        parts = urlsplit(value)
    except ValueError:  # (a bracketed host that is not an IPv6 address)
        raise ValueError(f"{_show(value)} is not an http(s) URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{_show(value)} is not an http(s) URL")
    try:
        port = parts.port
    except ValueError:  # not a number, or over 65535: the HTTP clients would raise it later
        port = 0
    if port == 0:
        raise ValueError(f"{_show(value)} is not an http(s) URL (its port must be 1 to 65535)")
    return value


def _check_listen(value: str) -> str:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:  # (0: any free port)
        raise ValueError(f'{_show(value)} is not "host:port"')
    return value


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f'{_show(value)} is not a known time zone (like "Europe/Paris")') from None
    return value


def _check_cron(value: str) -> str:
    if len(value.split()) != 5:
        raise ValueError(f'{_show(value)} is not a 5-field cron expression (like "0 8 * * *")')
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(value)
    except ValueError as error:
        raise ValueError(f"{_show(value)} is not a valid cron expression: {error}") from None
    return value


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError(f"{value!r} must be greater than 0")
    return value


def _fraction(value: float) -> float:
    if not 0 <= value <= 1:
        raise ValueError(f"{value!r} is not between 0 and 1")
    return value


def _between(low: int, high: int) -> Callable[[int], int]:
    """A check that an integer is from ``low`` to ``high``, both included."""

    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(f"{value!r} is not between {low} and {high}")
        return value

    return check


def _not_negative(value: int) -> int:
    if value < 0:
        raise ValueError(f"{value!r} is negative")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError(f"{_show(value)} is blank (expected a name)")
    return value


def _no_blank(value: tuple[str, ...]) -> tuple[str, ...]:
    for item in value:
        if not item.strip():
            raise ValueError(f"{_show(item)} is blank (every entry must say something)")
    return value


def _address(value: str) -> str:
    """An address as SMTP and the From/To headers take it: "me@example.org" or
    "Me <me@example.org>"."""
    from email.utils import parseaddr

    local, _, domain = parseaddr(value)[1].rpartition("@")
    if not (local and domain):
        raise ValueError(f"{_show(value)} is not an email address")
    return value


def _addresses(value: tuple[str, ...]) -> tuple[str, ...]:
    for item in value:
        _address(item)
    return value


def _not_empty(value: tuple[Any, ...]) -> tuple[Any, ...]:
    if not value:
        raise ValueError("[] is empty (expected at least one)")
    return value


def _setting(default: Any = MISSING, *, check: Any = None, doc: str = "") -> Any:
    """A settings field: its default, an optional validator and a one-line description."""
    meta = {"check": check, "doc": doc}
    if isinstance(default, list | dict):
        raise TypeError("use a tuple default")
    if default is MISSING:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    path: Path = _setting(Path("../data/monitor.db"), doc="SQLite file (MONITOR_DB overrides)")
    dedupe_window: Duration = _setting(
        Duration(90 * 86400),
        doc="how long, at least, a story stays in the near-duplicate index (0: for ever)",
    )
    retention: Duration = _setting(
        Duration(180 * 86400),
        doc="unrelated stories' text is cleared this long after they were first seen; "
        "titles, links and decisions stay (0: kept for ever)",
    )


@dataclass(frozen=True, slots=True)
class PollingSettings:
    interval: Duration = _setting(Duration(900), check=_positive, doc="default poll interval")
    timeout: Duration = _setting(Duration(30), check=_positive, doc="whole request, body included")
    max_bytes: int = _setting(
        10_000_000, check=_between(1, MAX_BYTES), doc="cap on the decoded body (at most 1 GB)"
    )
    max_redirects: int = _setting(
        5, check=_not_negative, doc="redirects followed per request (0: none)"
    )
    per_host: int = _setting(
        2, check=_between(1, MAX_CONCURRENCY), doc="concurrent requests per host"
    )
    concurrency: int = _setting(
        32,
        check=_between(1, MAX_CONCURRENCY),
        doc=f"concurrent requests in all (at most {MAX_CONCURRENCY:,})",
    )
    jitter: float = _setting(0.1, check=_fraction, doc="random spread of next_due, as a fraction")
    max_backoff: Duration = _setting(
        Duration(6 * 3600), check=_positive, doc="longest wait after failures"
    )
    max_interval: Duration = _setting(
        Duration(86400), check=_positive, doc="longest wait for any reason"
    )
    tick: Duration = _setting(
        Duration(30), check=_positive, doc="how often the daemon looks for due feeds"
    )
    full_text_timeout: Duration = _setting(
        Duration(20), check=_positive, doc="article fetch deadline"
    )


@dataclass(frozen=True, slots=True)
class TopicSettings:
    name: str = _setting(check=_not_blank, doc="topic name, used in alerts and exports")
    seeds: tuple[Path, ...] = _setting(
        check=_not_empty, doc="seed files or folders (.txt, .md, .html), at least one"
    )
    keywords: tuple[str, ...] = _setting(
        (), check=_no_blank, doc="a related story must contain one of these"
    )
    exclude: tuple[str, ...] = _setting(
        (), check=_no_blank, doc="a story containing one of these is unrelated"
    )
    threshold: float | None = _setting(None, check=_fraction, doc="relevance threshold (0-1)")
    alert_budget: int = _setting(
        20,
        check=_not_negative,
        doc="immediate alerts per topic per day; the rest wait for the digest",
    )
    digest: str = _setting("0 8 * * *", check=_check_cron, doc="cron schedule of the digest")
    timezone: str = _setting("UTC", check=_check_timezone, doc="time zone of the digest schedule")


@dataclass(frozen=True, slots=True)
class FeedSettings:
    url: str = _setting(check=_check_http_url, doc="feed URL (RSS, Atom or JSON Feed)")
    name: str | None = _setting(None, doc="display name")
    interval: Duration | None = _setting(None, check=_positive, doc="overrides [polling].interval")
    enabled: bool = _setting(True, doc="poll this feed")
    full_text: bool = _setting(False, doc="fetch linked articles of likely-related items")
    topics: tuple[str, ...] = _setting((), doc="topics this feed serves (empty: all)")


@dataclass(frozen=True, slots=True)
class EmailSettings:
    host: str = _setting("localhost", doc="SMTP server")
    port: int = _setting(25, check=_between(1, 65535), doc="SMTP port")
    sender: str = _setting("monitor@localhost", check=_address, doc="From address")
    recipients: tuple[str, ...] = _setting((), check=_addresses, doc="To addresses")
    security: Literal["none", "starttls", "tls"] = _setting("none", doc="transport security")
    username_env: str | None = _setting(None, doc="environment variable holding the SMTP user")
    password_env: str | None = _setting(None, doc="environment variable holding the SMTP password")
    timeout: Duration = _setting(
        Duration(30),
        check=_positive,
        doc="limit on every SMTP step; the exchange: (10 + recipients) times it",
    )


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    url: str = _setting(check=_check_http_url, doc="receiver URL")
    secret_env: str | None = _setting(
        None,
        doc="environment variable holding the signing secret; needed (webhooks are always "
        "signed), and set wherever `check`, `run`, `poll` or `alerts test` runs",
    )
    timeout: Duration = _setting(Duration(15), check=_positive, doc="whole request")


@dataclass(frozen=True, slots=True)
class AppriseSettings:
    urls: tuple[str, ...] = _setting(doc="Apprise URLs (slack://, tgram://, ntfy://, ...)")
    urls_env: str | None = _setting(
        None, doc="environment variable holding more URLs, space-separated"
    )


@dataclass(frozen=True, slots=True)
class AlertSettings:
    deliver_every: Duration = _setting(
        Duration(60), check=_positive, doc="how often the outbox is drained"
    )
    max_attempts: int = _setting(8, check=_positive, doc="attempts per channel before 'failed'")
    retry_base: Duration = _setting(Duration(60), check=_positive, doc="first retry delay")
    retry_max: Duration = _setting(Duration(3600), check=_positive, doc="longest retry delay")
    feed_failing_after: Duration = _setting(
        Duration(6 * 3600), check=_positive, doc="a feed failing this long raises one alert"
    )
    feed_failing_polls: int = _setting(
        5, check=_positive, doc="... or failing this many polls in a row"
    )
    email: EmailSettings | None = _setting(None, doc="the email channel")
    webhooks: tuple[WebhookSettings, ...] = _setting(())
    apprise: tuple[AppriseSettings, ...] = _setting(())


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    listen: str | None = _setting(
        None,
        check=_check_listen,
        doc='health and metrics listener, "host:port" (port 0: any free one, logged)',
    )


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = _setting("INFO", doc="log level")
    format: Literal["text", "json"] = _setting("text", doc="text lines or JSON objects")


@dataclass(frozen=True, slots=True)
class Settings:
    source: Path = _setting(Path("<defaults>"), doc="(the file these settings came from)")
    database: DatabaseSettings = _setting(DatabaseSettings())
    polling: PollingSettings = _setting(PollingSettings())
    topics: tuple[TopicSettings, ...] = _setting(())
    feeds: tuple[FeedSettings, ...] = _setting(())
    alerts: AlertSettings = _setting(AlertSettings())
    service: ServiceSettings = _setting(ServiceSettings())
    logging: LoggingSettings = _setting(LoggingSettings())

    @property
    def database_path(self) -> Path:
        """MONITOR_DB, else database.path; a directory there is a ConfigError naming it."""
        override = os.environ.get("MONITOR_DB")
        path = Path(override) if override else self.database.path
        if path.is_dir():  # (SQLite would only say "unable to open database file")
            where = "MONITOR_DB" if override else f"{self.source}: database.path"
            raise ConfigError(f'{where}: "{path}" is a directory, not an SQLite file')
        return path

    def topic(self, name: str) -> TopicSettings:
        for topic in self.topics:
            if topic.name == name:
                return topic
        raise ConfigError(f"{self.source}: no topic named {name!r}")


# ---------------------------------------------------------------------------------------
# The generic loader


class _Invalid(Exception):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


def _describe(kind: Any) -> str:
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        Duration: "a duration",
        Path: "a path",
    }
    if kind in names:
        return names[kind]
    if get_origin(kind) in (typing.Union, types.UnionType):
        options = [a for a in get_args(kind) if a is not type(None)]
        return _describe(options[0]) + " (optional)"
    if get_origin(kind) is Literal:
        return "one of " + ", ".join(f'"{a}"' for a in get_args(kind))
    if get_origin(kind) is tuple:
        return "a list"
    if is_dataclass(kind):
        return "a table"
    return str(kind)


def _convert(kind: Any, value: Any, key: str, base: Path) -> Any:
    origin = get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(kind) if a is not type(None)]
        return _convert(options[0], value, key, base)
    if origin is Literal:
        if value not in get_args(kind):
            raise _Invalid(key, f"{_show(value)} is not {_describe(kind)}")
        return value
    if origin is tuple:
        item_kind = get_args(kind)[0]
        if isinstance(value, str) and item_kind in (str, Path):
            value = [value]
        if isinstance(value, dict) and is_dataclass(item_kind):  # [feeds] for [[feeds]]
            raise _Invalid(key, f"one table where a list of them goes: write [[{key}]]")
        if not isinstance(value, list):
            raise _Invalid(key, f"{_show(value)} is not a list")
        return tuple(_convert(item_kind, item, f"{key}[{i}]", base) for i, item in enumerate(value))
    if is_dataclass(kind):
        if not isinstance(value, dict):
            raise _Invalid(key, f"{_show(value)} is not a table")
        return _build(typing.cast(type, kind), value, key, base)
    if kind is Duration:
        try:
            return Duration(parse_duration(value))
        except ValueError as error:
            raise _Invalid(key, str(error)) from None
    if kind is Path:
        if not isinstance(value, str) or not value:
            raise _Invalid(key, f"{_show(value)} is not a path")
        path = Path(os.path.expanduser(value))
        return path if path.is_absolute() else (base / path)
    if kind is bool:
        if not isinstance(value, bool):
            raise _Invalid(key, f"{_show(value)} is not true or false")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(key, f"{_show(value)} is not an integer")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Invalid(key, f"{_show(value)} is not a number")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise _Invalid(key, f"{_show(value)} is not a string")
        return value
    raise TypeError(f"unsupported settings type {kind!r}")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """The settings class's field types, resolved once (not once per feed: resolving them
    evaluates every annotation's text, ~60 µs a class, 60 ms of a 1,000-feed config)."""
    return typing.get_type_hints(cls)


def _build(cls: type, raw: dict[str, Any], prefix: str, base: Path) -> Any:
    hints = _hints(cls)
    known = {f.name for f in fields(cls) if f.name != "source"}
    for name in raw:
        if name not in known:
            where = f"{prefix}.{name}" if prefix else name
            raise _Invalid(where, "unknown key (expected one of: " + ", ".join(sorted(known)) + ")")
    values: dict[str, Any] = {}
    for spec in fields(cls):
        if spec.name == "source":
            continue
        key = f"{prefix}.{spec.name}" if prefix else spec.name
        if spec.name not in raw:
            if spec.default is MISSING:
                raise _Invalid(key, f"missing (expected {_describe(hints[spec.name])})")
            # A default path follows the config file as a written one does (database.path's
            # "../data/monitor.db" was taken from the working directory), also inside a
            # section the file leaves out.
            if isinstance(spec.default, Path) and not spec.default.is_absolute():
                values[spec.name] = base / spec.default
            elif is_dataclass(spec.default):
                values[spec.name] = _build(type(spec.default), {}, key, base)
            continue
        value = _convert(hints[spec.name], raw[spec.name], key, base)
        check = spec.metadata.get("check")
        if check is not None and value is not None:
            try:
                value = check(value)
            except ValueError as error:
                raise _Invalid(key, str(error)) from None
        values[spec.name] = value
    return cls(**values)


def _cross_checks(settings: Settings) -> None:
    names: set[str] = set()
    for index, topic in enumerate(settings.topics):
        if topic.name in names:
            raise _Invalid(f"topics[{index}].name", f'"{topic.name}" is used by two topics')
        names.add(topic.name)
    urls: set[str] = set()  # (a set: a list's index() made 1,000 feeds cost ~8 ms)
    for index, feed in enumerate(settings.feeds):
        if feed.url in urls:
            raise _Invalid(f"feeds[{index}].url", f'"{feed.url}" is listed twice')
        urls.add(feed.url)
    for index, feed in enumerate(settings.feeds):
        for name in feed.topics:
            if name not in names:
                raise _Invalid(f"feeds[{index}].topics", f'"{name}" is not a configured topic')


def settings_from_dict(raw: dict[str, Any], source: Path) -> Settings:
    """Build validated settings from parsed TOML; raise ConfigError naming the key."""
    base = source.parent
    try:
        settings: Settings = _build(Settings, raw, "", base)
        settings = _replace_source(settings, source)
        _cross_checks(settings)
    except _Invalid as error:
        raise ConfigError(f"{source}: {error}") from None
    return settings


def _replace_source(settings: Settings, source: Path) -> Settings:
    from dataclasses import replace

    return replace(settings, source=source)


def config_path(path: str | Path | None) -> Path:
    """The config file to use: the argument, else MONITOR_CONFIG, else config/monitor.toml."""
    if path:
        return Path(path)
    env = os.environ.get("MONITOR_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG


def load_settings(path: str | Path | None = None) -> Settings:
    """Read, parse and validate the config file."""
    source = config_path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source}: config file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{source}: cannot read the config file: {error}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: not valid TOML: {error}") from None
    return settings_from_dict(raw, source.resolve().parent / source.name)


def describe_settings() -> list[tuple[str, str, str, str]]:
    """(key, type, default, description) for every setting: the reference table in the README."""
    rows: list[tuple[str, str, str, str]] = []

    def walk(cls: type, prefix: str) -> None:
        hints = _hints(cls)
        for spec in fields(cls):
            if spec.name == "source":
                continue
            kind = hints[spec.name]
            key = f"{prefix}{spec.name}"
            inner = [a for a in get_args(kind) if a is not type(None)]
            target = kind
            if get_origin(kind) is tuple and is_dataclass(get_args(kind)[0]):
                target = get_args(kind)[0]
                key = f"[[{key}]]"
            elif inner and is_dataclass(inner[0]):
                target = inner[0]
            if is_dataclass(target):
                walk(typing.cast(type, target), f"{key.strip('[]')}.")
                continue
            if spec.default is MISSING:
                default = ""
            elif isinstance(spec.default, Duration):
                default = f'"{format_duration(spec.default)}"'
            else:
                default = repr(spec.default)
            rows.append((key, _describe(kind), default, spec.metadata.get("doc", "")))

    walk(Settings, "")
    return rows


def settings_markdown() -> str:
    """The README's reference table of every setting."""
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, kind, default, doc in describe_settings():
        if default.startswith("PosixPath("):
            default = default.removeprefix("PosixPath(").removesuffix(")")
        shown = f"`{default}`" if default else "required"
        lines.append(f"| `{key}` | {kind} | {shown} | {doc} |")
    return "\n".join(lines)
