"""The recent LSH keys in memory (`RecentKeys`) against a plain reading of the same keys."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.storage import recent_keys
from monitor.storage.recent_keys import RecentKeys, pack, unpack

# few distinct keys, so that stories share some
KEYS = st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.integers(0, 12)
STEPS = st.lists(
    st.tuples(st.sampled_from(["add", "remove"]), st.integers(1, 15), st.lists(KEYS, max_size=6)),
    max_size=40,
)


def _expected(stories: dict[int, list[int]], bands: list[int], per_band: int) -> set[int]:
    found: set[int] = set()
    for band in bands:
        holders = sorted(sig for sig, keys in stories.items() if band in keys)
        found.update(holders[:per_band])
    return found


@settings(max_examples=200, deadline=None)
@given(steps=STEPS, probe=st.lists(KEYS, max_size=8), per_band=st.integers(1, 4))
def test_lookups_find_what_a_plain_scan_finds(
    steps: list[tuple[str, int, list[int]]], probe: list[int], per_band: int
) -> None:
    recent = RecentKeys()
    recent.TAIL_KEYS = 5  # fold into the arrays often, moving the old keys 3 at a time
    chunk, recent_keys._CHUNK = recent_keys._CHUNK, 3
    try:
        _check(recent, steps, probe, per_band)
    finally:
        recent_keys._CHUNK = chunk


def _check(
    recent: RecentKeys, steps: list[tuple[str, int, list[int]]], probe: list[int], per_band: int
) -> None:
    stories: dict[int, list[int]] = {}
    for action, sig_id, keys in steps:
        if action == "add" and sig_id not in stories:
            keys = list(dict.fromkeys(keys))
            recent.add(sig_id, keys)
            stories[sig_id] = keys
        elif action == "remove":
            recent.remove(sig_id)
            stories.pop(sig_id, None)
        assert len(recent) == sum(len(keys) for keys in stories.values())
    assert recent.lookup(probe, per_band) == _expected(stories, probe, per_band)
    reread = RecentKeys((sig, pack(keys)) for sig, keys in stories.items())
    assert reread.lookup(probe, per_band) == _expected(stories, probe, per_band)
    pairs = []
    for keys, sigs in recent.runs():
        assert keys.tolist() == sorted(keys.tolist())
        pairs += zip(keys.tolist(), sigs.tolist(), strict=True)
    assert sorted(pairs) == sorted((key, sig) for sig, held in stories.items() for key in held)


def test_a_blob_is_whole_keys() -> None:
    assert unpack(pack([-1, 2**63 - 1, 0])).tolist() == [-1, 2**63 - 1, 0]
    try:
        unpack(b"\x00" * 9)
    except ValueError as error:
        assert "9 bytes" in str(error)
    else:
        raise AssertionError("a 9-byte blob was read")
