"""When to poll a feed next: one pure function of the feed's recent history.

No clock, no I/O: ``now`` is passed in and the answer depends only on the arguments, so the
same inputs always give the same time (the jitter is derived from a hash, not a random
generator). The pipeline stores the result as the feed's ``next_due``.

The rules of `next_due`, in order (all durations in seconds):

1. **Base delay** is the feed's ``interval``. When the server declared a freshness lifetime
   (``max_age``, from Cache-Control max-age or Expires) longer than the interval, we wait that
   long instead: the server told us nothing will change before then. The base is capped at
   ``max_interval``.
2. **Back-off after failures.** After ``failures`` consecutive failures the delay is
   ``interval * 2 ** (failures - 1)`` — the interval after the first failure, then twice,
   four times... — capped at ``max_backoff``, and never shorter than the base delay, so a
   failing feed is never polled more often than a healthy one. It recovers by itself: the
   first success resets ``failures`` to 0.
3. **Jitter.** The delay is multiplied by ``1 + u * jitter`` where ``u`` in [-1, 1] comes
   from a hash of ``key`` (the feed URL) and ``now``. Feeds added together drift apart, and
   tests are reproducible.
4. **Retry-After is a floor.** When a server asked us to wait (``retry_after``), the result
   is never earlier than ``now + retry_after`` — but the floor itself is capped at
   ``max_interval`` so a hostile or confused server cannot silence a feed forever.
5. The result is always at least `MIN_DELAY` after ``now``.

So the result lies in ``(now, now + max(max_interval, max_backoff) * (1 + jitter)]``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from hashlib import blake2b

__all__ = ["MIN_DELAY", "jitter_unit", "next_due"]

MIN_DELAY = 1.0  # seconds; keeps the result strictly after ``now`` at microsecond resolution
_MAX_DOUBLINGS = 60  # 2**60 intervals is already far beyond any cap


def next_due(
    now: datetime,
    *,
    interval: float,
    failures: int = 0,
    retry_after: float | None = None,
    max_age: float | None = None,
    key: str = "",
    jitter: float = 0.1,
    max_interval: float = 86400.0,
    max_backoff: float = 6 * 3600.0,
) -> datetime:
    """The time a feed should next be polled; see the module docstring for the rules."""
    interval = max(float(interval), MIN_DELAY)
    base = interval
    if max_age is not None and max_age > interval:
        base = max_age
    base = min(base, max_interval)

    delay = base
    if failures > 0:
        doublings = min(failures - 1, _MAX_DOUBLINGS)
        delay = max(base, min(interval * 2.0**doublings, max_backoff))

    spread = min(max(jitter, 0.0), 1.0)
    delay *= 1.0 + spread * jitter_unit(key, now)

    if retry_after is not None and retry_after > 0:
        delay = max(delay, min(retry_after, max_interval))
    return now + timedelta(seconds=max(delay, MIN_DELAY))


def jitter_unit(key: str, now: datetime) -> float:
    """A number in [-1, 1], fixed for a given ``key`` and ``now``, spread evenly over keys."""
    digest = blake2b(f"{key}\x00{now.isoformat()}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / float(2**64 - 1) * 2.0 - 1.0
