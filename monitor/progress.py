"""Progress for `poll` and `replay`: a rich bar on an interactive terminal, nothing otherwise
(the summary line and the per-feed log lines are what a pipe or a log collector gets)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported only for a terminal: ~2 MB a background poll does not need
    from rich.progress import Progress


def _interactive() -> bool:
    return sys.stderr.isatty()


def _bar() -> Progress:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
    )


@contextmanager
def poll_progress(total: int) -> Iterator[Callable[[], None]]:
    if not _interactive() or total == 0:
        yield lambda: None
        return
    with _bar() as bar:
        task = bar.add_task("polling", total=total)
        yield lambda: bar.advance(task)


@contextmanager
def replay_progress() -> Iterator[Callable[[int, int], None]]:
    if not _interactive():
        yield lambda done, total: None
        return
    with _bar() as bar:
        task = bar.add_task("replaying", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield advance
