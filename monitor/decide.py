"""Decide one story for one topic: development, coverage, duplicate or unrelated.

Pure core: maps (relevance, duplicate verdict, the topic's known developments, the story,
now) to a `DecisionIntent`; no database, no clock. ``detect.Judge`` gathers the inputs
and writes the intents.

- Not related → ``unrelated`` (a copy of a story keeps that story's verdict, so a copy is
  never judged apart from its original).
- A copy of a seed or of a related stored story → ``duplicate``, in the original's
  development.
- Otherwise the story's *event vector* (headline and lead, weighted against the topic's
  own vocabulary so that the words every story of the topic shares count little) is
  compared with each known development, with the similarity decaying with the time since
  the development was last reported: the same words a year later are more likely a new
  step than a late report. The seeds are the first known developments; a story that
  reports the seeds' own development restates the seed → ``duplicate`` of the seed.
  Close enough to a development → ``coverage``; else a new ``development`` and an alert.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from .dedupe import DuplicateVerdict
from .models import DecisionIntent, Reason, Status
from .score import Background, Relevance, Vector, analyse, cosine, normalise, terms

SAME_DEVELOPMENT = 0.12  # event similarity (after decay) at which a story covers a development
SEED_RESTATEMENT = 0.16  # the same, for the seeds' own development (then: duplicate of seed)...
SEED_CORE = 0.26  # ...when the whole story is also this close to the seeds
SEED_PHRASES = 0.17  # share of a story's word pairs found in a seed: it repeats the seed's
SEED_PHRASES_MIN = 10  # ...quotes, names and figures (and at least this many pairs: a short
# later step names the seed's places, people and bodies in a handful of pairs)
SEED_EVENT = 0.5  # or: event similarity to an undated seed at which a story restates it
RECENT_NEIGHBOUR_DAYS = 2.0  # a story this close in time to its nearest related story...
RECENT_NEIGHBOUR = 0.35  # ...and this similar to it (full text) covers that story's development
HALF_LIFE_DAYS = 3.0  # a development's pull halves every this many days after its last report
FLOOR = 0.1  # ...but never falls below this share (a late analysis still matches)
LEAD_WORDS = 80  # words of the body that make the lead
NAME_EVENT = 0.75  # weight of the seeds' names when a story is compared with a later step


@dataclass(slots=True)
class Development:
    """A known development of a topic: its first story (or seed), its label and its terms."""

    id: str
    label: str
    first_story: str
    first_seen: datetime | None  # None for a seed: its date is unknown
    last_seen: datetime | None
    bag: Counter[str] = field(default_factory=Counter)
    sources: list[str] = field(default_factory=list)
    story_count: int = 1
    seed: str | None = None  # the seed ID when this is a seed's own development


@dataclass(slots=True)
class TopicVocabulary:
    """Document frequencies over the topic's related stories: what every story of the topic
    says anyway (its name, its actors) and is therefore no evidence of a new event."""

    df: Counter[str] = field(default_factory=Counter)
    n: int = 0

    def add(self, bag: Mapping[str, float]) -> None:
        self.n += 1
        self.df.update(set(bag))

    def share(self, term: str) -> float:
        return self.df.get(term, 0) / (self.n + 3)


def lead_bag(
    title: str, summary: str, content: str, surfaces: dict[str, str] | None = None
) -> Counter[str]:
    """Headline + summary + the first words of the body: where a report states its event."""
    body = " ".join(content.split()[:LEAD_WORDS])
    return analyse(title, f"{summary}\n\n{body}", surfaces)


def event_vector(
    bag: Mapping[str, float], background: Background, vocabulary: TopicVocabulary
) -> Vector:
    out: dict[str, float] = {}
    for term, count in bag.items():
        if count <= 0:
            continue
        weight = (1.0 + math.log(count)) * background.idf(term)
        weight *= (1.0 - vocabulary.share(term)) ** 2
        if weight > 0:
            out[term] = weight
    return normalise(out)


def without_names(vec: Mapping[str, float], names: frozenset[str]) -> Vector:
    """An event vector with the given names (and word pairs holding one) weighed down.

    The seeds' people, places and bodies take part in every step of the story: they say
    who, not what happened. Two steps on one day (a court's ruling, and the losing side's
    appeal) share their cast; weighing the cast down lets the new action count."""
    out: dict[str, float] = {}
    for term, weight in vec.items():
        named = any(word in names for word in term.split(" "))
        out[term] = weight * NAME_EVENT if named else weight
    return normalise(out)


def decay(development: Development, now: datetime) -> float:
    if development.last_seen is None:
        return 1.0
    days = max(0.0, (now - development.last_seen).total_seconds() / 86400.0)
    return float(FLOOR + (1.0 - FLOOR) * 0.5 ** (days / HALF_LIFE_DAYS))


# Punctuation a headline's word may carry at its edges ("'ban'", "list:", "(update)").
_WORD_EDGES = "\"'`“”‘’«»„‚‹›()[]{}<>,.;:!?…—–-/|*#"
LABEL_MAX_CHARS = 80


def label_for(title: str, vec: Mapping[str, float], words: int = 6) -> str:
    """A short label: the headline's ``words`` most distinctive terms (by their weight in
    ``vec``; ties in headline order), kept in headline order and written as the headline
    writes them (the first letter upper case), e.g. "Kazakhstan drops Taliban from list of
    banned organisations" → "Kazakhstan drops Taliban list banned organisations". A
    headline without a term is its own label; a label is cut at `LABEL_MAX_CHARS`."""
    headline = dict.fromkeys(t for t in terms(title) if " " not in t)
    keep = set(sorted(headline, key=lambda t: -vec.get(t, 0.0))[:words])
    picked: list[str] = []
    seen: set[str] = set()
    for raw in title.split():
        found = [t for t in terms(raw) if t in keep and t not in seen]
        if found:
            seen.update(found)
            picked.append(raw.strip(_WORD_EDGES) or raw)
    label = _shorten(" ".join(picked) or " ".join(title.split()), LABEL_MAX_CHARS)
    return label[:1].upper() + label[1:]


def _shorten(text: str, limit: int) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters, with "…" if cut."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0] or text[: limit - 1]
    return cut.rstrip(" ,;:") + "…"


@dataclass(frozen=True, slots=True)
class Match:
    development: Development
    similarity: float
    raw: float


def best_development(
    story_vec: Vector,
    developments: Sequence[Development],
    background: Background,
    vocabulary: TopicVocabulary,
    now: datetime,
    names: frozenset[str] = frozenset(),
) -> Match | None:
    """The known development the story's event vector is most similar to, after decay.

    ``names`` are the seeds' names the story names (`Relevance.names`): against a
    development opened by a story they count `NAME_EVENT` as much (`without_names`);
    against the seed's own development, whose restatements quote the same people, fully."""
    best: Match | None = None
    unnamed = without_names(story_vec, names) if names else story_vec
    for development in developments:
        if development.seed and development.last_seen is None:
            continue  # a seed's development is matched on its phrasing until a story dates it
        event = event_vector(development.bag, background, vocabulary)
        if development.seed or not names:
            raw = cosine(story_vec, event)
        else:
            raw = cosine(unnamed, without_names(event, names))
        sim = raw * decay(development, now)
        if best is None or sim > best.similarity:
            best = Match(development, sim, raw)
    return best


