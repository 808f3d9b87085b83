"""Relevance of a story to a topic: term features, the topic profile, and the score.

Pure core: no network, no database, no clock. The caller (``detect.Judge``) owns the
background statistics (document frequencies over every stored story) and passes them in.

How a story is scored (see docs/design.md, "Detection"):

1. ``analyse`` turns title + text into a bag of terms: case-folded tokens of any script
   (``text.tokenize``), Cyrillic/Greek transliterated to Latin so names match across
   scripts, stop words dropped, English suffixes lightly stripped, adjacent-term bigrams
   added; the title counts twice.
2. Weights are sublinear tf × idf against the background (``Background``).
3. The profile is built from the seeds, positive feedback and confidently related stories
   (the profile grows as the story evolves), minus negative feedback.
4. The score combines the cosine similarity to the profile centroid, the nearest seed or
   example, and two guards against one-sided matches (a topic word alone, or the topic's
   vocabulary about something else): the story must share the profile's *focus* (its most
   salient terms, or the distinctive terms of a related story) and also some of the rest.
5. Two checks on a story above the threshold (`relevance`): it must name one of the seeds'
   people, places or bodies (`seed_names`), else it is the same kind of thing elsewhere;
   and when only the seeds vouch for it, its headline must share enough with them
   (`HEADLINE_MIN`), else it is another subject with the same background. A two-word name
   the seeds only write whole counts once in their profile (`one_name`).
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING, Protocol

from .models import Reason
from .text import tokenize

if TYPE_CHECKING:  # `wordprior` (and numpy) are imported when the prior is first asked
    from .wordprior import TableCache

TITLE_WEIGHT = 2
BIGRAM_WEIGHT = 0.5
DEFAULT_THRESHOLD = 0.18

Vector = dict[str, float]

# Function words and newsroom boilerplate: they say nothing about what a story is about.
_STOP = frozenset(
    """
    a about above after again against ago all almost also although am among an and another
    any are aren around as at be became because become been before being below between
    both but by can cannot could couldn did didn do does doesn doing don done down during
    each either else even ever every few for from further had hadn has hasn have haven
    having he her here hers herself him himself his how however i if in into is isn it its
    itself just least less let like made make many may me might more most much must my
    myself neither no nor not now of off on once one only or other others our ours
    ourselves out over own per perhaps put rather re same shall she should shouldn since so
    some such than that the their theirs them themselves then there these they this those
    though through thus to too toward towards under until up upon us very via was wasn we
    were weren what when where whether which while who whom whose why will with within
    without won would wouldn yet you your yours yourself
    said says say saying told tell according added adding reported reports report
    reporter reporters news statement statements week weeks day days year years month
    months today yesterday tomorrow monday tuesday wednesday thursday friday saturday
    sunday january february march april june july august september october november
    december jan feb mar apr jun jul aug sep sept oct nov dec new first last two three
    four five six seven eight nine ten several including include includes well still
    already later earlier time times mr mrs ms dr read full story via updated update
    also although
    """.split()  # noqa: SIM905
)

# Russian and German function words (the languages seeds and feeds most often mix in).
_STOP_OTHER = frozenset(
    """
    и в во не что он на я с со как а то все она так его но да ты к у же вы за бы по только
    ее мне было вот от меня еще нет о из ему теперь когда даже ну вдруг ли если уже или ни
    быть был него до вас нибудь опять уж вам ведь там потом себя ничего ей может они тут
    где есть надо ней для мы тебя их чем была сам чтоб без будто чего раз тоже себе под
    будет ж тогда кто этот того потому этого какой совсем ним здесь этом один почти мой
    тем чтобы нее сейчас были куда зачем всех никогда можно при наконец два об другой хоть
    после над больше тот через эти нас про всего них какая много разве три эту моя
    впрочем хорошо свою этой перед иногда лучше чуть том нельзя такой им более всегда
    конечно всю между заявил сообщил также года году
    der die das und ist im in den von zu mit sich des auf für nicht ein eine als auch es
    an er hat aus bei sie nach wird am einer um dem dass sind noch wie einem über einen so
    zum war haben nur oder aber vor zur bis mehr durch man sein wurde sei ihr seine hatte
    habe ihre hatten dieser diese dieses wurden wenn sagte
    """.split()  # noqa: SIM905
)

_TRANSLIT = str.maketrans(
    {
        "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh",
        "з": "z", "и": "i", "й": "i", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o",
        "п": "p", "р": "r", "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts",
        "ч": "ch", "ш": "sh", "щ": "shch", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "iu",
        "я": "ia", "і": "i", "ї": "i", "є": "e", "ґ": "g",
        "α": "a", "β": "b", "γ": "g", "δ": "d", "ε": "e", "ζ": "z", "η": "i", "θ": "th",
        "ι": "i", "κ": "k", "λ": "l", "μ": "m", "ν": "n", "ξ": "x", "ο": "o", "π": "p",
        "ρ": "r", "σ": "s", "ς": "s", "τ": "t", "υ": "y", "φ": "f", "χ": "ch", "ψ": "ps",
        "ω": "o",
    }
)  # fmt: skip
_CYRILLIC_OR_GREEK = re.compile(r"[\u0370-\u03ff\u0400-\u04ff]")
_LATIN = re.compile(r"^[a-z0-9']+$")
_SUFFIXES = (
    "isations", "izations", "isation", "ization", "ations", "ation", "ments", "ment",
    "ively", "ings", "ing", "ness", "ists", "ist", "isms", "ism", "ies", "ied", "ers",
    "er", "ed", "es", "ly", "al", "s", "e", "y",
)  # fmt: skip


_SURFACE_MAX = 200_000  # bound on the per-background caches (surface forms, idf)


def stem(token: str) -> str:
    """A light, conservative English suffix stripper (Latin-script tokens only).

    Enough to let "removes", "removal", "removing" and "removed" meet, and "terrorist",
    "terrorism", "terror" meet; other scripts are returned unchanged.
    """
    if not _LATIN.match(token):
        return token
    if len(token) == 4 and token[-1] == "s" and token[-2] not in "aiosu'":
        return token[:-1]  # a short plural: "cars" → "car", "bans" → "ban"
    if len(token) <= 4:
        return token
    for suffix in _SUFFIXES:
        if token.endswith(suffix) and len(token) - len(suffix) >= 4:
            base = token[: -len(suffix)]
            if len(base) > 4 and base[-1] == base[-2] and base[-1] not in "lsz":
                base = base[:-1]  # "banned" → "bann" → "ban"
            return base
    return token


def _term_of(token: str) -> tuple[str, str] | None:
    """(term, surface form) of one token, or None when the token is not a content term."""
    surface = token
    if _CYRILLIC_OR_GREEK.search(token):
        if token in _STOP_OTHER:
            return None
        token = token.translate(_TRANSLIT)
    if len(token) < 2 or token in _STOP or token in _STOP_OTHER or token[0].isdigit():
        return None
    return stem(token), surface


# token → `_term_of(token)`: the only memo of `stem` too (an lru_cache on it held a second
# entry per token, ~3 MB of a poll)
_TERM_CACHE: dict[str, tuple[str, str] | None] = {}
_TERM_CACHE_MAX = 100_000
_MISSING = ("", "")


def terms(text: str, surfaces: dict[str, str] | None = None) -> list[str]:
    """Content terms of a text in reading order (stop words, numbers and 1-letter tokens out).

    ``surfaces`` (a `Background`'s) records the first word form seen for each new term, for
    the word-frequency lookup: kept per background, so that a term's weight depends only on
    the texts that background's judge has read, not on what else ran in the process."""
    out: list[str] = []
    cache = _TERM_CACHE
    for token in tokenize(text):
        found = cache.get(token, _MISSING)
        if found is _MISSING:
            found = _term_of(token)
            if len(cache) >= _TERM_CACHE_MAX:
                cache.clear()  # ~20 MB at most; today's vocabulary is back within a story
            cache[token] = found
        if found is None:
            continue
        term = found[0]
        if surfaces is not None and term not in surfaces and len(surfaces) < _SURFACE_MAX:
            surfaces[term] = found[1]
        out.append(term)
    return out


def as_written(matched: Iterable[tuple[str, float]], *texts: str) -> list[tuple[str, float]]:
    """Terms (a word or a word pair) shown as ``texts`` first write them, for people: a
    term is a stem ("organ" for "organisations"); a term none of the texts holds stays."""
    forms: dict[str, str] = {}
    for text in texts:
        terms(text, forms)
    return [(" ".join(forms.get(word, word) for word in term.split(" ")), w) for term, w in matched]


def analyse(title: str, text: str, surfaces: dict[str, str] | None = None) -> Counter[str]:
    """A bag of terms and bigrams for a story or seed; title terms count `TITLE_WEIGHT` times."""
    bag: Counter[str] = Counter()
    for part, weight in ((title, TITLE_WEIGHT), (text, 1)):
        if not part:
            continue
        words = terms(part, surfaces)
        pairs = [f"{first} {second}" for first, second in pairwise(words) if first != second]
        if weight == 1:
            bag.update(words)  # counted in C; same keys, same order as the loop below
            bag.update(pairs)
            continue
        for word in words:
            bag[word] += weight
        for pair in pairs:
            bag[pair] += weight
    return bag


Prior = Callable[[str], float | None]
"""A general-language rarity for a word form: -log10 of its frequency minus a constant, or
None when the word is unknown to the list (names, rare words). A prior may also have a
``many(words)`` method answering for a list of word forms at once (`Background._prime`)."""


class TermCounts(Protocol):
    """Document frequencies: in how many stories counted so far each word appears (a
    `Counter`, or the judge's counts kept in the database)."""

    def get(self, term: str, default: int, /) -> int: ...

    def update(self, words: Iterable[str], /) -> None: ...


_ONE_BY_ONE = 2  # terms of a bag with new words weighed as they come; the rest wait for a batch

MAX_IDF = 7.0


@dataclass(slots=True)
class Background:
    """What ordinary text looks like, so that a topic's terms can be set against it.

    Two sources: a general-language word-frequency prior (``prior``, e.g. wordfreq), and the
    document frequencies of every story stored (``df`` over ``n`` stories). With a prior, a
    known word's weight comes from it (it does not depend on what this monitor's feeds
    happen to cover); unknown words (names) and every word without a prior use the stream's
    frequencies, smoothed so that with few stories stored every term looks rare.
    """

    df: TermCounts = field(default_factory=Counter[str])
    n: int = 0
    smoothing: int = 50
    prior: Prior | None = None
    surfaces: dict[str, str] = field(default_factory=dict)  # term → a word form seen (`terms`)
    _prior: dict[str, float] = field(default_factory=dict)  # term → its weight by the prior, or -1
    _stream: dict[str, float] = field(default_factory=dict)  # idf from df, this epoch
    _epoch: int = -1
    _epoch_floor: int = 0  # n + smoothing at which the current epoch began

    def idf(self, term: str) -> float:
        """The term's weight. A word the prior knows always weighs the same; a weight taken
        from the stream's frequencies is cached until the background has grown by a fifth."""
        self._check_epoch()
        return self._cached(term)

    def _cached(self, term: str) -> float:
        """The term's weight from the caches, else computed (epoch checked by the caller)."""
        weight = self._prior.get(term, -1.0)
        if weight < 0.0:
            weight = self._stream.get(term, -1.0)
            if weight < 0.0:
                weight = self._weigh(term)
        return weight

    def _check_epoch(self) -> None:
        """Drop the stream-derived weights when the background has moved to a new epoch."""
        if self._epoch >= 0 and self.n + self.smoothing < self._epoch_floor:
            return
        epoch = int(math.log(self.n + self.smoothing, 1.2))
        if epoch != self._epoch:
            self._epoch = epoch
            self._stream.clear()
        # below this n + smoothing the epoch cannot have changed (rounding: one less)
        self._epoch_floor = math.ceil(1.2 ** (epoch + 1)) - 1

    def _weigh(self, term: str) -> float:
        """Compute a weight missing from both caches (epoch checked by the caller), cache it."""
        if " " in term:  # not cached: derived from the cached weights of its two words
            first, _, second = term.partition(" ")
            return BIGRAM_WEIGHT * max(self._cached(first), self._cached(second))
        if self.prior is not None:
            general = self._prior.get(term)
            if general is None:
                known = self.prior(self.surface(term))
                general = -1.0 if known is None else min(MAX_IDF, max(0.0, known))
                if len(self._prior) < _SURFACE_MAX:
                    self._prior[term] = general
            if general >= 0.0:
                return general
        stream = min(MAX_IDF, math.log((self.n + self.smoothing) / (self.df.get(term, 0) + 1)))
        value = max(stream, 0.0)
        if len(self._stream) < _SURFACE_MAX:
            self._stream[term] = value
        return value

    def _prime(self, terms: Iterable[str]) -> None:
        """Weigh by the prior, in one call, the words of ``terms`` it has not weighed yet
        (a young process meets thousands, ~4 µs each alone). They get the weights they
        would get one by one; near the cache's bound they are left to `_weigh`."""
        many = getattr(self.prior, "many", None)
        if many is None:
            return
        known = self._prior
        words = {word: None for term in terms for word in term.split(" ") if word not in known}
        if not words or len(known) + len(words) >= _SURFACE_MAX:
            return
        surface = self.surfaces.get
        answers = many([surface(word, word) for word in words])
        for word, rarity in zip(words, answers, strict=True):
            known[word] = -1.0 if rarity is None else min(MAX_IDF, max(0.0, rarity))

    def surface(self, term: str) -> str:
        """A word form the term was made from (for word-frequency lists); the term if unseen."""
        return self.surfaces.get(term, term)

    def add(self, words: Iterable[str]) -> None:
        """Count one more story holding each of ``words`` (distinct single-word terms)."""
        self.n += 1
        self.df.update(words)


def vector(bag: Mapping[str, float], background: Background) -> Vector:
    """Unit-length sublinear tf-idf vector of a bag."""
    background._check_epoch()
    # `Background._cached` inlined (the hot path of every story): a word the prior knows,
    # else a word weighed from the stream this epoch, else computed; a bigram (about half
    # a bag's keys, never in the caches) weighs half its heavier word. Past the first
    # `_ONE_BY_ONE` terms with a word the prior has not been asked about, the rest wait and
    # their words go to the prior together (`_prime`); each keeps its place, and the sum of
    # squares is taken again in the same order, so the vector is the one computed term by
    # term.
    prior = background._prior
    stream = background._stream
    weigh = background._weigh
    log = math.log
    tf = _TF.get
    out: dict[str, float] = {}
    total = 0.0
    misses = 0
    waiting: list[tuple[str, float]] = []
    for term, count in bag.items():
        if count <= 0:
            continue
        if " " in term:
            first, _, second = term.partition(" ")
            one = prior.get(first, -2.0)  # -2: the prior was not asked yet; -1: unknown to it
            two = prior.get(second, -2.0)
            if one < 0.0 or two < 0.0:
                if one == -2.0 or two == -2.0:
                    misses += 1
                    if misses > _ONE_BY_ONE:
                        waiting.append((term, count))
                        out[term] = 0.0
                        continue
                if one < 0.0:
                    one = stream.get(first, -1.0)
                    if one < 0.0:
                        one = weigh(first)
                if two < 0.0:
                    two = stream.get(second, -1.0)
                    if two < 0.0:
                        two = weigh(second)
            weight = BIGRAM_WEIGHT * (one if one > two else two)
        else:
            weight = prior.get(term, -2.0)
            if weight < 0.0:
                if weight == -2.0:
                    misses += 1
                    if misses > _ONE_BY_ONE:
                        waiting.append((term, count))
                        out[term] = 0.0
                        continue
                weight = stream.get(term, -1.0)
                if weight < 0.0:
                    weight = weigh(term)
        weight = (tf(count) or 1.0 + log(count)) * weight
        out[term] = weight
        total += weight * weight
    if waiting:
        background._prime(term for term, _ in waiting)
        cached = background._cached
        for term, count in waiting:
            out[term] = (tf(count) or 1.0 + log(count)) * cached(term)
        total = 0.0
        for weight in out.values():
            total += weight * weight
    if total == 0.0:
        return {}
    norm = math.sqrt(total)
    return {t: w / norm for t, w in out.items() if w > 0.0}


# 1 + log(count) for the usual counts (an int or an equal float finds its entry)
_TF: dict[float, float] = {count: 1.0 + math.log(count) for count in range(1, 64)}


def normalise(vec: Mapping[str, float]) -> Vector:
    norm = math.sqrt(sum(w * w for w in vec.values()))
    if norm == 0.0:
        return {}
    return {t: w / norm for t, w in vec.items() if w > 0.0}


def cosine(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Cosine similarity of two vectors of non-negative weights: symmetric, in [0, 1]."""
    na = math.sqrt(sum(w * w for w in a.values()))
    nb = math.sqrt(sum(w * w for w in b.values()))
    if na == 0.0 or nb == 0.0:
        return 0.0
    return min(1.0, max(0.0, _dot(a, b) / (na * nb)))


def unit_cosine(a: Vector, b: Vector) -> float:
    """`cosine` of two unit-length vectors (as `vector` and `normalise` make them): their
    dot product, without the two passes that would find norms of 1."""
    return min(1.0, max(0.0, _dot(a, b)))


def _dot(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    # The shared terms are found in C (a story and a profile share a few dozen of their
    # hundreds); `fsum` makes the result independent of the set's order.
    return math.fsum([a[t] * b[t] for t in a.keys() & b.keys()])


def centroid(
    vectors: Sequence[Mapping[str, float]], weights: Sequence[float] | None = None
) -> Vector:
    out: dict[str, float] = {}
    for index, vec in enumerate(vectors):
        w = 1.0 if weights is None else weights[index]
        for term, value in vec.items():
            out[term] = out.get(term, 0.0) + w * value
    return normalise(out)


@dataclass(frozen=True, slots=True)
class Example:
    """A text the profile learns from: a seed, a feedback example or a judged story."""

    id: str
    title: str
    bag: Counter[str]
    kind: str  # seed | positive | negative | related | unrelated


class _Pool:
    """Examples of one kind with their vectors and an inverted index for nearest-neighbour
    search: the cost of a query grows with the postings of its terms, not the pool size.

    The index is brought up to date when it is queried, not on every change: most examples
    of a busy pool (rejected stories) leave it again before anything asks for a neighbour,
    and re-weighing every example when the background moves waits for the next query."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.examples: dict[str, Example] = {}
        self.vectors: dict[str, Vector] = {}
        self._index: dict[str, set[str]] = {}
        self._pending: dict[str, None] = {}  # examples not yet in the index, oldest first
        self._stale = False  # the background moved: every vector is to be re-weighed
        self._background: Background | None = None
        self._loader: Callable[[], Iterable[Example]] | None = None  # older examples, unread
        self._dropped: set[str] = set()  # removed while the loader had not run
        self.epoch = -1

    def __len__(self) -> int:
        return len(self.examples)

    def add(self, example: Example, background: Background) -> None:
        """Add an example; it is weighed when the index is next asked for (until then it
        holds only its bag, and most rejected stories leave the pool before that)."""
        self.remove(example.id)
        self.examples[example.id] = example
        self._background = background
        self._pending[example.id] = None
        while len(self.examples) > self.limit:
            self.remove(next(iter(self.examples)))
        if self._loader is not None and len(self.examples) >= self.limit:
            # Full of examples newer than any the loader would read: loaded now, they
            # would all be trimmed again. So the loader goes, with the ids it was to skip
            # (kept until the first query, they grew with every story a daemon judged);
            # a slot freed later (a story the user marked relevant) is filled by the next
            # rejected story, no longer by an example from before the restart.
            self._loader = None
            self._dropped.clear()

    def defer(self, loader: Callable[[], Iterable[Example]]) -> None:
        """Examples older than any added from now on, read only if the pool is queried (a
        restart's rejected stories: most polls never ask for them)."""
        self._loader = loader

    def _load(self) -> None:
        loader, self._loader = self._loader, None
        if loader is None:
            return
        older = {
            e.id: e for e in loader() if e.id not in self.examples and e.id not in self._dropped
        }
        self._dropped.clear()
        if older:
            self.examples = {**older, **self.examples}
            self._pending = {**dict.fromkeys(older), **self._pending}
            while len(self.examples) > self.limit:
                self.remove(next(iter(self.examples)))

    def remove(self, example_id: str) -> None:
        if self._loader is not None:
            self._dropped.add(example_id)
        if self.examples.pop(example_id, None) is None:
            return
        if example_id in self._pending:
            del self._pending[example_id]  # never indexed
            return
        for term in self.vectors.pop(example_id, {}):
            ids = self._index.get(term)
            if ids is not None:
                ids.discard(example_id)
                if not ids:
                    del self._index[term]

    def refresh(self, background: Background) -> None:
        """Note that the background has moved (every ~20% more stories): every vector is
        re-weighed before the next query."""
        epoch = int(math.log(background.n + background.smoothing, 1.2))
        if epoch != self.epoch:
            self.epoch = epoch
            self._stale = True
            self._background = background

    def index(self) -> dict[str, set[str]]:
        """term → IDs of the examples whose vector has it (up to date)."""
        self._load()
        background = self._background
        if background is None:
            return self._index
        if self._stale:
            self._stale = False
            self._index.clear()
            self.vectors.clear()
            self._pending = dict.fromkeys(self.examples)
        index = self._index
        for example_id in self._pending:
            vec = self.vectors[example_id] = vector(self.examples[example_id].bag, background)
            for term in vec:
                ids = index.get(term)
                if ids is None:
                    index[term] = {example_id}
                else:
                    ids.add(example_id)
        self._pending.clear()
        return index

    def nearest(self, story: Mapping[str, float], top: int = 80) -> tuple[str | None, float]:
        """The most similar example, searched through the story's ``top`` heaviest terms
        (the rest carry little of the cosine and would visit long posting lists)."""
        index = self.index()
        scores: dict[str, float] = {}
        heavy = sorted(story.items(), key=lambda pair: -pair[1])[:top]
        for term, weight in heavy:
            for example_id in index.get(term, ()):
                scores[example_id] = scores.get(example_id, 0.0) + weight * self.vectors[
                    example_id
                ].get(term, 0.0)
        if not scores:
            return None, 0.0
        best = max(scores, key=lambda k: scores[k])
        return best, min(1.0, scores[best])


@dataclass(slots=True)
class TopicProfile:
    """What a topic is about, and what it is not.

    - the *core*: seeds plus positive feedback, as one centroid;
    - *related*: stories judged related whose similarity to the core was high (or that are
      near-copies of such a story): the profile follows the story's new vocabulary through
      nearest-neighbour matches, without letting one neighbour pull in the next (no chains);
    - *unrelated*: stories clearly rejected, plus negative feedback: a story closer to those
      than to the related ones is not taken on a neighbour's word.
    """

    name: str
    seeds: list[Example]
    keywords: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    threshold: float = DEFAULT_THRESHOLD
    language: str | None = "en"
    positives: list[Example] = field(default_factory=list)
    negatives: list[Example] = field(default_factory=list)
    related: _Pool = field(default_factory=lambda: _Pool(400))
    unrelated: _Pool = field(default_factory=lambda: _Pool(600))
    names: frozenset[str] = frozenset()  # the seeds' proper names (`seed_names`)
    _core: Vector = field(default_factory=dict)
    _core_epoch: int = -1
    _seed_vectors: dict[str, Vector] = field(default_factory=dict)
    _names: frozenset[str] | None = None

    def learn(self, example: Example, background: Background) -> None:
        """Add an example: feedback (positive/negative) or a judged story (related/unrelated)."""
        if example.kind == "positive":
            self.negatives = [e for e in self.negatives if e.id != example.id]
            self.positives = [e for e in self.positives if e.id != example.id] + [example]
            self.unrelated.remove(example.id)
            self.related.add(example, background)
            self._core_epoch = -1
            self._names = None
        elif example.kind == "negative":
            self.positives = [e for e in self.positives if e.id != example.id]
            self.negatives = [e for e in self.negatives if e.id != example.id] + [example]
            self.related.remove(example.id)
            self.unrelated.add(example, background)
            self._core_epoch = -1
            self._names = None
        elif example.kind == "related":
            self.related.add(example, background)
        else:
            self.unrelated.add(example, background)

    def core(self, background: Background) -> Vector:
        epoch = int(math.log(background.n + background.smoothing, 1.2))
        if epoch != self._core_epoch or not self._core:
            vecs = [
                one_name(vector(e.bag, background), e.bag, self.names)
                for e in self.seeds + self.positives
            ]
            self._core = centroid(vecs)
            self._core_epoch = epoch
            self._seed_vectors = {}
        return self._core

    def seed_vectors(self, background: Background) -> dict[str, Vector]:
        """Each seed's own vector, weighed as the core was (kept until the core changes)."""
        self.core(background)
        if not self._seed_vectors:
            self._seed_vectors = {e.id: vector(e.bag, background) for e in self.seeds}
        return self._seed_vectors

    def proper_names(self) -> frozenset[str]:
        """The seeds' names, and the words capitalised in the headlines of the stories the user
        marked relevant (they are about the topic, whatever names they use)."""
        if self._names is None:
            found = set(self.names)
            for example in self.positives:
                found |= capitalised_terms(example.title, "")
            self._names = frozenset(found)
        return self._names

    def vocabulary(self, background: Background) -> set[str]:
        return set(self.core(background)) | set(self.related.index())


def build_profile(
    name: str,
    seeds: Iterable[tuple[str, str, str]],
    *,
    keywords: Sequence[str] = (),
    exclude: Sequence[str] = (),
    threshold: float | None = None,
    language: str | None = "en",
    surfaces: dict[str, str] | None = None,
) -> TopicProfile:
    """A profile from seed documents given as (id, title, text); ``surfaces`` as in `terms`."""
    examples: list[Example] = []
    names: set[str] = set()
    for sid, title, text in seeds:
        examples.append(Example(sid, title, analyse(title, text, surfaces), "seed"))
        names |= seed_names(text)
    return TopicProfile(
        name=name,
        seeds=examples,
        names=frozenset(names),
        keywords=tuple(keywords),
        exclude=tuple(exclude),
        threshold=DEFAULT_THRESHOLD if threshold is None else threshold,
        language=language,
    )


_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")


def _cased_terms(text: str) -> tuple[set[str], set[str]]:
    """(terms of words written capitalised (or in a script without case), terms of words
    written in lower case) in ``text``."""
    upper: set[str] = set()
    lower: set[str] = set()
    for match in _WORD.finditer(text):
        word = match.group()
        (lower if word[0].islower() else upper).update(terms(word))
    return upper, lower


def seed_names(text: str) -> set[str]:
    """The proper names of a seed's body, as terms: the words it capitalises and never
    writes in lower case ("Robles", "Casco Antiguo", "Taliban", "Valdoria's").

    A word capitalised only because it starts a sentence ("Drivers who enter...") counts too
    when the seed never writes it in lower case: a few common words may pass for names, which
    only makes `relevance`'s names check easier to pass. The title is not read: headlines
    capitalise words that are not names."""
    upper, lower = _cased_terms(text)
    return upper - lower


def capitalised_terms(title: str, text: str) -> set[str]:
    """Terms a story writes with a capital letter (or in a script without case) somewhere."""
    return _cased_terms(f"{title}\n{text}")[0]


def one_name(vec: Vector, bag: Mapping[str, float], names: Collection[str]) -> Vector:
    """A seed's vector where a two-word name it only ever writes whole counts once.

    Two names (`seed_names`) that occur, at least twice, only next to each other ("Casco
    Antiguo") are one name, yet the vector holds it three times: both words and the pair. A
    story that names the place would match the seed three times over on the place alone.
    The three weights are scaled so that together they weigh what the heaviest of them did."""
    out = dict(vec)
    for pair, count in bag.items():
        if count < 2 or " " not in pair:
            continue
        first, _, second = pair.partition(" ")
        if first not in names or second not in names:
            continue
        if bag.get(first) != count or bag.get(second) != count:
            continue
        members = [t for t in (first, second, pair) if t in out]
        total = sum(out[t] for t in members)
        if total > 0.0:
            scale = max(out[t] for t in members) / total
            for term in members:
                out[term] *= scale
    return normalise(out)


# How the parts of the score combine (see docs/evaluation.md for what each trades).
NEIGHBOUR_DISCOUNT = 0.9  # a related story is weaker evidence than a seed...
NEIGHBOUR_OFFSET = 0.12  # ...and must be much closer than a seed would need to be
NEIGHBOUR_MARGIN = 0.05  # a rejected story must be this much closer to veto a related neighbour
NEIGHBOUR_GATE = 0.03  # below this similarity to the seeds, neighbours are not searched
GROW_CORE = 0.2  # a related story joins the neighbours when this close to the core...
GROW_COPY = 0.5  # ...or this close to a neighbour (a near-copy of one)
REJECT = 0.15  # a story scoring below this joins the unrelated examples...
REJECT_NEIGHBOUR = 0.2  # ...unless a related story is this close: not clearly unrelated
CROSS_LANGUAGE_TERMS = 4  # shared terms a story in another language needs for full credit
HEADLINE_MIN = 0.2  # on the seeds route: weight of the headline's terms in the seed profile


@dataclass(frozen=True, slots=True)
class Relevance:
    """How much a story belongs to a topic, and why."""

    score: float
    related: bool
    matched_terms: list[tuple[str, float]]
    nearest: tuple[str, float] | None
    reasons: list[Reason]
    core: float = 0.0
    grow: bool = False  # confidently related: the profile may learn from it
    reject: bool = False  # clearly unrelated: a negative example for later stories
    names: frozenset[str] = frozenset()  # the seeds' names it names (when related)


def _phrase_in(phrase: str, haystack: str) -> bool:
    words = " ".join(tokenize(phrase))
    return bool(words) and f" {words} " in haystack


def relevance(
    profile: TopicProfile,
    title: str,
    text: str,
    language: str | None = None,
    *,
    background: Background | None = None,
    bag: Counter[str] | None = None,
) -> Relevance:
    """Score a story against a topic profile (see the module docstring)."""
    background = background or Background()
    bag = analyse(title, text, background.surfaces) if bag is None else bag
    story = vector(bag, background)
    core = profile.core(background)
    reasons: list[Reason] = []

    foreign = bool(language and profile.language and language != profile.language)
    if foreign:
        # Only names and shared words can match across languages: score the story on the
        # terms the profile knows, damped unless several distinct ones are shared.
        known = profile.vocabulary(background)
        shared = {t: w for t, w in story.items() if t in known and " " not in t}
        damp = min(1.0, len(shared) / CROSS_LANGUAGE_TERMS)
        story = {t: w * damp for t, w in normalise(shared).items()}
        reasons.append(
            Reason(
                "language",
                f"in {language}, not {profile.language}: scored on {len(shared)} shared terms",
            )
        )

    sim_core = cosine(story, core) if foreign else unit_cosine(story, core)
    profile.related.refresh(background)
    profile.unrelated.refresh(background)
    near_id: str | None = None
    far_id: str | None = None
    near = far = 0.0
    if sim_core >= NEIGHBOUR_GATE:
        near_id, near = profile.related.nearest(story)
    seed_best: tuple[str, float] | None = None
    seed_vectors = profile.seed_vectors(background) if len(profile.seeds) > 1 else {}
    for example in profile.seeds:
        sim = cosine(story, seed_vectors[example.id]) if seed_vectors else sim_core
        if seed_best is None or sim > seed_best[1]:
            seed_best = (example.id, round(sim, 4))

    via_neighbour = NEIGHBOUR_DISCOUNT * near - NEIGHBOUR_OFFSET
    if near_id is not None and via_neighbour > sim_core:
        # The rejected stories matter only when a related neighbour would raise the score:
        # most stories never ask, so that pool is rarely indexed (see `_Pool`).
        far_id, far = profile.unrelated.nearest(story)
    if via_neighbour > sim_core and far > near + NEIGHBOUR_MARGIN:
        reasons.append(
            Reason(
                "neighbour",
                f"as close to rejected story {far_id} ({far:.2f}) as to related story "
                f"{near_id} ({near:.2f}): the neighbour does not count",
                round(far, 4),
            )
        )
        via_neighbour = min(via_neighbour, sim_core)
    score = max(sim_core, via_neighbour)
    nearest: tuple[str, float] | None = seed_best
    if via_neighbour > sim_core and near_id is not None:
        nearest = (near_id, round(near, 4))
        reasons.append(
            Reason("neighbour", f"close to related story {near_id} ({near:.2f})", round(near, 4))
        )

    contributions = sorted(
        ((t, story[t] * core[t]) for t in story.keys() & core.keys()),
        key=lambda pair: (-pair[1], pair[0]),
    )
    matched = [(t, round(w, 4)) for t, w in contributions[:10] if w > 0]

    related = score >= profile.threshold
    if related and title and not foreign and via_neighbour <= sim_core:
        # On the seeds' word alone (no related story vouches for it), the headline must say
        # it too: a story whose headline shares next to nothing with the seeds is about
        # something else that happens to share their background (the same mayor, the city).
        headline = sum(core.get(t, 0.0) for t in set(terms(title)))
        if headline < HEADLINE_MIN:
            related = False
            reasons.append(
                Reason(
                    "headline",
                    f"its headline shares little with the seeds ({headline:.2f} < {HEADLINE_MIN})",
                    round(headline, 4),
                )
            )
    named: frozenset[str] = frozenset()
    if related:
        names = profile.proper_names()
        named = names & set(bag) & capitalised_terms(title, text)
        if names and not named:
            # Something like the topic, somewhere else or about someone else: a story about
            # the topic names at least one of its places, people or organisations.
            related = False
            reasons.append(Reason("names", "names none of the seeds' people, places or bodies"))
    plain = (
        f" {' '.join(tokenize(f'{title} {text}'))} " if profile.exclude or profile.keywords else ""
    )
    if profile.exclude:
        hits = [word for word in profile.exclude if _phrase_in(word, plain)]
        if hits:
            related = False
            reasons.append(Reason("exclude", f"contains excluded term {hits[0]!r}"))
    if related and profile.keywords and not any(_phrase_in(w, plain) for w in profile.keywords):
        related = False
        reasons.append(Reason("keywords", "contains none of the topic's keywords"))
    reasons.insert(
        0,
        Reason(
            "score",
            f"relevance {score:.2f} vs threshold {profile.threshold:.2f} "
            f"(seeds {sim_core:.2f}, nearest related story {near:.2f})",
            round(score, 4),
        ),
    )
    return Relevance(
        score=round(min(1.0, score), 4),
        related=related,
        matched_terms=matched,
        nearest=nearest,
        reasons=reasons,
        core=round(sim_core, 4),
        grow=related and not foreign and (sim_core >= GROW_CORE or near >= GROW_COPY),
        # A story near a related one is no clear negative: taken for one, it vetoed the
        # next reports of its event (a monitor started late missed Kabul's welcome of a
        # ruling, then everything that read like it).
        reject=not related and score < REJECT and near < REJECT_NEIGHBOUR,
        names=named,
    )


def wordfreq_prior(cache: TableCache | None = None) -> Prior | None:
    """The general-language prior from the `wordfreq` package, or None when not installed.

    Rarity of a word form = 7 - its Zipf frequency (so "the" ≈ 0, "list" ≈ 1.7, "taliban" ≈
    3.3); Cyrillic words are looked up as Russian, others as English; unknown words give None.
    ``cache`` keeps the tables `wordprior` builds, between processes.
    """
    if importlib.util.find_spec("wordfreq") is None:  # pragma: no cover - environment
        return None
    return _WordfreqPrior(cache)


class _WordfreqPrior:
    """`wordfreq_prior`'s prior, with `many` for a list of words."""

    def __init__(self, cache: TableCache | None) -> None:
        from . import wordprior

        self._lookup = wordprior.zipf_frequency
        self._lookup_many = wordprior.zipf_frequencies
        self._cache = cache

    def __call__(self, word: str) -> float | None:
        language = "ru" if _CYRILLIC_OR_GREEK.search(word) else "en"
        return _rarity(self._lookup(word, language, self._cache))

    def many(self, words: Sequence[str]) -> list[float | None]:
        out: list[float | None] = [None] * len(words)
        by_language: dict[str, list[int]] = {}
        for at, word in enumerate(words):
            language = "ru" if _CYRILLIC_OR_GREEK.search(word) else "en"
            by_language.setdefault(language, []).append(at)
        for language, places in by_language.items():
            zipfs = self._lookup_many([words[at] for at in places], language, self._cache)
            for at, zipf in zip(places, zipfs, strict=True):
                out[at] = _rarity(zipf)
        return out


def _rarity(zipf: float) -> float | None:
    return None if zipf <= 0.0 else 7.0 - zipf
