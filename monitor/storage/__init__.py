"""SQLite storage through sqlite-utils: one `Storage` whose methods are use cases.

The mixins split the use cases by table family; each writes only inside the transaction
its caller opened with `Storage.atomic()` (one per feed's results).
"""

from __future__ import annotations

from .alerts import AlertStore, new_alert_id
from .base import (
    StorageBase,
    database_bytes,
    database_errors,
    database_failure,
    is_busy,
    iso,
    parse_iso,
)
from .detection import DetectionStore
from .feeds import FeedRow, FeedStore, FeedUpdate
from .stories import Known, StoryStore, story_id

__all__ = [
    "AlertStore",
    "DetectionStore",
    "FeedRow",
    "FeedUpdate",
    "Known",
    "Storage",
    "database_bytes",
    "database_errors",
    "database_failure",
    "is_busy",
    "iso",
    "new_alert_id",
    "parse_iso",
    "story_id",
]


class Storage(FeedStore, StoryStore, DetectionStore, AlertStore, StorageBase):
    """The one database handle of a process."""

    def after_commit(self) -> None:
        """A term-count batch that came due inside the transaction just committed is
        written now, in one of its own (a failed feed cannot take it down)."""
        super().after_commit()
        if self.term_flush_due():
            with self.atomic():
                self.flush_terms()

    def write_buffered(self) -> None:
        """Write what is held back for batches (full-text index, term counts): at the end
        of a poll cycle or a replay, so that a quiet daemon's stories do not wait for the
        next batch."""
        self.index_stories()
        if self.has_buffered_terms():
            with self.atomic():
                self.flush_terms()
        if self.checkpointer is not None:
            self.checkpointer.nudge()  # the cycle's last pages, while the caller winds up