def phrase_share(bag: Mapping[str, float], seed_bag: Mapping[str, float]) -> tuple[float, int]:
    """(share, count) of the story's distinct word pairs that also occur in the seed.

    Independent reports of one event repeat its quotes, names with titles and figures in
    the same word pairs; an earlier or later step of the story reuses the topic's words
    but seldom the seed's phrases."""
    pairs = [t for t in bag if " " in t]
    if not pairs:
        return 0.0, 0
    shared = sum(1 for t in pairs if t in seed_bag)
    return shared / len(pairs), shared


def restates_seed(share: tuple[float, int], event: float, core: float) -> str | None:
    """Whether a story restates a seed while the seed is undated: it repeats the seed's
    phrasing, or its lead reports the seed's event in nearly the same terms. Returns why."""
    if core < SEED_CORE:
        return None
    if share[0] >= SEED_PHRASES and share[1] >= SEED_PHRASES_MIN:
        return f"{share[0]:.0%} of its word pairs are the seed's"
    if event >= SEED_EVENT:
        return f"its lead reports the seed's event (similarity {event:.2f})"
    return None


def decide(
    *,
    story_id: str,
    topic: str,
    relevance: Relevance,
    duplicate: DuplicateVerdict | None,
    duplicate_status: tuple[Status, str | None] | None,
    match: Match | None,
    label: str,
    neighbour: tuple[str, float] | None = None,
    foreign: bool = False,
    restates: tuple[Development, str] | None = None,
) -> DecisionIntent:
    """The decision for one story and topic.

    ``duplicate_status`` is the original's (status, development) for this topic when
    ``duplicate`` points to a stored story; for a seed it is None and the copy is related.
    ``match`` is the best known development (see `best_development`); ``label`` names a
    new development if one is opened. ``neighbour`` is (development ID, similarity) of the
    story's nearest related story when that was published within `RECENT_NEIGHBOUR_DAYS`.
    A story in another language than the topic's (``foreign``) never opens a development:
    only names and shared words can be compared, too little to tell a new event apart.
    ``restates`` is (a seed's undated development, why) when the story restates that seed
    (see `restates_seed`): a duplicate of the seed, and it dates the seed.
    """
    reasons = list(relevance.reasons)
    if duplicate is not None:
        reasons.append(Reason("duplicate", duplicate.describe(), duplicate.jaccard))
        if duplicate.of.startswith("seed:"):
            return DecisionIntent(
                story_id, topic, Status.DUPLICATE, relevance.score, None, duplicate.of,
                tuple(reasons),
            )  # fmt: skip
        if duplicate_status is not None:
            status, development = duplicate_status
            if status == Status.UNRELATED:
                return DecisionIntent(
                    story_id, topic, Status.UNRELATED, relevance.score, None, None,
                    tuple(reasons),
                )  # fmt: skip
            return DecisionIntent(
                story_id, topic, Status.DUPLICATE, relevance.score, development, duplicate.of,
                tuple(reasons),
            )  # fmt: skip
    if not relevance.related:
        return DecisionIntent(
            story_id, topic, Status.UNRELATED, relevance.score, None, None, tuple(reasons)
        )
    if restates is not None and restates[0].seed:
        seed_dev, why = restates
        reasons.append(Reason("seed", f"restates the seed {seed_dev.seed}: {why}"))
        return DecisionIntent(
            story_id, topic, Status.DUPLICATE, relevance.score, seed_dev.id, seed_dev.seed,
            tuple(reasons),
        )  # fmt: skip
    if match is not None:
        dev = match.development
        threshold = SAME_DEVELOPMENT
        reasons.append(
            Reason(
                "development",
                f"nearest development {dev.id} ({dev.label}): similarity {match.raw:.2f}, "
                f"{match.similarity:.2f} after time decay, needs {threshold:.2f}",
                round(match.similarity, 4),
            )
        )
        if dev.seed and relevance.core < SEED_CORE and not foreign:
            threshold = max(threshold, 1.0)
        if match.similarity >= threshold or (foreign and match.similarity > 0.0):
            if dev.seed:
                reasons.append(Reason("seed", f"restates the seed {dev.seed}"))
                return DecisionIntent(
                    story_id, topic, Status.DUPLICATE, relevance.score, dev.id, dev.seed,
                    tuple(reasons),
                )  # fmt: skip
            return DecisionIntent(
                story_id, topic, Status.COVERAGE, relevance.score, dev.id, None, tuple(reasons)
            )
    if neighbour is not None and neighbour[1] >= RECENT_NEIGHBOUR:
        reasons.append(
            Reason(
                "development",
                f"nearly the same text as a recent story of development {neighbour[0]} "
                f"({neighbour[1]:.2f})",
                neighbour[1],
            )
        )
        return DecisionIntent(
            story_id, topic, Status.COVERAGE, relevance.score, neighbour[0], None, tuple(reasons)
        )
    reasons.append(Reason("new", f"reports something not known before: {label}"))
    return DecisionIntent(
        story_id, topic, Status.DEVELOPMENT, relevance.score, None, None, tuple(reasons),
        new_development_label=label, alert=True,
    )  # fmt: skip
