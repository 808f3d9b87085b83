"""Records passed between the layers: frozen, slotted dataclasses and string enums.

Only timezone-aware UTC datetimes live in these records; conversion happens at the edges
(parsing, the replay reader, the CLI). Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Status(StrEnum):
    """The decision on one story for one topic (DESIGN.md §3.3)."""

    DEVELOPMENT = "development"
    COVERAGE = "coverage"
    DUPLICATE = "duplicate"
    UNRELATED = "unrelated"


class FeedOutcome(StrEnum):
    """What happened to a feed on one poll."""

    OK = "ok"
    NOT_MODIFIED = "not_modified"
    ERROR = "error"
    GONE = "gone"


@dataclass(frozen=True, slots=True)
class Entry:
    """One news item as parsed from a feed or read from a replay file, before any judgement.

    ``summary`` and ``content`` are clean text (HTML already removed). ``key`` identifies the
    entry within its feed (guid, else canonical link, else content hash); ``content_hash``
    changes when the item is edited.
    """

    key: str
    url: str
    canonical_url: str
    title: str
    summary: str
    content: str
    published: datetime
    content_hash: str
    guid: str | None = None
    source: str | None = None
    language: str | None = None
    author: str | None = None
    dated: bool = True  # False when the feed gave no date and ``published`` is the time first seen
    raw_hash: int | None = None  # digest of the item before cleaning (`parse`); None from replay


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """A parsed feed document: its entries plus the feed-level facts worth storing."""

    title: str | None
    link: str | None
    entries: tuple[Entry, ...]
    warning: str | None = None  # a recoverable parser complaint (feedparser's "bozo")
    unchanged: int = 0  # items skipped uncleaned: their raw hash was already stored


@dataclass(frozen=True, slots=True)
class Fetched:
    """A successful HTTP exchange for a feed: a body (200) or a confirmation it is unchanged (304).

    ``headers`` has lower-case names. ``permanent_url`` is set when a 301/308 chain moved the
    feed and the stored URL must change; temporary redirects leave it None.
    ``max_age`` is the freshness lifetime in seconds from Cache-Control max-age or Expires.
    """

    url: str
    status: int
    body: bytes
    headers: Mapping[str, str]
    etag: str | None
    last_modified: str | None
    permanent_url: str | None = None
    max_age: float | None = None

    @property
    def not_modified(self) -> bool:
        return self.status == 304


@dataclass(frozen=True, slots=True)
class FeedConfig:
    """A feed as the config or the `feeds` table describes it."""

    url: str
    name: str | None = None
    interval: float | None = None  # seconds; None means the [polling] default
    enabled: bool = True
    fetch_full_text: bool = False
    topics: tuple[str, ...] = ()  # empty: every topic


@dataclass(frozen=True, slots=True)
class Reason:
    """One piece of evidence for a decision, in words plus an optional weight."""

    kind: str
    text: str
    weight: float | None = None


@dataclass(frozen=True, slots=True)
class DecisionIntent:
    """A decision to be written for one story and topic, with the alert it raises (if any)."""

    story_id: str
    topic: str
    status: Status
    score: float
    development: str | None
    duplicate_of: str | None
    reasons: tuple[Reason, ...] = field(default_factory=tuple)
    new_development_label: str | None = None
    alert: bool = False
