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

import hashlib
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


SCHEME = "affine32"  # datasketch's MinHash permutation scheme that `_minhash` reproduces


def _permutations() -> tuple[np.ndarray, np.ndarray]:
    """The (a, b) of datasketch's ``MinHash(num_perm=NUM_PERM, seed=SEED)`` permutations in
    the "affine32" scheme: odd ``a`` and any ``b`` below 2^32, drawn from
    ``RandomState(SEED)`` as datasketch draws them. Built here so that importing this module
    does not import datasketch (and scipy); `tests/test_dedupe_signature.py` checks that
    they stay datasketch's (scheme and values)."""
    gen = np.random.RandomState(SEED)
    a = gen.randint(0, 1 << 31, NUM_PERM, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, NUM_PERM, dtype=np.uint32)
    return a, b


_PERM_A, _PERM_B = _permutations()  # built once and shared by every signature


def _minhash(grams: set[str]) -> np.ndarray:
    """The MinHash values of a set of shingles: the same values as datasketch's
    ``MinHash(num_perm=NUM_PERM, seed=SEED).update_batch(...)`` (scheme "affine32": the
    first 4 bytes of SHA-1, the MurmurHash3 32-bit finalizer, then ``a * h + b`` modulo
    2^32 for each permutation), computed in one vectorised step instead of per value."""
    digests = b"".join([hashlib.sha1(g.encode("utf-8")).digest()[:4] for g in grams])
    hv = np.frombuffer(digests, dtype="<u4").astype(np.uint32)
    hv ^= hv >> np.uint32(16)
    hv *= np.uint32(0x85EBCA6B)
    hv ^= hv >> np.uint32(13)
    hv *= np.uint32(0xC2B2AE35)
    hv ^= hv >> np.uint32(16)
    values: np.ndarray = (hv[:, None] * _PERM_A + _PERM_B).min(axis=0)
    return values


def signature(title: str, body: str) -> Signature | None:
    """The signature of a story's text (its body; its title when the body is too short).

    None for an empty text.
    """
    tokens = tokenize(body)
    kind = "body"
    size_n = SHINGLE
    if len(tokens) < MIN_BODY_TOKENS:
        tokens = tokenize(title)
        kind = "title"
        size_n = TITLE_SHINGLE
    grams = set(shingles(tokens, size_n))
    if not grams:
        return None
    return Signature(_minhash(grams), len(grams), kind)


def signature_reference(title: str, body: str) -> Signature | None:
    """`signature` through datasketch's own MinHash (slower; kept to test that they agree)."""
    tokens = tokenize(body)
    kind, size_n = "body", SHINGLE
    if len(tokens) < MIN_BODY_TOKENS:
        tokens, kind, size_n = tokenize(title), "title", TITLE_SHINGLE
    grams = set(shingles(tokens, size_n))
    if not grams:
        return None
    from datasketch import LeanMinHash, MinHash  # tests only: it imports scipy (~0.4 s)

    minhash = MinHash(num_perm=NUM_PERM, seed=SEED)  # datasketch's own permutations
    if minhash.scheme != SCHEME:  # guards a datasketch upgrade (see `_permutations`)
        raise ValueError(f"datasketch MinHash scheme {minhash.scheme!r}, expected {SCHEME!r}")
    minhash.update_batch([gram.encode("utf-8") for gram in grams])
    return Signature(LeanMinHash(minhash).hashvalues.copy(), len(grams), kind)


def band_keys(sig: Signature) -> list[int]:
    """One key per LSH band: a signed 64-bit digest of the signature's kind, the band's
    number and the band's rows (an INTEGER in SQLite: 8 bytes in the index, not ~24).

    Two signatures share a key when all rows of one band agree; the probability of that
    rises steeply with their Jaccard similarity (the S-curve 1 - (1 - J^ROWS)^BANDS).
    """
    values = sig.values.astype("<u8")
    kind = sig.kind[:1].encode("utf-8")
    keys = []
    for band in range(BANDS):
        chunk = values[band * ROWS : (band + 1) * ROWS].tobytes()
        digest = hashlib.blake2b(chunk, digest_size=8, person=kind + bytes([band])).digest()
        keys.append(int.from_bytes(digest, "little", signed=True))
    return keys


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
