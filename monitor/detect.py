"""Judging stories for topics: the orchestration of score, dedupe and decide over storage.

`Judge.open` loads each topic's seeds (syncing the ``topics``, ``seeds`` and seed
``developments`` rows), its feedback, the stories it already judged and the background
term frequencies. `Judge.process` decides one stored story for every topic and writes the
decisions, developments, near-duplicate index rows and alert outbox rows, inside the
caller's transaction (the pipeline's per-feed ``atomic()``).

`explain` and `record_feedback` back the CLI commands of the same names.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from . import dedupe
from .corpus import load_seeds
from .decide import (
    RECENT_NEIGHBOUR_DAYS,
    Development,
    TopicVocabulary,
    best_development,
    decide,
    event_vector,
    label_for,
    lead_bag,
    phrase_share,
    restates_seed,
)
from .errors import UserError
from .models import DecisionIntent, Entry, Reason, Status
from .score import (
    REJECT,
    Background,
    Example,
    TopicProfile,
    analyse,
    as_written,
    build_profile,
    cosine,
    relevance,
    terms,
    wordfreq_prior,
)
from .storage.base import parse_iso
from .storage.detection import DetectionStore
from .text import content_hash, detect_language, post_fragment, story_body

RELATED = ("development", "coverage", "duplicate")
# A development's terms (the leads of its stories), as kept in memory and in the database
# alike: a judge opened from the database (a `monitor poll` from cron, a restarted daemon)
# must see the bags the judge that wrote them saw. 120 were stored while the bag in memory
# kept growing, and a story at the margin was coverage in one and a new development in the
# other. The dev stream's largest bag holds ~400 terms.
MAX_DEV_TERMS = 1000
# The reason an unrelated story below `REJECT` carries when it was kept out of the negative
# examples because a related story was close (`score.REJECT_NEIGHBOUR`).
NOT_NEGATIVE = "not a negative example: a related story is close"
VERDICTS = ("relevant", "irrelevant", "not-new")


class TopicLike(Protocol):
    """What the judge needs of a topic's settings (`config.TopicSettings` has it)."""

    @property
    def name(self) -> str: ...
    @property
    def seeds(self) -> tuple[Path, ...]: ...
    @property
    def keywords(self) -> tuple[str, ...]: ...
    @property
    def exclude(self) -> tuple[str, ...]: ...
    @property
    def threshold(self) -> float | None: ...


def _short_id(prefix: str, *parts: str) -> str:
    digest = hashlib.blake2b("\0".join(parts).encode(), digest_size=6).hexdigest()
    return f"{prefix}_{digest}"


@dataclass(slots=True)
class _Topic:
    name: str
    profile: TopicProfile
    seed_titles: dict[str, str]
    developments: list[Development] = field(default_factory=list)
    vocabulary: TopicVocabulary = field(default_factory=TopicVocabulary)
    recent: dict[str, tuple[str | None, datetime]] = field(default_factory=dict)


class _StoredCounts:
    """The judge's document frequencies (`Background.df`), kept in the database's term
    counts (`DetectionStore.term_count`, `count_terms`) rather than copied into memory."""

    __slots__ = ("_store",)

    def __init__(self, store: DetectionStore) -> None:
        self._store = store

    def get(self, term: str, default: int = 0, /) -> int:
        """The term's count (0, not ``default``, when no story counted holds it)."""
        return self._store.term_count(term)

    def update(self, words: Iterable[str], /) -> None:
        self._store.count_terms(words)


