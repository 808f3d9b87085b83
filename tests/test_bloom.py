"""The blocked Bloom filter of the near-duplicate index: never a false negative, few false
positives, saved and read back, and a saved part of another format refused."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.storage.bloom import BloomParts

KEY = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@settings(max_examples=100, deadline=None)
@given(keys=st.lists(KEY, max_size=300), part_keys=st.integers(1, 64))
def test_every_key_added_is_found_in_whichever_part_it_went(
    keys: list[int], part_keys: int
) -> None:
    bloom = BloomParts(part_keys)
    changed = bloom.add(keys)
    assert sum(bloom.counts) == len(keys)
    assert all(count <= part_keys for count in bloom.counts)
    assert changed == set(range(len(bloom)))
    assert bloom.maybe(keys) == [True] * len(keys)


def test_false_positives_stay_under_one_percent_a_full_part() -> None:
    rng = random.Random(11)
    bloom = BloomParts(50_000)
    bloom.add([rng.getrandbits(64) - 2**63 for _ in range(50_000)])
    others = [rng.getrandbits(64) - 2**63 for _ in range(100_000)]
    rate = sum(bloom.maybe(others)) / len(others)
    assert 0.0 < rate < 0.01  # ~0.4% measured; zero would mean the check tests nothing
    assert BloomParts(50_000).maybe(others[:10]) == [False] * 10  # empty: nothing held


def test_saved_parts_read_back_the_same_and_other_formats_are_refused() -> None:
    rng = random.Random(5)
    keys = [rng.getrandbits(64) - 2**63 for _ in range(250)]
    bloom = BloomParts(100)
    bloom.add(keys)
    saved = [(bloom.counts[i], bloom.part_bytes(i)) for i in range(len(bloom))]
    again = BloomParts.load(100, saved)
    assert again.counts == [100, 100, 50]
    assert again.maybe(keys) == [True] * len(keys)
    probe = [rng.getrandbits(64) - 2**63 for _ in range(2000)]
    assert again.maybe(probe) == bloom.maybe(probe)
    again.add([7])  # read back writable: the last part fills up
    assert again.counts == [100, 100, 51] and again.maybe([7]) == [True]
    with pytest.raises(ValueError):
        BloomParts.load(200, saved)  # another part size
    with pytest.raises(ValueError):
        BloomParts.load(100, [(100, b"\x00" * len(saved[0][1]))])  # another format
