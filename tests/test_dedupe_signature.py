"""The vectorised MinHash gives exactly datasketch's values (stored signatures stay valid)."""

from __future__ import annotations

import numpy as np
from datasketch import MinHash
from hypothesis import given
from hypothesis import strategies as st

from monitor import dedupe

WORDS = st.sampled_from(["alpha", "beta", "γάμμα", "дельта", "x", "हिंदी", "😀", "o'brien", "3.5"])


@given(st.lists(WORDS, max_size=8), st.lists(WORDS, max_size=80))
def test_signature_matches_datasketch(title: list[str], body: list[str]) -> None:
    fast = dedupe.signature(" ".join(title), " ".join(body))
    slow = dedupe.signature_reference(" ".join(title), " ".join(body))
    if fast is None or slow is None:
        assert fast is slow
        return
    assert (fast.kind, fast.size, fast.to_bytes()) == (slow.kind, slow.size, slow.to_bytes())
    assert dedupe.band_keys(fast) == dedupe.band_keys(slow)


def test_permutations_are_datasketchs() -> None:
    """`dedupe` builds datasketch's permutations itself (so that the daemon does not import
    datasketch and scipy): the same scheme and the same values, or stored signatures and
    band keys would silently stop matching."""
    reference = MinHash(num_perm=dedupe.NUM_PERM, seed=dedupe.SEED)
    assert reference.scheme == dedupe.SCHEME
    a, b = reference.permutations
    assert np.array_equal(dedupe._PERM_A, np.asarray(a, dtype=np.uint32))
    assert np.array_equal(dedupe._PERM_B, np.asarray(b, dtype=np.uint32))
    drawn_a, drawn_b = dedupe.draw_permutations()  # how the kept values were made
    assert np.array_equal(dedupe._PERM_A, drawn_a) and np.array_equal(dedupe._PERM_B, drawn_b)
    assert dedupe._PERM_A.dtype == dedupe._PERM_B.dtype == np.uint32