class Judge:
    """Decides stories for topics; one per process, opened with `Judge.open`."""

    def __init__(self, storage: DetectionStore, background: Background) -> None:
        self.storage = storage
        self.background = background
        self.topics: dict[str, _Topic] = {}
        self._feedback_seen: str | None = None

    # -- opening --------------------------------------------------------------------------

    @classmethod
    def open(cls, storage: DetectionStore, topics: Sequence[TopicLike], now: datetime) -> Judge:
        background = Background(
            df=_StoredCounts(storage), n=storage.counted_stories(), prior=wordfreq_prior(storage)
        )
        judge = cls(storage, background)
        for settings in topics:
            judge.topics[settings.name] = judge._open_topic(settings, now)
        judge._feedback_seen = storage.latest_feedback()
        return judge

    def _open_topic(self, settings: TopicLike, now: datetime) -> _Topic:
        store = self.storage
        seeds = load_seeds(settings.seeds)
        store.sync_topic(
            settings.name, threshold=settings.threshold, keywords=settings.keywords,
            exclude=settings.exclude, now=now,
        )  # fmt: skip
        # A seed's language is detected once per text (exactly as written: the model sees
        # letter case): loading the model costs each process ~15 ms, and most polls need
        # it for nothing else.
        kept = store.seed_languages([seed.id for seed in seeds])
        hashes = [content_hash(seed.title, seed.text) for seed in seeds]
        seed_languages: list[str] = []
        for seed in seeds:
            title, text, language = kept.get(seed.id, (None, None, None))
            if (title, text) != (seed.title, seed.text) or language is None:
                language = detect_language(seed.full_text) or "en"
            seed_languages.append(language)
        languages = Counter(seed_languages)
        profile = build_profile(
            settings.name,
            [(seed.id, seed.title, seed.text) for seed in seeds],
            keywords=settings.keywords,
            exclude=settings.exclude,
            threshold=settings.threshold,
            language=languages.most_common(1)[0][0] if languages else "en",
            surfaces=self.background.surfaces,
        )
        topic = _Topic(settings.name, profile, {seed.id: seed.title for seed in seeds})
        known = {row["first_story"]: row for row in store.development_rows(settings.name)}
        for seed, hash_, language in zip(seeds, hashes, seed_languages, strict=True):
            changed = store.sync_seed(
                settings.name, seed_id=seed.id, path=str(seed.path), title=seed.title,
                text=seed.text, content_hash=hash_, language=language, now=now,
            )  # fmt: skip
            if changed and (sig := dedupe.signature(seed.title, seed.text)) is not None:
                store.add_signature(
                    seed.id, kind=sig.kind, size=sig.size, signature=sig.to_bytes(),
                    bands=dedupe.band_keys(sig),
                )  # fmt: skip
            paragraphs = seed.text.split("\n")
            bag = lead_bag(
                seed.title,
                paragraphs[0] if paragraphs else "",
                "\n".join(paragraphs[1:3]),
                self.background.surfaces,
            )
            if seed.id not in known or changed:
                store.save_development(
                    id=_short_id("dev", settings.name, seed.id), topic=settings.name,
                    label=seed.title[:80], first_story=seed.id, sources=[], story_count=1,
                    terms=dict(bag), first_seen=now, last_seen=now,
                )  # fmt: skip
            elif known[seed.id]["label"] != seed.title[:80]:  # letter case or spacing only
                store.relabel_development(known[seed.id]["id"], seed.title[:80])
        for row in store.development_rows(settings.name):
            topic.developments.append(_development(row))
        # A judge opened here must know what the judge that wrote these decisions knew (a
        # `monitor poll` from cron opens one every run, a daemon at every start): the same
        # stories in the topic's vocabulary and among its examples, or the two decide the
        # same story apart (an item-by-item replay raised 2 seed alerts the whole replay did
        # not, and took a development for coverage).
        for row in store.judged_stories(settings.name, RELATED, limit=2000):
            if row["status"] in ("development", "coverage"):
                lead = lead_bag(
                    row["title"], row["summary"], row["content"], self.background.surfaces
                )
                topic.vocabulary.add(lead)
            published = parse_iso(row["published"])
            if published is not None:
                topic.recent[row["id"]] = (row["development"], published)
        for row in store.judged_stories(settings.name, RELATED, limit=400):
            grew = any(reason.get("kind") == "profile" for reason in json.loads(row["reasons"]))
            if grew or row["feedback"] == "relevant":
                example = Example(row["id"], row["title"], self._bag(row), "related")
                profile.learn(example, self.background)
        profile.unrelated.defer(partial(self._rejected_examples, settings.name))
        self._load_feedback(topic)
        return topic

    def _rejected_examples(self, topic: str) -> list[Example]:
        """The topic's latest clearly unrelated stories, as examples (read when needed): those
        that scored below `REJECT`, but not one a related story was close to (its decision
        says so: `NOT_NEGATIVE`; decisions written before that rule carry no such mark)."""
        return [
            Example(row["id"], row["title"], self._bag(row), "unrelated")
            for row in self.storage.judged_stories(topic, ("unrelated",), limit=600)
            if row["score"] < REJECT and NOT_NEGATIVE not in row["reasons"]
        ]

    def _bag(self, row: dict[str, Any]) -> Counter[str]:
        """The term bag of a stored story row (title, summary, content)."""
        return analyse(
            row["title"], story_body(row["summary"], row["content"]), self.background.surfaces
        )

    def _load_feedback(self, topic: _Topic) -> None:
        for row in self.storage.feedback_rows(topic.name):
            kind = "negative" if row["feedback"] == "irrelevant" else "positive"
            bag = self._bag(row)
            topic.profile.learn(Example(row["id"], row["title"], bag, kind), self.background)

    def _refresh_feedback(self) -> None:
        latest = self.storage.latest_feedback()
        if latest != self._feedback_seen:
            self._feedback_seen = latest
            for topic in self.topics.values():
                self._load_feedback(topic)

    # -- judging ----------------------------------------------------------------------------

    def first_gate(self, entry: Entry) -> bool:
        """A cheap early look: might this entry be related to some topic? (for enrichment)"""
        self.background.n = self.storage.counted_stories()
        body = story_body(entry.summary, entry.content)
        bag = analyse(entry.title, body, self.background.surfaces)
        for topic in self.topics.values():
            rel = relevance(
                topic.profile, entry.title, "", entry.language,
                background=self.background, bag=bag,
            )  # fmt: skip
            if rel.score >= topic.profile.threshold * 0.5:
                return True
        return False

    def process(
        self,
        story_id: str,
        entry: Entry,
        now: datetime,
        topics: Sequence[str] | None = None,
    ) -> list[DecisionIntent]:
        """Decide a stored story for every topic (or the named ones) and write the results."""
        store = self.storage
        # the word counts read from here on and the number of stories they are set against
        # are the database's at one moment (another process's counts move both)
        self.background.n = store.counted_stories()
        self._refresh_feedback()
        body = story_body(entry.summary, entry.content)
        bag = analyse(entry.title, body, self.background.surfaces)
        words = [t for t in bag if " " not in t]  # the bag's single words (bigrams have one)
        self.background.add(words)  # one more story (buffered: a feed's transaction is open)
        leads: list[Counter[str]] = []

        def lead() -> Counter[str]:
            """The story's lead bag, built the first time a topic needs it."""
            if not leads:
                leads.append(
                    lead_bag(entry.title, entry.summary, entry.content, self.background.surfaces)
                )
            return leads[0]

        copy = self._find_copy(story_id, entry, body)
        intents = []
        for name in topics or list(self.topics):
            topic = self.topics.get(name)
            if topic is None:
                continue
            intents.append(self._judge(topic, story_id, entry, bag, lead, copy, now))
        if not leads and entry.summary and entry.content.startswith(entry.summary[:80]):
            # No topic needed the lead, but building it records the word forms of its
            # terms (`terms`), which later stories' weights depend on. Its title and body
            # terms were recorded with ``bag`` just now; only a summary that the body left
            # out (`story_body`) can hold new ones: record those as the lead would have
            # (unless the body begins with the whole summary, then a space: then the
            # summary's tokens are the body's first ones, already recorded).
            rest = entry.content[len(entry.summary) : len(entry.summary) + 1]
            if not (entry.content.startswith(entry.summary) and (not rest or rest.isspace())):
                terms(entry.summary, self.background.surfaces)
        return intents

    def _find_copy(self, story_id: str, entry: Entry, body: str) -> dedupe.DuplicateVerdict | None:
        store = self.storage
        fragment = post_fragment(entry.key, entry.url)
        earlier = store.story_with_url(entry.canonical_url, exclude=story_id, fragment=fragment)
        sig = dedupe.signature(entry.title, body)
        found: dedupe.DuplicateVerdict | None = None
        if earlier is not None:
            found = dedupe.DuplicateVerdict(earlier, 1.0, 1.0, "url")
        if sig is None:
            return found
        keys = dedupe.band_keys(sig)
        if found is None:
            candidates = [
                (cid, dedupe.Signature.from_bytes(blob, size, kind))
                for cid, kind, size, blob in store.dedupe_candidates(keys, exclude=story_id)
            ]
            found = dedupe.verdict(sig, candidates)
        store.add_signature(
            story_id, kind=sig.kind, size=sig.size, signature=sig.to_bytes(), bands=keys
        )
        return found

    def _judge(
        self,
        topic: _Topic,
        story_id: str,
        entry: Entry,
        bag: Counter[str],
        lead: Callable[[], Counter[str]],
        copy: dedupe.DuplicateVerdict | None,
        now: datetime,
    ) -> DecisionIntent:
        store = self.storage
        profile = topic.profile
        body = story_body(entry.summary, entry.content)
        rel = relevance(
            profile, entry.title, body, entry.language, background=self.background, bag=bag
        )
        # Developments are dated, and their pull decays, by when their stories were
        # published, not by when a poll met them: the first poll of a feed's backlog (or
        # one after an outage) judges stories of past weeks at once, and dated by that poll
        # every old development looked reported today, so for weeks a new step that read
        # like one was taken for its coverage. Replay judges each story at its own time.
        told = min(now, entry.published)
        duplicate_status: tuple[Status, str | None] | None = None
        if copy is not None and copy.of.startswith("seed:") and copy.of not in topic.seed_titles:
            copy = None  # a copy of another topic's seed
        if copy is not None and not copy.of.startswith("seed:"):
            original = store.decision_of(copy.of, topic.name)
            if original is None:
                copy = None
            else:
                status = Status(original["status"])
                if original["feedback"] == "irrelevant":
                    status = Status.UNRELATED
                elif original["feedback"] in ("relevant", "not-new") and status == Status.UNRELATED:
                    status = Status.COVERAGE  # the user said the original is about the topic
                duplicate_status = (status, original["development"])
        match = None
        restates: tuple[Development, str] | None = None
        label = ""
        if rel.related and copy is None:
            # Only a related, original story needs its event (and a label): `decide` opens
            # or joins a development only for such a story, and returns earlier otherwise.
            story_vec = event_vector(lead(), self.background, topic.vocabulary)
            match = best_development(
                story_vec, topic.developments, self.background, topic.vocabulary, told, rel.names
            )
            restates = self._restated_seed(topic, bag, story_vec, rel.core)
            label = label_for(entry.title, story_vec)
        intent = decide(
            story_id=story_id,
            topic=topic.name,
            relevance=rel,
            duplicate=copy,
            duplicate_status=duplicate_status,
            match=match,
            label=label,
            neighbour=self._recent_neighbour(topic, rel.nearest, entry.published),
            foreign=any(r.kind == "language" for r in rel.reasons),
            restates=restates,
        )
        intent = self._apply(topic, intent, entry, lead, told)
        if intent.status != Status.UNRELATED and rel.grow and intent.status != Status.DUPLICATE:
            example = Example(story_id, entry.title, bag, "related")
            profile.learn(example, self.background)
            intent = replace(
                intent,
                reasons=(*intent.reasons, Reason("profile", "joins the topic's examples")),
            )
        elif intent.status == Status.UNRELATED and rel.reject:
            example = Example(story_id, entry.title, bag, "unrelated")
            profile.learn(example, self.background)
        elif intent.status == Status.UNRELATED and rel.score < REJECT:
            # (marked for a judge opened from the database: see `_rejected_examples`)
            intent = replace(intent, reasons=(*intent.reasons, Reason("profile", NOT_NEGATIVE)))
        if intent.status in (Status.DEVELOPMENT, Status.COVERAGE):
            topic.vocabulary.add(lead())
        if intent.status != Status.UNRELATED:
            topic.recent[story_id] = (intent.development, entry.published)
            if len(topic.recent) > 2000:
                del topic.recent[next(iter(topic.recent))]
        store.write_decision(intent, intent.development, now)
        if intent.alert and intent.development is not None:
            self._alert(topic, intent, entry, rel.matched_terms, rel.nearest, body, now)
        return intent

    def _restated_seed(
        self, topic: _Topic, bag: Counter[str], story_vec: dict[str, float], core: float
    ) -> tuple[Development, str] | None:
        """(the undated seed development this story restates, why), if any."""
        seeds = {e.id: e for e in topic.profile.seeds}
        for dev in topic.developments:
            seed = seeds.get(dev.seed or "")
            if seed is None or dev.last_seen is not None:
                continue
            event = cosine(story_vec, event_vector(dev.bag, self.background, topic.vocabulary))
            why = restates_seed(phrase_share(bag, seed.bag), event, core)
            if why is not None:
                return dev, why
        return None

    def _recent_neighbour(
        self, topic: _Topic, nearest: tuple[str, float] | None, published: datetime
    ) -> tuple[str, float] | None:
        """(development, similarity) of the nearest related story if it is recent."""
        if nearest is None or nearest[0].startswith("seed:"):
            return None
        seen = topic.recent.get(nearest[0])
        if seen is None:
            return None
        development, when = seen
        days = abs((published - when).total_seconds()) / 86400.0
        if development is None or days > RECENT_NEIGHBOUR_DAYS:
            return None
        return development, nearest[1]

    def _apply(
        self,
        topic: _Topic,
        intent: DecisionIntent,
        entry: Entry,
        lead: Callable[[], Counter[str]],
        told: datetime,
    ) -> DecisionIntent:
        """Open or update the development the decision names, reported at ``told`` (when
        the story was published, or now if that is later); return the intent with its ID."""
        source = entry.source or ""
        if intent.status == Status.DEVELOPMENT:
            dev = Development(
                id=_short_id("dev", topic.name, intent.story_id),
                label=intent.new_development_label or entry.title[:60],
                first_story=intent.story_id,
                first_seen=told,
                last_seen=told,
                bag=Counter(lead()),
                sources=[source] if source else [],
            )
            topic.developments.append(dev)
            self._save(topic, dev)
            return replace(intent, development=dev.id)
        if intent.development is None:
            return intent
        dev_or_none = next((d for d in topic.developments if d.id == intent.development), None)
        if dev_or_none is None:
            return intent
        dev = dev_or_none
        dev.story_count += 1
        if dev.first_seen is None:
            dev.first_seen = told  # a seed's development is dated by its first report
        dev.last_seen = told if dev.last_seen is None else max(dev.last_seen, told)
        if source and source not in dev.sources:
            dev.sources.append(source)
        if intent.status == Status.COVERAGE:
            dev.bag.update(lead())
            if len(dev.bag) > MAX_DEV_TERMS:
                dev.bag = Counter(dict(_heaviest(dev.bag)))
        self._save(topic, dev)
        return intent

    def _save(self, topic: _Topic, dev: Development) -> None:
        terms = {t: float(c) for t, c in _heaviest(dev.bag)}
        self.storage.save_development(
            id=dev.id, topic=topic.name, label=dev.label, first_story=dev.first_story,
            sources=dev.sources, story_count=dev.story_count, terms=terms,
            first_seen=dev.first_seen or dev.last_seen or _epoch(),
            last_seen=dev.last_seen or dev.first_seen or _epoch(),
        )  # fmt: skip

    def _alert(
        self,
        topic: _Topic,
        intent: DecisionIntent,
        entry: Entry,
        matched: list[tuple[str, float]],
        nearest: tuple[str, float] | None,
        summary: str,
        now: datetime,
    ) -> None:
        dev = next(d for d in topic.developments if d.id == intent.development)
        nearest_seed = None
        if nearest is not None and nearest[0] in topic.seed_titles:
            nearest_seed = {
                "id": nearest[0], "title": topic.seed_titles[nearest[0]], "similarity": nearest[1]
            }  # fmt: skip
        payload: dict[str, Any] = {
            "type": "development.new",
            "topic": topic.name,
            "story": {
                "id": intent.story_id,
                "url": entry.url,
                "title": entry.title,
                "source": entry.source,
                "published": entry.published.isoformat(),
                "summary": (entry.summary or summary)[:500],
            },
            "development": {
                "id": dev.id,
                "label": dev.label,
                "sources": list(dev.sources),
                "story_count": dev.story_count,
            },
            "score": intent.score,
            "reasons": [
                {"kind": r.kind, "text": r.text, "weight": r.weight} for r in intent.reasons
            ],
            "matched_terms": [[t, w] for t, w in as_written(matched, entry.title, summary)],
            "nearest_seed": nearest_seed,
        }
        self.storage.enqueue_development_alert(
            topic=topic.name, story_id=intent.story_id, development=dev.id, payload=payload,
            now=now,
        )  # fmt: skip


