"""Near-duplicate detection: MinHash signatures, LSH band keys, and the verdict with evidence.

Pure core: no database, no clock. The caller stores the signature and its band keys (in
SQLite, indexed by band) and asks the store for the stories sharing a band key, so finding
candidates costs a few index lookups however many stories are stored; only the candidates'
signatures are compared here.

What counts as a copy: the same text reprinted (wire copy under another headline, a
trimmed or extended ending, a byline or "Read more" footer, HTML around a summary,
tracking parameters in the link). The text compared is the body (summary + content,
normalised word tokens, 3-word shingles); the headline is ignored because syndicators
rewrite it. A title-only item is compared, by its title, with other title-only items only.
Independent reports of the same event share few 3-word shingles and are not copies.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .text import shingles, tokenize

NUM_PERM = 128
BANDS = 32
ROWS = NUM_PERM // BANDS  # 4 rows a band: pairs above Jaccard ~0.42 usually share a band
SHINGLE = 3
TITLE_SHINGLE = 2
SEED = 1

JACCARD_DUPLICATE = 0.5  # estimated Jaccard at or above which two texts are copies
CONTAINMENT_DUPLICATE = 0.8  # or: this share of the shorter text is inside the longer one
MIN_CONTAINMENT_JACCARD = 0.3  # ...provided they still overlap this much overall
MIN_BODY_TOKENS = 25  # below this the body is "title-only" (a line is not enough to compare)


@dataclass(frozen=True, slots=True)
class Signature:
    """A text's MinHash signature, the number of distinct shingles it summarises, and its
    kind ("body" or "title": title-only items are only compared with each other)."""

    values: np.ndarray
    size: int
    kind: str

    def to_bytes(self) -> bytes:
        return bytes(self.values.astype("<u8").tobytes())

    @classmethod
    def from_bytes(cls, blob: bytes, size: int, kind: str) -> Signature:
        return cls(np.frombuffer(blob, dtype="<u8").astype(np.uint64), size, kind)


@dataclass(frozen=True, slots=True)
class DuplicateVerdict:
    """A story found to be a copy of ``of`` (a story ID or ``seed:<file>``)."""

    of: str
    jaccard: float
    containment: float
    how: str  # "text" (MinHash) or "url" (same canonical URL)

    def describe(self) -> str:
        if self.how == "url":
            return f"same canonical URL as {self.of}"
        return (
            f"copy of {self.of}: estimated word-shingle Jaccard {self.jaccard:.2f}, "
            f"containment {self.containment:.2f}"
        )


SCHEME = "affine32"  # the datasketch MinHash scheme that `_minhash` reproduces

# A shingle's 32-bit hash is built from its words' hashes: the first 4 bytes of each word's
# SHA-1 (little-endian), multiplied by a per-position odd constant and summed modulo 2^32.
# Hashing each distinct word once (and each shingle by arithmetic on arrays) replaced one
# SHA-1 per shingle, which was most of a signature's cost. datasketch then applies its own
# finaliser and permutations; `signature_reference` runs datasketch with this hash function,
# and tests/test_dedupe_signature.py checks that both give the same values.
_POSITION = np.array([0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F], dtype=np.uint32)
_WORD_HASHES: dict[str, int] = {}  # word → its 32-bit hash (bounded: cleared when full)
_WORD_HASHES_MAX = 200_000


def _word_hash(word: bytes) -> int:
    return int.from_bytes(hashlib.sha1(word).digest()[:4], "little")


def shingle_hash(gram: bytes) -> int:
    """The 32-bit hash of one shingle given as its words joined by spaces (UTF-8): the
    function `signature_reference` hands to datasketch."""
    total = 0
    for position, word in enumerate(gram.split(b" ")):
        total = (total + _word_hash(word) * int(_POSITION[position])) & 0xFFFFFFFF
    return total


def _shingle_hashes(tokens: Sequence[str], n: int) -> np.ndarray:
    """The distinct hashes of a token list's n-word shingles (one shingle of every token
    when there are fewer than n): `shingle_hash` of each, computed on arrays."""
    memo = _WORD_HASHES
    try:
        values = list(map(memo.__getitem__, tokens))
    except KeyError:
        if len(memo) + len(tokens) > _WORD_HASHES_MAX:
            memo.clear()
        for token in tokens:
            if token not in memo:
                memo[token] = _word_hash(token.encode("utf-8"))
        values = list(map(memo.__getitem__, tokens))
    words = np.array(values, dtype=np.uint32)
    width = min(n, len(words))
    count = len(words) - width + 1
    total = np.zeros(count, dtype=np.uint32)
    for position in range(width):
        total += words[position : position + count] * _POSITION[position]
    # np.unique's result, without its check for masked arrays (numpy 2 imports numpy.ma
    # for it, ~6 ms in every process) and its other overheads
    total.sort()
    return total[np.concatenate(([True], total[1:] != total[:-1]))]


def draw_permutations() -> tuple[np.ndarray, np.ndarray]:
    """The (a, b) of datasketch's ``MinHash(num_perm=NUM_PERM, seed=SEED)`` permutations in
    the "affine32" scheme: odd ``a`` and any ``b`` below 2^32, drawn from
    ``RandomState(SEED)`` as datasketch draws them (so that importing this module does not
    import datasketch and scipy; `tests/test_dedupe_signature.py` checks that they stay
    datasketch's, scheme and values)."""
    gen = np.random.RandomState(SEED)
    a = gen.randint(0, 1 << 31, NUM_PERM, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, NUM_PERM, dtype=np.uint32)
    return a, b


# `draw_permutations()` as little-endian uint32 (a, then b): drawing them imports
# numpy.random (~9 ms in every process that signs a story); a test compares the two.
_PERMUTATIONS = (
    "4be883d5d7018ffe195fce70912878ddfffd0e00138799419755cb9a0b3d82ff9f96234b81a7e0782101472f"
    "03a10ccb997f5d5f8f3c9cc6db55edb0f9f3e8560d1b25cb33fafede65c9df1329aa4fb1fda9a0d6cb6265a0"
    "2517d55ea993910c17f7ad68f9410ce3d59b98c139258b753bbf050e1db39e116584475789d4f2d3aff9a8d5"
    "afbf16ead3970c1ee38584dcefcbe047bd5bd5e0c18e6d65ad08898e1b31fb99d3af936e13fbbfef0f08039b"
    "7f2279a07b96832f2d1c7862734a4b090314b6c001efe3ba79e209caa3f185a811ea8a2bb1c5c1a81bfdfe13"
    "e734cd8b5f03f456d51f551ef3e49bc191734f573d845a328f48a62f076b9bd78d0be3572b7f70ea63dcd5d2"
    "730afb100764256589b73d6231564a94e3438ba157f8c348990c7d5f35980e91690e54aba14a38d3db145d09"
    "e7e67e1153ea1280a5db803f1f004cfa81d83e5289910f7f3360d498df5a968fc5bd6be4af6b1c940f4fba71"
    "350ada3433fd8f25d14c52e52d0840f0136e33d1877d3d31cf975496fd8886ce2f4a5793fbda2d3dc91a9342"
    "3781b20c4b77ea0973a2d02aa754905b4dd96ed511855a6c414a26d245bbf587155e0d992f7aaffb1f0d352b"
    "df55521baf38bf2133bef2258f1f563ae701204bb90abfe99574b92d7d099f855dba466641a74776b12d6534"
    "2f2920116f25ffd3834a5ee6e36a88639b4e72fc074e0fd40197c914f8bfc90cfdd4f6c3cd81308906c79b0b"
    "3472eea9d5d1d423c6c5cf8302f6daca4cf6d0f1db0fa10795782896cb8214e2075945e74d18718ac88a3123"
    "4bd4ae724c9da7232b0463e41432b1ce1e5ea9602426ce656733d68907a7542a2d0ffda6c43371ed399a7b5c"
    "f02e0759fc9d2d92d23835c0604049a30d01dbb90a2c5620175920e27c3fb1b051fba89f87e7d2a579c33dc0"
    "98c09b5aca665159dc3d63c394fe1945a0a9455b8ccc58e5c1bcb6c05e62976d3c9e9fe1e9c1fff698c0fc02"
    "524dd7a97313847f6173279f8208e412ecfd5f1ddca675c967ba11f362b766100a712d73b69ef55a60571194"
    "e9391cf152a77b68d6c93a61c6ccad3cc2ba4ec347e143e7e73f87c5b0a8dc9236f6254d0f1cbc00853bd2c5"
    "9135fd9daa68262714009f53765a2194b047ed8616594e02e519cde28dcf83b5f107765b72ea7b7861c295e8"
    "b556bcc35487949f0a0ca77760dc0c04b740dd443d99efed38cee9d4d99edeb095a1238de78c50ff60dcf011"
    "f9811e2cd31ff47819541b23f1d525be8e93beee8d082431d4ac62b2741edd762b63e510860ef93acd0666c1"
    "b8821c82bb07fec08fbb643518564becfb339f0c897c26b6c221d484c738d01f356f1a2c45dd1605a4c97465"
    "65c3b506f84a7c1b15183f0728ed82824db0073fdb88251ab1ca2adc7169e9492fd5f089cd85543ba8bd858d"
    "ce15b9f72d568fd757e73f47"
)


def _permutations() -> tuple[np.ndarray, np.ndarray]:
    values = np.frombuffer(bytes.fromhex(_PERMUTATIONS), dtype="<u4").astype(np.uint32)
    return values[:NUM_PERM], values[NUM_PERM:]


_PERM_A, _PERM_B = _permutations()  # built once and shared by every signature


def _minhash(hashes: np.ndarray) -> np.ndarray:
    """The MinHash values of a set of 32-bit shingle hashes: the same values as datasketch's
    ``MinHash(num_perm=NUM_PERM, seed=SEED, hashfunc=shingle_hash)`` (scheme "affine32":
    the MurmurHash3 32-bit finaliser, then ``a * h + b`` modulo 2^32 for each
    permutation), computed in one vectorised step instead of per value."""
    hv = hashes.astype(np.uint32)
    hv ^= hv >> np.uint32(16)
    hv *= np.uint32(0x85EBCA6B)
    hv ^= hv >> np.uint32(13)
    hv *= np.uint32(0xC2B2AE35)
    hv ^= hv >> np.uint32(16)
    values: np.ndarray = (hv[:, None] * _PERM_A + _PERM_B).min(axis=0)
    return values


def _shingled(title: str, body: str) -> tuple[list[str], str, int]:
    """(tokens, kind, shingle width) of a story: its body, or its title when the body is
    too short to compare."""
    tokens = tokenize(body)
    if len(tokens) >= MIN_BODY_TOKENS:
        return tokens, "body", SHINGLE
    return tokenize(title), "title", TITLE_SHINGLE


def signature(title: str, body: str) -> Signature | None:
    """The signature of a story's text (its body; its title when the body is too short).

    None for an empty text.
    """
    tokens, kind, width = _shingled(title, body)
    if not tokens:
        return None
    hashes = _shingle_hashes(tokens, width)
    return Signature(_minhash(hashes), len(hashes), kind)


def signature_reference(title: str, body: str) -> Signature | None:
    """`signature` through datasketch's own MinHash (slower; kept to test that they agree)."""
    tokens, kind, width = _shingled(title, body)
    grams = {gram.encode("utf-8") for gram in shingles(tokens, width)}
    if not grams:
        return None
    from datasketch import LeanMinHash, MinHash  # tests only: it imports scipy (~0.4 s)

    minhash = MinHash(num_perm=NUM_PERM, seed=SEED, hashfunc=shingle_hash)
    if minhash.scheme != SCHEME:  # guards a datasketch upgrade (see `_permutations`)
        raise ValueError(f"datasketch MinHash scheme {minhash.scheme!r}, expected {SCHEME!r}")
    minhash.update_batch(list(grams))
    size = len({shingle_hash(gram) for gram in grams})
    return Signature(LeanMinHash(minhash).hashvalues.copy(), size, kind)


def band_keys(sig: Signature) -> list[int]:
    """One key per LSH band: a signed 64-bit digest of the signature's kind, the band's
    number and the band's rows (an INTEGER in SQLite: 8 bytes in the index, not ~24).

    Two signatures share a key when all rows of one band agree; the probability of that
    rises steeply with their Jaccard similarity (the S-curve 1 - (1 - J^ROWS)^BANDS).
    """
    raw = sig.values.astype("<u8").tobytes()
    width = ROWS * 8
    keys = []
    for band, start in enumerate(_band_hashers(sig.kind[:1])):
        hasher = start.copy()  # (half the cost of a new blake2b given its parameters)
        hasher.update(raw[band * width : (band + 1) * width])
        keys.append(int.from_bytes(hasher.digest(), "little", signed=True))
    return keys


@functools.cache
def _band_hashers(kind: str) -> tuple[hashlib.blake2b, ...]:
    """An empty blake2b per band, personalised with the kind's initial and the band's
    number, for `band_keys` to copy."""
    prefix = kind.encode("utf-8")
    return tuple(
        hashlib.blake2b(digest_size=8, person=prefix + bytes([band])) for band in range(BANDS)
    )


def jaccard(a: Signature, b: Signature) -> float:
    """Estimated Jaccard similarity of the two shingle sets: symmetric, in [0, 1]."""
    if a.values.shape != b.values.shape:
        raise ValueError("signatures of different sizes")
    return float(np.count_nonzero(a.values == b.values)) / float(len(a.values))


def containment(a: Signature, b: Signature, estimate: float | None = None) -> float:
    """Estimated share of the smaller shingle set contained in the larger one."""
    j = jaccard(a, b) if estimate is None else estimate
    small = min(a.size, b.size)
    if small == 0:
        return 0.0
    intersection = j * (a.size + b.size) / (1.0 + j)
    return max(0.0, min(1.0, intersection / small))


def verdict(sig: Signature, candidates: list[tuple[str, Signature]]) -> DuplicateVerdict | None:
    """The best copy among candidate (id, signature) pairs, or None when none is a copy.

    Candidates earlier in the list win ties, so pass them oldest first: a copy points to
    the original, not to another copy.
    """
    best: DuplicateVerdict | None = None
    for other_id, other in candidates:
        if other.kind != sig.kind:
            continue
        j = jaccard(sig, other)
        c = containment(sig, other, j)
        copy = j >= JACCARD_DUPLICATE or (
            c >= CONTAINMENT_DUPLICATE and j >= MIN_CONTAINMENT_JACCARD
        )
        if copy and (best is None or j > best.jaccard + 1e-9):
            best = DuplicateVerdict(other_id, round(j, 4), round(c, 4), "text")
    return best
