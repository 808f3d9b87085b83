"""`monitor` with its judge left out: the floor of a poll in this design, for comparison.

    .venv/bin/python bench/poll_cycle.py --sizes 200 --wrap '.venv/bin/python bench/unjudged.py'

Runs the command line it is given (the benchmark's `monitor ... poll --json`) with one
change: a new entry is parsed, cleaned, stored and indexed for full-text search as usual,
but not judged (no scoring, no near-duplicate signature, no decision, no judge opened). The
difference between this run and a normal one is what judging costs; what this run takes is
what the rest of a poll costs, which no work on the judge can remove. Not a mode of
`monitor`: a benchmark's instrument only.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor import cli, pipeline
from monitor.models import Entry


def _stored_only(
    self: pipeline.Pipeline,
    entry: Entry,
    origin: str,
    feed_id: int | None,
    now: datetime,
    summary: pipeline.PollSummary,
    topics: Sequence[str] = (),
    full_text: tuple[str | None, str] | None = None,
) -> None:
    self.storage.insert_story(entry, origin=origin, feed_id=feed_id, now=now)


if __name__ == "__main__":
    pipeline.Pipeline._judge_new = _stored_only  # type: ignore[method-assign]
    sys.argv = sys.argv[1:]  # the wrapped command: the `monitor` program, then its arguments
    cli.entry()