def _epoch() -> datetime:
    return datetime.fromisoformat("1970-01-01T00:00:00+00:00")


def _heaviest(bag: Counter[str]) -> list[tuple[str, int]]:
    """A development's `MAX_DEV_TERMS` heaviest terms, ties in term order (so the same bag
    gives the same terms however it was built: in memory, or read back)."""
    return sorted(bag.items(), key=lambda item: (-item[1], item[0]))[:MAX_DEV_TERMS]


def _development(row: dict[str, Any]) -> Development:
    seed = row["first_story"] if str(row["first_story"]).startswith("seed:") else None
    last = parse_iso(row["last_seen"])
    first = parse_iso(row["first_seen"])
    if seed is not None and row["story_count"] <= 1:
        first = last = None  # a seed's date is unknown until a story reports it
    return Development(
        id=row["id"],
        label=row["label"],
        first_story=row["first_story"],
        first_seen=first,
        last_seen=last,
        bag=Counter({str(k): float(v) for k, v in json.loads(row["terms"]).items()}),
        sources=list(json.loads(row["sources"])),
        story_count=int(row["story_count"]),
        seed=seed,
    )


# -- explain and feedback (the CLI commands) ------------------------------------------------


def explain(storage: DetectionStore, id_or_url: str) -> str:
    """Why a story got its decision(s), in plain words."""
    story = storage.story_row(id_or_url)
    lines = [
        f"Story {story['id']}: {story['title']}",
        f"  {story['url']}",
        f"  from {story['source'] or 'unknown source'}, published {story['published']}",
    ]
    if story.get("pruned_at"):
        lines.append(
            f"  Its text was cleared at {story['pruned_at']} (database.retention); "
            "the decisions below are as recorded."
        )
    decisions = storage.decisions_of(story["id"])
    if not decisions:
        lines.append("No decision recorded for this story.")
    for decision in decisions:
        lines.append("")
        lines.append(f"Topic {decision['topic']}: {decision['status'].upper()}")
        reasons = json.loads(decision["reasons"])
        for reason in reasons:
            weight = reason.get("weight")
            suffix = "" if weight is None else f"  [{weight:.2f}]"
            lines.append(f"  - {reason['text']}{suffix}")
        if decision["duplicate_of"]:
            original = storage.story_brief(decision["duplicate_of"])
            what = original["title"] if original else decision["duplicate_of"]
            lines.append(f"  Duplicate of {decision['duplicate_of']}: {what}")
        if decision["development"]:
            rows = [
                r for r in storage.development_rows(decision["topic"])
                if r["id"] == decision["development"]
            ]  # fmt: skip
            if rows:
                dev = rows[0]
                sources = ", ".join(json.loads(dev["sources"])) or "none yet"
                lines.append(
                    f'  Development {dev["id"]} "{dev["label"]}": {dev["story_count"]} '
                    f"stories; sources: {sources}"
                )
        alert = storage.development_alert(story["id"], decision["topic"])
        if alert is not None:
            payload = alert["payload"]
            terms = ", ".join(f"{t} ({w:.2f})" for t, w in payload.get("matched_terms", [])[:8])
            lines.append(f"  Alert {alert['id']}: {alert['status']}")
            if terms:
                lines.append(f"  Matched terms: {terms}")
        if decision["feedback"]:
            lines.append(
                f"  Feedback recorded: {decision['feedback']} at {decision['feedback_at']}"
            )
    return "\n".join(lines)


