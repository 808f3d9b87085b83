"""The newest stories' LSH band keys in memory: what `story_lsh_recent` holds, searchable.

`story_lsh_recent` keeps one row per story (its keys as one blob), appended in signature
order, so a feed's commit writes a page or two for it; the lookups it serves run here. The
keys live in two parts: a sorted pair of numpy arrays (key, signature id), found by binary
search, and a dict of the keys added since the arrays were last rebuilt, folded into them
every `TAIL_KEYS` keys (one stable sort of two sorted runs, about half a millisecond at
a merge's worth of keys, instead of an insert per story).

At a merge's worth of keys (~131,000) the arrays take 2 MB; the same keys in a dict of
Python ints took about 13 MB.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

Keys = npt.NDArray[np.int64]

# How a story's band keys are kept in a blob: signed little-endian 64-bit integers.
KEY_DTYPE = np.dtype("<i8")


def pack(bands: Sequence[int]) -> bytes:
    return np.asarray(bands, dtype=KEY_DTYPE).tobytes()


def unpack(blob: bytes) -> Keys:
    if len(blob) % KEY_DTYPE.itemsize:
        raise ValueError(f"a band-key blob of {len(blob)} bytes is not a whole number of keys")
    return np.frombuffer(blob, dtype=KEY_DTYPE).astype(np.int64)


class RecentKeys:
    """Band key -> signature ids, for the keys not yet merged into the large index."""

    TAIL_KEYS = 8192  # keys kept in the dict before they are folded into the arrays

    def __init__(self, rows: Iterable[tuple[int, bytes]] = ()) -> None:
        self._keys: Keys = np.empty(0, dtype=np.int64)
        self._sigs: Keys = np.empty(0, dtype=np.int64)
        self._tail: dict[int, list[int]] = {}
        self._tail_keys = 0
        self._stories: dict[int, int] = {}  # signature id -> its number of keys
        self._count = 0
        keys, sigs = [], []
        for sig_id, blob in sorted(rows):
            found = unpack(blob)
            keys.append(found)
            sigs.append(np.full(len(found), sig_id, dtype=np.int64))
            self._stories[sig_id] = self._stories.get(sig_id, 0) + len(found)
            self._count += len(found)
        if keys:
            self._keys, self._sigs = _by_key(np.concatenate(keys), np.concatenate(sigs))

    def __len__(self) -> int:
        """How many keys are held."""
        return self._count

    def add(self, sig_id: int, bands: Sequence[int]) -> None:
        tail = self._tail
        for band in bands:
            held = tail.get(band)
            if held is None:
                tail[band] = [sig_id]
            elif sig_id not in held:
                held.append(sig_id)
        self._tail_keys += len(bands)
        self._count += len(bands)
        self._stories[sig_id] = self._stories.get(sig_id, 0) + len(bands)
        if self._tail_keys >= self.TAIL_KEYS:
            self._fold()

    def remove(self, sig_id: int) -> None:
        """Forget every key of one signature (it was replaced)."""
        count = self._stories.pop(sig_id, None)
        if count is None:
            return
        self._count -= count
        keep = self._sigs != sig_id
        self._keys, self._sigs = self._keys[keep], self._sigs[keep]
        for band in [band for band, held in self._tail.items() if sig_id in held]:
            held = self._tail[band]
            held.remove(sig_id)
            if not held:
                del self._tail[band]

    def lookup(self, bands: Sequence[int], per_band: int) -> set[int]:
        """The signature ids holding any of ``bands``: each band's ``per_band`` smallest."""
        found: set[int] = set()
        keys = self._keys
        if len(keys):
            probe = np.asarray(bands, dtype=np.int64)
            at = np.searchsorted(keys, probe)
            inside = at < len(keys)
            hit = np.flatnonzero(inside & (keys[np.minimum(at, len(keys) - 1)] == probe))
            for i in hit.tolist():
                start = int(at[i])
                end = int(np.searchsorted(keys, probe[i], side="right"))
                ids = self._sigs[start:end].tolist()
                ids += self._tail.get(bands[i], ())
                found.update(sorted(ids)[:per_band])
            misses = set(range(len(bands))) - set(hit.tolist())
        else:
            misses = set(range(len(bands)))
        tail = self._tail
        for i in misses:
            held = tail.get(bands[i])
            if held is not None:
                found.update(sorted(held)[:per_band])
        return found

    def items(self) -> tuple[Keys, Keys]:
        """Every (key, signature id) held, sorted by key, then id (the arrays are kept
        sorted by key only: a re-signed story keeps its older id)."""
        self._fold()
        order = np.lexsort((self._sigs, self._keys))
        return self._keys[order], self._sigs[order]

    def _fold(self) -> None:
        if not self._tail:
            self._tail_keys = 0
            return
        keys: list[int] = []
        sigs: list[int] = []
        for band, held in self._tail.items():
            keys += [band] * len(held)
            sigs += held
        new_keys, new_sigs = np.array(keys, dtype=np.int64), np.array(sigs, dtype=np.int64)
        order = np.lexsort((new_sigs, new_keys))
        self._keys, self._sigs = _by_key(
            np.concatenate([self._keys, new_keys[order]]),
            np.concatenate([self._sigs, new_sigs[order]]),
        )
        self._tail = {}
        self._tail_keys = 0


def _by_key(keys: Keys, sigs: Keys) -> tuple[Keys, Keys]:
    """Sorted by key, keeping the given order among equal keys (a stable sort, fast on
    arrays made of two sorted runs)."""
    order = np.argsort(keys, kind="stable")
    return keys[order], sigs[order]
