"""wordfreq's word frequencies in a few megabytes: the general-language prior of `score`.

`wordfreq.zipf_frequency` builds a Python dict of the whole list on first use: 41 MB for
English, about 125 MB for Russian (the first Cyrillic word loads it). The daemon needs one
number per distinct word it meets, so this module streams the same packed list once and
keeps two NumPy arrays per language: the words' hashes (sorted) and their frequency bucket.
The answer for a word is computed as wordfreq computes it (its tokenizer, its digit
handling, its combination of several tokens and its rounding); tests compare the two.

Keys are Python's ``hash()`` of the word's UTF-8 bytes: fast, never stored outside this
process, and distinct for distinct words (``hash(str)`` is not: it hashes the string's
internal buffer, so a two-character Han string can share it with a four-letter English
word).
"""

from __future__ import annotations

import functools
import gzip
import math
import re

import msgpack
import numpy as np
from wordfreq import available_languages, cB_to_freq, freq_to_zipf, zipf_to_freq
from wordfreq.numbers import digit_freq, smash_numbers
from wordfreq.tokens import lossy_tokenize

_PLAIN = re.compile(r"[a-z]+\Z")  # a word wordfreq's tokenizer leaves whole (tested)


class FrequencyTable:
    """One language's list: word hash → the bucket (centibels below 1) it is listed in."""

    def __init__(self, lang: str) -> None:
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
                    digests = (hash(word.encode("utf-8")) for word in words)
                    hashes.append(np.fromiter(digests, dtype=np.int64, count=len(words)))
                    buckets.append(np.full(len(words), index, dtype=np.uint16))
        keys = np.concatenate(hashes) if hashes else np.zeros(0, dtype=np.int64)
        values = np.concatenate(buckets) if buckets else np.zeros(0, dtype=np.uint16)
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order]
        self.buckets = values[order]

    def bucket(self, word: str) -> int | None:
        """The word's bucket (its frequency is 10 ** (-bucket / 100)), or None if unlisted."""
        key = hash(word.encode("utf-8", "surrogatepass"))
        at = int(np.searchsorted(self.keys, key))
        if at < len(self.keys) and int(self.keys[at]) == key:
            return int(self.buckets[at])
        return None

    def __len__(self) -> int:
        return len(self.keys)


@functools.cache
def table(lang: str) -> FrequencyTable:
    return FrequencyTable(lang)


def zipf_frequency(word: str, lang: str) -> float:
    """What ``wordfreq.zipf_frequency(word, lang)`` returns, without its 41-125 MB dict
    (the steps of its ``_word_frequency``, with ``minimum`` at Zipf 0 as it passes it)."""
    minimum = zipf_to_freq(0.0)
    freq = minimum
    # a plain a-z word is its own one token: no need for the tokenizer (~10 µs a word)
    tokens = [word] if _PLAIN.match(word) else lossy_tokenize(word, lang)
    if tokens:
        listed = table(lang)
        one_over = 0.0
        for token in tokens:
            smashed = smash_numbers(token)
            bucket = listed.bucket(smashed)
            if bucket is None:
                one_over = 0.0
                break
            part = cB_to_freq(-bucket)
            if smashed != token:
                part *= digit_freq(token)
            one_over += 1.0 / part
        if one_over:
            unrounded = max(1.0 / one_over, minimum)
            freq = round(unrounded, math.floor(-math.log(unrounded, 10)) + 3)
    return round(freq_to_zipf(freq), 2)
