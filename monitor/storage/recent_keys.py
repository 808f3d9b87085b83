"""The newest stories' LSH band keys in memory: what `story_lsh_recent` holds, searchable.

`story_lsh_recent` keeps one row per story (its keys as one blob), appended in signature
order, so a feed's commit writes a page or two for it; the lookups it serves run here. The
keys live in two parts: a sorted pair of numpy arrays (key, signature id), found by binary
search, and a dict of the keys added since the arrays were last rebuilt, folded into them
every `TAIL_KEYS` keys (one merge in place, under a millisecond at a merge's worth of
keys, instead of an insert per story).

At a merge's worth of keys (262,144) the arrays take 3 MB; the same keys in a dict of
Python ints would take about 26 MB.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

Keys = npt.NDArray[np.int64]
Ids = npt.NDArray[np.uint32]  # signature ids: four bytes each (numpy refuses one past 2^32)

_CHUNK = 8192  # old keys moved at a time by a fold

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

    def __init__(self, rows: Iterable[tuple[int, bytes]] = (), *, capacity: int = 0) -> None:
        # The arrays are views of the first keys of two buffers of ``capacity`` keys (the
        # most the caller will hold: untouched pages of np.empty take no memory), folded
        # into in place: a new pair of arrays at every fold made the allocator keep a
        # few MB more of a poll's peak.
        self._kbuf: Keys = np.empty(capacity, dtype=np.int64)
        self._sbuf: Ids = np.empty(capacity, dtype=np.uint32)
        self._keys: Keys = self._kbuf[:0]
        self._sigs: Ids = self._sbuf[:0]
        self._tail: dict[int, list[int]] = {}
        self._tail_keys = 0
        self._stories: dict[int, int] = {}  # signature id -> its number of keys
        self._count = 0
        ids: list[int] = []
        blobs: list[bytes] = []
        for sig_id, blob in rows:
            if len(blob) % KEY_DTYPE.itemsize:
                unpack(blob)  # raises, naming the blob's size
            ids.append(sig_id)
            blobs.append(blob)
        if blobs:  # all rows in one buffer: a loop over 8,000 rows cost ~40 ms
            counts = [len(blob) // KEY_DTYPE.itemsize for blob in blobs]
            keys = np.frombuffer(b"".join(blobs), dtype=KEY_DTYPE).astype(np.int64)
            sigs = np.repeat(np.asarray(ids, dtype=np.uint32), counts)
            for sig_id, count in zip(ids, counts, strict=True):
                self._stories[sig_id] = self._stories.get(sig_id, 0) + count
            self._count = len(keys)
            order = np.argsort(keys)  # not a stable sort (5x slower): `lookup` sorts ids
            self._set(keys[order], sigs[order])

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
        self._set(self._keys[keep], self._sigs[keep])
        for band in [band for band, held in self._tail.items() if sig_id in held]:
            held = self._tail[band]
            held.remove(sig_id)
            if not held:
                del self._tail[band]

    def lookup(self, bands: Sequence[int], per_band: int) -> set[int]:
        """The signature ids holding any of ``bands``: each band's ``per_band`` smallest."""
        found: set[int] = set()
        probe = np.asarray(bands, dtype=np.int64)
        starts = np.searchsorted(self._keys, probe).tolist()
        ends = np.searchsorted(self._keys, probe, side="right").tolist()
        tail = self._tail
        for band, start, end in zip(bands, starts, ends, strict=True):
            ids: list[int] = self._sigs[start:end].tolist() if end > start else []
            ids += tail.get(band, [])
            if ids:
                found.update(sorted(ids)[:per_band])
        return found

    def runs(self) -> list[tuple[Keys, Ids]]:
        """Every (key, signature id) held, as runs sorted by key: the arrays, then the keys
        not folded into them yet (a merge reads them so: folding first would copy the
        arrays at the moment the merge needs the most memory)."""
        tail = self._tail_arrays()
        return [(self._keys, self._sigs)] + ([tail] if len(tail[0]) else [])

    def _tail_arrays(self) -> tuple[Keys, Ids]:
        """The dict's keys and ids as arrays, sorted by key, then id."""
        keys: list[int] = []
        sigs: list[int] = []
        for band, held in self._tail.items():
            keys += [band] * len(held)
            sigs += held
        new_keys, new_sigs = np.array(keys, dtype=np.int64), np.array(sigs, dtype=np.uint32)
        order = np.lexsort((new_sigs, new_keys))
        return new_keys[order], new_sigs[order]

    def _fold(self) -> None:
        if not self._tail:
            self._tail_keys = 0
            return
        new_keys, new_sigs = self._tail_arrays()
        n, m = len(self._keys), len(new_keys)
        self._reserve(n + m)
        kbuf, sbuf = self._kbuf, self._sbuf
        # A merge in place: a new key goes after the old keys equal to it, and an old key
        # moves right by the number of new keys below it; the old keys are moved last
        # first, a chunk at a time, each chunk copied before it is written (its places
        # are at or right of where it was: nothing is overwritten before it is moved).
        to_new = np.searchsorted(kbuf[:n], new_keys, side="right") + np.arange(m)
        for end in range(n, 0, -_CHUNK):
            start = max(0, end - _CHUNK)
            keys, sigs = kbuf[start:end].copy(), sbuf[start:end].copy()
            to_old = np.searchsorted(new_keys, keys, side="left") + np.arange(start, end)
            kbuf[to_old], sbuf[to_old] = keys, sigs
        kbuf[to_new], sbuf[to_new] = new_keys, new_sigs
        self._keys, self._sigs = kbuf[: n + m], sbuf[: n + m]
        self._tail = {}
        self._tail_keys = 0

    def _reserve(self, size: int) -> None:
        """Room for ``size`` keys in the buffers (doubled, if short)."""
        if size <= len(self._kbuf):
            return
        n = len(self._keys)
        kbuf = np.empty(max(size, 2 * len(self._kbuf), 4 * self.TAIL_KEYS), dtype=np.int64)
        sbuf = np.empty(len(kbuf), dtype=np.uint32)
        kbuf[:n], sbuf[:n] = self._keys, self._sigs
        self._kbuf, self._sbuf = kbuf, sbuf
        self._keys, self._sigs = kbuf[:n], sbuf[:n]

    def _set(self, keys: Keys, sigs: Ids) -> None:
        """Hold these arrays (sorted by key) in the buffers."""
        self._keys = self._keys[:0]
        self._reserve(len(keys))
        self._kbuf[: len(keys)], self._sbuf[: len(keys)] = keys, sigs
        self._keys, self._sigs = self._kbuf[: len(keys)], self._sbuf[: len(keys)]
