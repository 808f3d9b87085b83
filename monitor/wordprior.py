"""wordfreq's word frequencies in a few megabytes: the general-language prior of `score`.

`wordfreq.zipf_frequency` builds a Python dict of the whole list on first use: 41 MB for
English, about 125 MB for Russian (the first Cyrillic word loads it). The daemon needs one
number per distinct word it meets, so this module streams the same packed list once and
keeps two NumPy arrays per language: the words' keys (sorted) and their frequency bucket.
The answer for a word is computed as wordfreq computes it (its tokenizer, its digit
handling, its combination of several tokens and its rounding); tests compare the two.

A word's key is the first 8 bytes of BLAKE2b over its UTF-8 bytes: the same in every
process, so a built table can be kept (`TableCache`: the database's `word_prior` table) and
read back in a few milliseconds. Built from the packed list, English takes ~85 ms and
Russian ~260, plus ~65 ms to import wordfreq: paid by every `monitor poll` run from cron
before the tables were kept. With a kept table a plain a-z word is answered without
importing wordfreq at all (only its tokenizer and digit handling are needed for others).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

_PLAIN = re.compile(r"[a-z]+\Z")  # a word wordfreq's tokenizer leaves whole (tested)
# In English it also leaves whole lower-case Latin-1 letters (josé, são, naïve; tested):
# names like these are common in English news, and each would import wordfreq (~60 ms).
_PLAIN_EN = re.compile(r"[a-z\u00e0-\u00f6\u00f8-\u00ff]+\Z")


class TableCache(Protocol):
    """Where built tables are kept between processes (`storage.DetectionStore`)."""

    def load_word_prior(self, lang: str, source: str) -> tuple[bytes, bytes] | None: ...

    def save_word_prior(self, lang: str, source: str, keys: bytes, buckets: bytes) -> None: ...


def word_key(word: str | bytes) -> int:
    """The table's key for a word: a signed 64-bit BLAKE2b digest of its UTF-8 bytes."""
    data = word if isinstance(word, bytes) else word.encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)


class FrequencyTable:
    """One language's list: word key → the bucket (centibels below 1) it is listed in."""

    def __init__(self, keys: np.ndarray, buckets: np.ndarray) -> None:
        if keys.dtype != np.int64 or buckets.dtype != np.uint16 or len(keys) != len(buckets):
            raise ValueError("a frequency table needs int64 keys and as many uint16 buckets")
        if len(keys) > 1 and not bool(np.all(keys[1:] > keys[:-1])):
            raise ValueError("a frequency table's keys must be sorted and distinct")
        self.keys = keys
        self.buckets = buckets

    @classmethod
    def from_wordfreq(cls, lang: str) -> FrequencyTable:
        """Stream wordfreq's packed list for ``lang``, one bucket at a time."""
        import msgpack
        from wordfreq import available_languages

        path = available_languages("best")[lang]
        hashes: list[np.ndarray] = []
        buckets: list[np.ndarray] = []
        with gzip.open(path, "rb") as packed:
            unpacker = msgpack.Unpacker(packed, raw=False)
            count = unpacker.read_array_header()
            header = unpacker.unpack()
            if not isinstance(header, dict) or header.get("format") != "cB":
                raise ValueError(f"{path}: not a wordfreq cBpack list ({header!r})")
            for index in range(count - 1):
                words = unpacker.unpack()  # one bucket at a time: never the whole list
                if words:
                    digests = (word_key(word.encode("utf-8")) for word in words)
                    hashes.append(np.fromiter(digests, dtype=np.int64, count=len(words)))
                    buckets.append(np.full(len(words), index, dtype=np.uint16))
        keys = np.concatenate(hashes) if hashes else np.zeros(0, dtype=np.int64)
        values = np.concatenate(buckets) if buckets else np.zeros(0, dtype=np.uint16)
        order = np.argsort(keys, kind="stable")
        return cls(keys[order], values[order])

    @classmethod
    def from_bytes(cls, keys: bytes, buckets: bytes) -> FrequencyTable:
        """A table as `to_bytes` gave it (ValueError when it is not one)."""
        if len(keys) % 8 or len(buckets) % 2:
            raise ValueError("a kept frequency table has a truncated array")
        return cls(np.frombuffer(keys, dtype="<i8").astype(np.int64),
                   np.frombuffer(buckets, dtype="<u2").astype(np.uint16))  # fmt: skip

    def to_bytes(self) -> tuple[bytes, bytes]:
        return self.keys.astype("<i8").tobytes(), self.buckets.astype("<u2").tobytes()

    def bucket(self, word: str) -> int | None:
        """The word's bucket (its frequency is 10 ** (-bucket / 100)), or None if unlisted."""
        key = word_key(word)
        at = int(np.searchsorted(self.keys, key))
        if at < len(self.keys) and int(self.keys[at]) == key:
            return int(self.buckets[at])
        return None

    def buckets_of(self, words: Sequence[str]) -> list[int]:
        """Each word's bucket, or -1 if unlisted: one binary search for all of them (a
        word at a time costs ~4 µs, most of it NumPy's overhead for one value)."""
        if not len(self.keys):
            return [-1] * len(words)
        keys = np.fromiter(map(word_key, words), dtype=np.int64, count=len(words))
        at = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        listed = self.keys[at] == keys
        return np.where(listed, self.buckets[at].astype(np.int64), -1).tolist()  # type: ignore[no-any-return]

    def __len__(self) -> int:
        return len(self.keys)


