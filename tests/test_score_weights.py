"""The term weights' caches and shortcuts give the same numbers as computing from scratch."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st
from wordfreq import zipf_frequency

from monitor import wordprior
from monitor.score import (
    BIGRAM_WEIGHT,
    MAX_IDF,
    Background,
    Example,
    analyse,
    vector,
    wordfreq_prior,
)

PRIOR = wordfreq_prior()


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=12))
def test_prior_shortcut_agrees_with_zipf_frequency(word: str) -> None:
    assert PRIOR is not None
    zipf = zipf_frequency(word, "en")
    assert PRIOR(word) == (None if zipf <= 0.0 else 7.0 - zipf)


def test_prior_of_common_and_unknown_words() -> None:
    assert PRIOR is not None
    common, rare = PRIOR("the"), PRIOR("taliban")
    assert common is not None and rare is not None and common < 1.0 < rare
    assert PRIOR("qzxqzxv") is None
    assert PRIOR("москва") is not None  # Cyrillic goes through wordfreq's Russian list


def _reference_idf(bg: Background, term: str) -> float:
    if " " in term:
        first, _, second = term.partition(" ")
        return BIGRAM_WEIGHT * max(_reference_idf(bg, first), _reference_idf(bg, second))
    stream = max(0.0, min(MAX_IDF, math.log((bg.n + bg.smoothing) / (bg.df.get(term, 0) + 1))))
    if bg.prior is None:
        return stream
    known = bg.prior(bg.surface(term))
    return stream if known is None else min(MAX_IDF, max(0.0, known))


WORDS = st.sampled_from(
    [
        "council",
        "city",
        "cars",
        "ban",
        "old",
        "town",
        "vorlanda",
        "ibarra",
        "kessler",
        "traders",
        "appeal",
        "court",
        "week",
        "the",
        "zorbit",
        "quillan",
        "river",
        "bridge",
        "tax",
        "flats",
    ]
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(WORDS, min_size=1, max_size=30), min_size=1, max_size=40))
def test_cached_vector_equals_a_fresh_computation(texts: list[list[str]]) -> None:
    """Within one epoch (the background grown by less than a fifth) a weight is what a
    computation from scratch gave when the term was first weighed in that epoch."""
    bg = Background(prior=PRIOR)
    bg.n = 1000  # one epoch covers the 40 stories added below
    first: dict[str, float] = {}

    def weight(term: str) -> float:
        if " " in term:
            a, _, b = term.partition(" ")
            return BIGRAM_WEIGHT * max(weight(a), weight(b))
        if term not in first:
            first[term] = _reference_idf(bg, term)
        return first[term]

    for words in texts:
        bag = analyse("", " ".join(words), bg.surfaces)
        expected = {t: (1.0 + math.log(c)) * weight(t) for t, c in bag.items()}
        norm = math.sqrt(sum(w * w for w in expected.values()))
        assert vector(bag, bg) == {t: w / norm for t, w in expected.items() if w > 0.0}
        bg.add([t for t in bag if " " not in t])


def test_a_bag_of_new_words_is_weighed_together_with_the_same_weights() -> None:
    """A bag that sends its third new word to the prior sends the rest in one `many` call;
    every vector and every cached weight equals what asking word by word gives."""
    assert PRIOR is not None
    calls = {"one": 0, "many": 0}

    class Counting:
        def __call__(self, word: str) -> float | None:
            calls["one"] += 1
            return PRIOR(word)

        def many(self, words: Sequence[str]) -> list[float | None]:
            calls["many"] += 1
            return PRIOR.many(words)  # type: ignore[attr-defined, no-any-return]

    together, alone = Background(prior=Counting()), Background(prior=lambda w: PRIOR(w))
    texts = [
        ("Council votes on the harbour bridge", "The council of Norbury voted to close "
         "the bridge; hauliers and the port warned of delays. Зорбит Квиллан said no."),
        ("Bridge to close", "The council voted to close the bridge."),  # no new word
        ("Vorlanda floods", "Vorlanda said the port closed."),  # two new words
        ("Flooding hits Ibarra", "Rivers rose across Ibarra overnight, forcing thousands "
         "from homes; the army built levees near Kessler."),
    ]  # fmt: skip
    seen = []
    for title, body in texts:
        bag = analyse(title, body, together.surfaces)
        assert vector(bag, together) == vector(analyse(title, body, alone.surfaces), alone)
        together.add([t for t in bag if " " not in t])
        alone.add([t for t in bag if " " not in t])
        seen.append(dict(calls))
    assert together._prior == alone._prior
    # words before the batch one by one (2), then the rest at once; fewer than 3: one by one
    assert seen == [
        {"one": 2, "many": 1},
        {"one": 2, "many": 1},
        {"one": 4, "many": 1},
        {"one": 6, "many": 2},
    ]


def test_stream_weights_move_with_the_epoch_and_prior_weights_do_not() -> None:
    bg = Background(prior=PRIOR)
    name, word = "zorbitquill", "council"
    bg.surfaces.update({name: name, word: word})
    before_name, before_word = bg.idf(name), bg.idf(word)
    for _ in range(200):  # past several epochs, every story naming the same unknown name
        bg.add([name])
    assert bg.idf(name) < before_name  # a name every story carries weighs less and less
    assert bg.idf(word) == before_word  # the general-language weight never moves
    assert bg.idf(f"{name} {word}") == BIGRAM_WEIGHT * max(bg.idf(name), bg.idf(word))


def test_the_prior_is_asked_about_a_word_once_across_epochs() -> None:
    asked: list[str] = []

    def prior(word: str) -> float | None:
        asked.append(word)
        return PRIOR(word)

    bg = Background(prior=prior)
    name, word = "zorbitquill", "council"
    weights = []
    for _ in range(6):  # each round crosses an epoch
        weights.append((bg.idf(name), bg.idf(word)))
        bg.add([name])
        for _ in range(40):
            bg.add([])
    assert sorted(asked) == [word, name]  # its verdict kept, known or not
    assert len({w for _, w in weights}) == 1  # the prior's weight never moves
    assert len({n for n, _ in weights}) == len(weights)  # the stream's, at every epoch


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["en", "ru"]),
    st.one_of(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz'-0123456789éï", min_size=1, max_size=12),
        st.text(alphabet="абвгдеёжзийклмнопрстуфхцчшщъыьэюя", min_size=1, max_size=10),
        st.text(alphabet="慢歮敮獷ちかな日本語新聞", min_size=1, max_size=4),
    ),
)
def test_compact_frequency_table_agrees_with_wordfreq(lang: str, word: str) -> None:
    assert wordprior.zipf_frequency(word, lang) == zipf_frequency(word, lang)


def test_compact_frequency_table_on_listed_words() -> None:
    from wordfreq import get_frequency_list

    for lang in ("en", "ru"):
        buckets = get_frequency_list(lang, "best")
        words = [w for bucket in buckets[:700:7] for w in bucket[:3]] + ["москва", "o'brien"]
        words += ["慢歮", "敮獷", "ち"]  # share hash(str) with "bank", "news", ... (not listed)
        assert len(words) > 150
        for word in words:
            assert wordprior.zipf_frequency(word, lang) == zipf_frequency(word, lang), word
        assert len(wordprior.table(lang)) == sum(len(b) for b in buckets)


def _rejected(bg: Background, name: str, words: str) -> Example:
    return Example(name, name, analyse("", words, bg.surfaces), "unrelated")


def test_deferred_examples_are_older_read_once_and_respect_removals() -> None:
    from monitor.score import _Pool

    bg = Background(prior=PRIOR)
    calls: list[int] = []
    example = functools.partial(_rejected, bg)

    def older() -> list[Example]:
        calls.append(1)
        return [
            example("a", "harbour fishing boats catch"),
            example("b", "council budget vote"),
            example("c", "harbour cranes strike"),
        ]

    pool = _Pool(limit=3)
    pool.defer(older)
    pool.add(example("d", "harbour festival boats"), bg)
    pool.remove("b")  # e.g. the user marked it relevant before anything asked
    pool.refresh(bg)
    assert calls == []
    best, score = pool.nearest(vector(analyse("", "harbour boats", bg.surfaces), bg))
    assert calls == [1] and list(pool.examples) == ["a", "c", "d"]
    assert best in {"a", "d"} and score > 0.0
    pool.add(example("e", "council tax vote"), bg)  # over the limit: the oldest leaves
    assert list(pool.examples) == ["c", "d", "e"]
    assert pool.nearest(vector(analyse("", "council vote", bg.surfaces), bg))[0] == "e"
    assert calls == [1]


def test_a_full_pool_forgets_its_loader_and_the_ids_it_skipped() -> None:
    """A pool filled by new examples never reads the older ones, so it keeps no trace of
    them: before this, every removal waited in a set for a query that might never come."""
    from monitor.score import _Pool

    bg = Background(prior=PRIOR)
    calls: list[int] = []
    example = functools.partial(_rejected, bg)

    def older() -> list[Example]:
        calls.append(1)
        return [example("old", "harbour boats harbour boats")]

    pool = _Pool(limit=3)
    pool.defer(older)
    for i in range(50):
        pool.add(example(f"s{i}", f"story {i} about the council budget"), bg)
    assert len(pool._dropped) == 0 and pool._loader is None
    assert list(pool.examples) == ["s47", "s48", "s49"]
    best, _ = pool.nearest(vector(analyse("", "harbour boats", bg.surfaces), bg))
    assert calls == [] and best != "old"
