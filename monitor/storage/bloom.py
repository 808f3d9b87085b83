"""A blocked Bloom filter of 64-bit keys on numpy arrays, grown in parts of equal size.

Blocked (Putze, Sanders and Singler, "Cache-, hash- and space-efficient Bloom filters",
2007), and split as Parquet's filters are: a key sets one bit in each of the eight 64-bit
words of one 512-bit block (one cache line), where a classic filter scatters its probes
over the whole bit array. The near-duplicate lookup asks about a story's 32
band keys in every part between two stories' worth of other work, so its cost is cache
misses: ~95 µs a story with rbloom's classic filter (7 lines a key and part, and a call
into Python for each key's hash), ~34 µs here (16 alone), where every part is asked about
all 32 keys in a few array operations.

The keys are uniform 64-bit digests already (`dedupe.band_keys`), so they are not hashed
again: the high half picks the block, and the key times an odd constant gives the eight bit
positions, six bits each.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

BLOCK_WORDS = 8  # 64-bit words in a block: 512 bits, one cache line
BITS_PER_KEY = 12.0  # about 0.5% false positives per full part (measured: tests/test_bloom.py)
_SHIFTS = np.arange(BLOCK_WORDS, dtype=np.uint64) * np.uint64(6)  # a bit of each word
_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd: a bijection of the 64-bit keys
_WORD = np.dtype("<u8")
_HEADER = struct.Struct("<4sQ")  # magic, blocks per part
_MAGIC = b"mbb1"
_CHUNK = 8192  # keys added at a time


class BloomParts:
    """Parts of ``part_keys`` keys each, the last one filling up; asked about every part."""

    def __init__(self, part_keys: int) -> None:
        self.part_keys = part_keys
        self.blocks = max(1, math.ceil(part_keys * BITS_PER_KEY / (BLOCK_WORDS * 64)))
        self.bits: npt.NDArray[np.uint64] = np.zeros((0, self.blocks, BLOCK_WORDS), _WORD)
        self.counts: list[int] = []  # keys added to each part

    def __len__(self) -> int:
        return len(self.counts)

    def add(self, keys: Sequence[int] | npt.NDArray[np.int64]) -> set[int]:
        """Add keys, opening parts as they fill; the parts changed."""
        values = np.asarray(keys, dtype=np.int64)
        changed: set[int] = set()
        start = 0
        while start < len(values):
            if not self.counts or self.counts[-1] >= self.part_keys:
                empty = np.zeros((1, self.blocks, BLOCK_WORDS), _WORD)
                self.bits = np.concatenate([self.bits, empty])
                self.counts.append(0)
            # a chunk at a time: the bit masks take 64 bytes a key (16 MB for a merge's keys)
            chunk = values[start : start + min(_CHUNK, self.part_keys - self.counts[-1])]
            block, mask = self._layout(chunk)
            np.bitwise_or.at(self.bits[-1], block, mask)  # (a key's block may come twice)
            self.counts[-1] += len(chunk)
            changed.add(len(self.counts) - 1)
            start += len(chunk)
        return changed

    def maybe(self, keys: Sequence[int]) -> list[bool]:
        """For each key: might some part hold it? (False: certainly none does.)"""
        if not self.counts or not len(keys):
            return [False] * len(keys)
        block, mask = self._layout(np.asarray(keys, dtype=np.int64))
        found = self.bits[:, block]  # (parts, keys, words)
        held: list[bool] = ((found & mask) == mask).all(axis=2).any(axis=0).tolist()
        return held

    def part_bytes(self, part: int) -> bytearray:
        """One part as saved: a header (format, blocks), then its bits."""
        saved = bytearray(_HEADER.pack(_MAGIC, self.blocks))
        saved += memoryview(self.bits[part]).cast("B")  # (one copy of the part, not two)
        return saved

    @classmethod
    def load(cls, part_keys: int, parts: Sequence[tuple[int, bytes | bytearray]]) -> BloomParts:
        """Parts as saved, in order: (keys added, `part_bytes`). ValueError when a part is
        not in this format or not of this size (the caller builds the filter again)."""
        bloom = cls(part_keys)
        size = _HEADER.size + bloom.blocks * BLOCK_WORDS * _WORD.itemsize
        arrays = []
        for count, blob in parts:
            if len(blob) != size or _HEADER.unpack_from(blob) != (_MAGIC, bloom.blocks):
                raise ValueError("not a saved part of a filter of this format and size")
            bits = np.frombuffer(blob, dtype=_WORD, offset=_HEADER.size)
            arrays.append(bits.reshape(bloom.blocks, BLOCK_WORDS))
            bloom.counts.append(int(count))
        if arrays:
            bloom.bits = np.stack(arrays)  # a copy: writable
        return bloom

    def _layout(
        self, keys: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.uint64]]:
        """Each key's block, and its bit in each of the block's words (keys × words)."""
        raw = keys.view(np.uint64)
        block = ((raw >> np.uint64(32)) * np.uint64(self.blocks)) >> np.uint64(32)
        positions = ((raw * _MIX)[:, None] >> _SHIFTS) & np.uint64(63)
        return block.astype(np.intp), np.left_shift(np.uint64(1), positions)