_tables: dict[str, FrequencyTable] = {}  # built or read once per process


def source(lang: str) -> str:
    """What a kept table was built from: other word lists or keys make it stale.

    The lists are named by their files in wordfreq's data folder (name and size), found
    without importing wordfreq or `importlib.metadata` (together ~70 ms; this is read by
    every process that judges a story). Without that folder, by wordfreq's version.
    """
    spec = importlib.util.find_spec("wordfreq")
    folders = spec.submodule_search_locations if spec is not None else None
    lists = sorted(Path(folders[0], "data").glob(f"*_{lang}.msgpack.gz")) if folders else []
    if lists:
        named = ", ".join(f"{path.name} {path.stat().st_size}" for path in lists)
    else:
        from importlib.metadata import version

        named = f"wordfreq {version('wordfreq')} best {lang}"
    return f"{named}; blake2b-64 keys"


def table(lang: str, cache: TableCache | None = None) -> FrequencyTable:
    """``lang``'s table: held, else read from ``cache``, else built (and given to ``cache``)."""
    held = _tables.get(lang)
    if held is not None:
        return held
    made: FrequencyTable | None = None
    tag = source(lang)
    kept = cache.load_word_prior(lang, tag) if cache is not None else None
    if kept is not None:
        try:
            made = FrequencyTable.from_bytes(*kept)
        except ValueError:
            made = None  # damaged: built again below, and replaced
    if made is None:
        made = FrequencyTable.from_wordfreq(lang)
        if cache is not None:
            cache.save_word_prior(lang, tag, *made.to_bytes())
    _tables[lang] = made
    return made


# wordfreq's conversions between its scales (`wordfreq.cB_to_freq`, `freq_to_zipf`,
# `zipf_to_freq`), written the same way so the answers are equal to the last bit (tested):
# importing wordfreq for three one-line formulas cost every run ~65 ms.
def _cb_to_freq(cb: int) -> float:
    return float(10 ** (cb / 100))


def _freq_to_zipf(freq: float) -> float:
    return math.log(freq, 10) + 9


def _zipf_to_freq(zipf: float) -> float:
    return float(10**zipf / 1e9)


def zipf_frequency(word: str, lang: str, cache: TableCache | None = None) -> float:
    """What ``wordfreq.zipf_frequency(word, lang)`` returns, without its 41-125 MB dict
    (the steps of its ``_word_frequency``, with ``minimum`` at Zipf 0 as it passes it)."""
    if (_PLAIN_EN if lang == "en" else _PLAIN).match(word):  # its own one token, no digits
        return _one_token_zipf(table(lang, cache).bucket(word))
    # wordfreq's tokenizer and digit handling, imported only for such words
    from wordfreq.numbers import digit_freq, smash_numbers
    from wordfreq.tokens import lossy_tokenize

    minimum = _zipf_to_freq(0.0)
    freq = minimum
    tokens = [(token, smash_numbers(token)) for token in lossy_tokenize(word, lang)]
    if tokens:
        listed = table(lang, cache)
        one_over = 0.0
        for token, smashed in tokens:
            bucket = listed.bucket(smashed)
            if bucket is None:
                one_over = 0.0
                break
            part = _cb_to_freq(-bucket)
            if smashed != token:
                part *= digit_freq(token)
            one_over += 1.0 / part
        if one_over:
            freq = _rounded_freq(one_over, minimum)
    return round(_freq_to_zipf(freq), 2)


def zipf_frequencies(
    words: Sequence[str], lang: str, cache: TableCache | None = None
) -> list[float]:
    """`zipf_frequency` of each word: the plain ones (one token each) looked up together."""
    plain = _PLAIN_EN if lang == "en" else _PLAIN
    out: list[float] = []
    found: list[tuple[int, str]] = []  # (place in out, word)
    for word in words:
        if plain.match(word):
            found.append((len(out), word))
            out.append(0.0)
        else:
            out.append(zipf_frequency(word, lang, cache))
    if found:
        buckets = table(lang, cache).buckets_of([word for _, word in found])
        for (at, _), bucket in zip(found, buckets, strict=True):
            out[at] = _one_token_zipf(None if bucket < 0 else bucket)
    return out


def _rounded_freq(one_over: float, minimum: float) -> float:
    unrounded = max(1.0 / one_over, minimum)
    return round(unrounded, math.floor(-math.log(unrounded, 10)) + 3)


_ONE_TOKEN: dict[int | None, float] = {}  # bucket (None: unlisted) → Zipf frequency


def _one_token_zipf(bucket: int | None) -> float:
    """The Zipf frequency of a word that is one token in ``bucket``: the steps above for
    one token, computed once per bucket (there are a few hundred)."""
    zipf = _ONE_TOKEN.get(bucket)
    if zipf is None:
        freq = minimum = _zipf_to_freq(0.0)
        if bucket is not None:
            freq = _rounded_freq(0.0 + 1.0 / _cb_to_freq(-bucket), minimum)
        zipf = _ONE_TOKEN[bucket] = round(_freq_to_zipf(freq), 2)
    return zipf
