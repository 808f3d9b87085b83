"""monitor.schedule.next_due: the rules by example, then properties with hypothesis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from monitor.schedule import MIN_DELAY, jitter_unit, next_due

NOW = datetime(2025, 6, 3, 12, 0, tzinfo=UTC)
HOUR = 3600.0


def delay(**kwargs: object) -> float:
    kwargs.setdefault("jitter", 0.0)
    return (next_due(NOW, **kwargs) - NOW).total_seconds()  # type: ignore[arg-type]


def test_interval_is_the_base() -> None:
    assert delay(interval=900) == 900


def test_longer_max_age_wins_but_is_capped() -> None:
    assert delay(interval=900, max_age=60) == 900
    assert delay(interval=900, max_age=7200) == 7200
    assert delay(interval=900, max_age=10 * 86400, max_interval=86400) == 86400


def test_failures_back_off_exponentially_up_to_the_cap() -> None:
    got = [delay(interval=900, failures=n) for n in range(8)]
    assert got == [900, 900, 1800, 3600, 7200, 14400, 21600, 21600]
    assert delay(interval=900, failures=10_000) == 6 * HOUR


def test_backoff_never_polls_a_failing_feed_more_often() -> None:
    assert delay(interval=12 * HOUR, failures=3, max_backoff=6 * HOUR) == 12 * HOUR


def test_retry_after_is_a_floor_with_a_cap() -> None:
    assert delay(interval=900, retry_after=3000) == 3000
    assert delay(interval=900, retry_after=10) == 900
    assert delay(interval=900, retry_after=30 * 86400, max_interval=86400) == 86400


def test_jitter_is_deterministic_bounded_and_spreads_feeds() -> None:
    a = next_due(NOW, interval=900, key="https://a.example/feed")
    assert a == next_due(NOW, interval=900, key="https://a.example/feed")
    dues = {next_due(NOW, interval=900, key=f"https://{i}.example/feed") for i in range(50)}
    assert len(dues) == 50
    for due in dues:
        assert 810 <= (due - NOW).total_seconds() <= 990
    units = [jitter_unit(f"k{i}", NOW) for i in range(2000)]
    assert all(-1 <= u <= 1 for u in units)
    assert min(units) < -0.9 and max(units) > 0.9


def test_tiny_interval_still_moves_forward() -> None:
    assert next_due(NOW, interval=0) >= NOW + timedelta(seconds=MIN_DELAY)


# -- properties -------------------------------------------------------------------------------

nows = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
seconds = st.floats(min_value=0, max_value=30 * 86400, allow_nan=False)
caps = st.floats(min_value=60, max_value=30 * 86400, allow_nan=False)
jitters = st.floats(min_value=0, max_value=0.5, allow_nan=False)


@given(
    now=nows,
    interval=seconds,
    failures=st.integers(min_value=0, max_value=200),
    retry_after=st.none() | seconds,
    max_age=st.none() | seconds,
    key=st.text(max_size=40),
    jitter=jitters,
    max_interval=caps,
    max_backoff=caps,
)
def test_next_due_bounds(
    now: datetime,
    interval: float,
    failures: int,
    retry_after: float | None,
    max_age: float | None,
    key: str,
    jitter: float,
    max_interval: float,
    max_backoff: float,
) -> None:
    due = next_due(
        now,
        interval=interval,
        failures=failures,
        retry_after=retry_after,
        max_age=max_age,
        key=key,
        jitter=jitter,
        max_interval=max_interval,
        max_backoff=max_backoff,
    )
    assert due > now
    if retry_after is not None and retry_after <= max_interval:
        assert due >= now + timedelta(seconds=retry_after)
    ceiling = max(max_interval, max_backoff) * (1 + jitter)
    assert due <= now + timedelta(seconds=ceiling + 1e-6)


@given(
    interval=seconds,
    failures=st.integers(min_value=0, max_value=100),
    retry_after=st.none() | seconds,
    max_age=st.none() | seconds,
    max_interval=caps,
    max_backoff=caps,
)
def test_next_due_is_monotone_in_failures(
    interval: float,
    failures: int,
    retry_after: float | None,
    max_age: float | None,
    max_interval: float,
    max_backoff: float,
) -> None:
    def due(n: int) -> datetime:
        return next_due(
            NOW,
            interval=interval,
            failures=n,
            retry_after=retry_after,
            max_age=max_age,
            jitter=0.0,
            max_interval=max_interval,
            max_backoff=max_backoff,
        )

    assert due(failures) <= due(failures + 1)
