"""The one exception tree of monitor.

    MonitorError
    ├── ConfigError          a bad config file, key or value (user error, exit 2)
    ├── SeedError            a seed file that cannot be read or is empty (user error, exit 2)
    ├── UserError            any other mistake a user can make: unknown ID, bad argument (exit 2)
    ├── FeedError            one feed failed; recorded on the feed, never raised past it
    │   ├── FetchError       the request failed: network, timeout, HTTP status, size cap
    │   └── ParseError       the body is not a feed, or the parser failed
    ├── StorageError         the database cannot be opened, migrated or locked
    │   └── AlreadyRunning   another `monitor run` holds the database
    └── DeliveryError        an alert could not be delivered on one channel
        ├── EmailError
        └── WebhookError

Third-party exceptions are translated once, at the adapter that calls the library, with
``raise ... from``. Expected per-feed failures become values stored on the feed row.
"""

from __future__ import annotations


class MonitorError(Exception):
    """Root of every error monitor raises on purpose."""


class ConfigError(MonitorError):
    """The configuration is invalid; the message names the file, the key and what was expected."""


class SeedError(MonitorError):
    """A seed document cannot be used."""


class UserError(MonitorError):
    """Any other user mistake (unknown story ID, bad CLI argument)."""


class FeedError(MonitorError):
    """One feed failed; ``kind`` is a short machine-readable label stored on the feed row."""

    kind = "feed"

    def __init__(self, message: str, *, kind: str | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind


class FetchError(FeedError):
    """The HTTP request for a feed failed."""

    kind = "fetch"

    def __init__(
        self,
        message: str,
        *,
        kind: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, kind=kind)
        self.status = status
        self.retry_after = retry_after


class ParseError(FeedError):
    """The body could not be read as a feed."""

    kind = "parse"


class StorageError(MonitorError):
    """The database cannot be used."""


class AlreadyRunning(StorageError):
    """Another daemon holds the database's run lock."""


class DeliveryError(MonitorError):
    """An alert could not be delivered; ``transient`` says whether a retry may help.

    A channel that sends to several targets at once (email recipients, apprise services) may
    have reached some: ``done`` are the targets this attempt settled (delivered to, or
    refused for good), which a retry must leave out, and ``confirmation`` the peer's reply
    for those it reached. ``channel_works``: the peer answered and refused only these
    targets (a greylisting server's 450), or other targets of the channel work, so other
    alerts may still go through it in the same run.
    """

    def __init__(
        self,
        message: str,
        *,
        transient: bool,
        status: str | None = None,
        retry_after: float | None = None,
        done: frozenset[str] = frozenset(),
        confirmation: str | None = None,
        channel_works: bool = False,
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status
        self.retry_after = retry_after
        self.done = done
        self.confirmation = confirmation
        self.channel_works = channel_works


class EmailError(DeliveryError):
    """SMTP delivery failed."""


class WebhookError(DeliveryError):
    """Webhook delivery failed."""