def record_feedback(
    storage: DetectionStore, story_id: str, verdict: str, now: datetime, topic: str | None = None
) -> str:
    """Record a user's verdict on a story for ``topic``, or for the one topic that judged
    it (several: the topic must be named, since a story may belong to one topic and not to
    another); later decisions learn from it (relevant → a positive example of the topic,
    irrelevant → a negative one)."""
    if verdict not in VERDICTS:
        raise UserError(f"unknown verdict {verdict!r} (expected one of: {', '.join(VERDICTS)})")
    story = storage.story_row(story_id)
    decisions = storage.decisions_of(story["id"])
    if not decisions:
        raise UserError(f"story {story_id!r} has no decision to give feedback on")
    judged = ", ".join(d["topic"] for d in decisions)
    if topic is not None:
        decisions = [d for d in decisions if d["topic"] == topic]
        if not decisions:
            raise UserError(
                f"story {story['id']} was not judged for topic {topic!r} (judged for: {judged})"
            )
    elif len(decisions) > 1:
        raise UserError(
            f"story {story['id']} was judged for {len(decisions)} topics ({judged}): "
            "name one with --topic"
        )
    for decision in decisions:
        storage.set_feedback(story["id"], decision["topic"], verdict, now)
    topics = ", ".join(d["topic"] for d in decisions)
    meaning = {
        "relevant": "it will count as an example of the topic",
        "irrelevant": "stories like it will count against the topic",
        "not-new": "it is recorded as reporting nothing new",
    }[verdict]
    if story.get("pruned_at") and verdict != "not-new":
        meaning += " (its text was cleared by database.retention: only its title counts)"
    return f"Recorded {verdict} for {story['id']} ({topics}): {meaning}."
