"""Relevance, dedupe, decisions, the Judge, feedback and explain (the detection core)."""

from __future__ import annotations

import json
import math
import os
import sqlite3
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor import dedupe
from monitor.corpus import load_seeds
from monitor.decide import LABEL_MAX_CHARS, label_for
from monitor.detect import Judge, explain, record_feedback
from monitor.errors import SeedError, UserError
from monitor.models import Entry, Status
from monitor.score import (
    MAX_IDF,
    REJECT,
    Background,
    Example,
    analyse,
    build_profile,
    cosine,
    one_name,
    relevance,
    seed_names,
    stem,
    terms,
    vector,
)
from monitor.storage import Storage
from monitor.text import canonical_url, content_hash, html_to_text, tokenize
from tests.storage_helpers import database_before

GOLDEN = Path(__file__).parent / "golden" / "explain"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)

SEED = """City of Norbury to close its harbour bridge to lorries
Norbury's council decided on Tuesday to close the Old Harbour Bridge to lorries heavier \
than 7.5 tonnes from June, after engineers found corrosion in the bridge's steel cables.
Mayor Ines Calder said the ban on heavy lorries would stay until the cables are replaced, \
a repair the council expects to take two years and cost 40 million.
Hauliers warned that the lorry ban on the harbour bridge would add an hour to deliveries \
to the port, and asked the council to open a temporary ferry for freight.
The bridge carries 30,000 vehicles a day, about a tenth of them lorries, engineers said.
"""

WIRE = (
    "NORBURY, May 2 (Coast Wire) - Norbury's harbour bridge will close to heavy lorries on "
    "June 1, the city council confirmed on Friday, as engineers prepare to replace corroded "
    "steel cables that hold up the main span of the ninety-year-old structure.\n\n"
    "The council said signs and weight cameras would be installed at both ends of the "
    "bridge during May, and that drivers of lorries over 7.5 tonnes who ignore the ban "
    "would be fined. Hauliers will be directed to the ring road, which adds about twenty "
    "kilometres to a crossing.\n\n"
    "Port operators said they were talking to the council about a temporary freight ferry "
    "across the harbour, and expected a decision within weeks. The repair is expected to "
    "last two years.\n\n"
    "Engineers found the corrosion during a routine inspection last autumn, and the city "
    "has since limited the bridge to one lane in each direction at night."
)


class Store(Storage):
    """Storage with the detection use cases (the pipeline's Storage composes them too)."""


@dataclass(frozen=True)
class Topic:
    name: str
    seeds: tuple[Path, ...]
    keywords: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    threshold: float | None = None


def entry(title: str, body: str = "", *, url: str, when: datetime, source: str = "Desk") -> Entry:
    summary = html_to_text(body.split("\n\n")[0]) if body else ""
    content = html_to_text(body)
    return Entry(
        key=url,
        url=url,
        canonical_url=canonical_url(url),
        title=title,
        summary=summary,
        content=content,
        published=when,
        content_hash=content_hash(title, summary, content),
        source=source,
        language="en",
    )


def restatement() -> Entry:
    """A story that tells the seed again in other words (a duplicate of it)."""
    return entry(
        "Norbury council closes Old Harbour Bridge to heavy lorries",
        "Norbury's council on Tuesday decided to close the Old Harbour Bridge to lorries "
        "over 7.5 tonnes from June after corrosion was found in its steel cables. Mayor Ines "
        "Calder said the lorry ban would last until the cables are replaced, in about two "
        "years, at a cost of 40 million. Hauliers asked for a temporary freight ferry.",
        url="https://a.example/restated", when=T0,
    )  # fmt: skip


def ferry_step(when: datetime) -> Entry:
    """A later step of the seed's story: the ferry starts as the ban begins."""
    return entry(
        "Norbury opens freight ferry as lorry ban on harbour bridge begins",
        "A temporary freight ferry began crossing Norbury harbour on Monday, the day the "
        "lorry ban on the Old Harbour Bridge took effect. The ferry carries twelve lorries a "
        "trip; hauliers said queues at the port terminal reached two hours.",
        url="https://b.example/ferry", when=when,
    )  # fmt: skip


@pytest.fixture
def seed_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "seeds"
    folder.mkdir()
    (folder / "bridge.txt").write_text(SEED, encoding="utf-8")
    return folder


@pytest.fixture
def store(tmp_path: Path) -> Store:
    storage = Store(tmp_path / "monitor.db")
    yield storage
    storage.close()


def judge_one(judge: Judge, store: Store, item: Entry, now: datetime) -> Status:
    with store.atomic():
        sid = store.insert_story(item, origin="test", feed_id=None, now=now)
        [intent] = judge.process(sid, item, now)
    return intent.status


# -- corpus ----------------------------------------------------------------------------


def test_seed_formats(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("Title line\nBody text here.", encoding="utf-8")
    (tmp_path / "b.md").write_text("Intro\n# Heading title\nMarkdown body.", encoding="utf-8")
    (tmp_path / "c.html").write_text(
        "<html><head><title>Page &amp; title</title></head><body><p>HTML body.</p></body></html>",
        encoding="utf-8",
    )
    docs = {doc.id: doc for doc in load_seeds([tmp_path])}
    assert docs["seed:a.txt"].title == "Title line"
    assert docs["seed:b.md"].title == "Heading title"
    assert docs["seed:c.html"].title == "Page & title"
    assert "HTML body." in docs["seed:c.html"].text


@pytest.mark.parametrize("content", ["", "   \n\n", b"\xff\xfe\x00bad"])
def test_unusable_seed_names_the_file(tmp_path: Path, content: str | bytes) -> None:
    path = tmp_path / "broken.txt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(SeedError, match=r"broken\.txt"):
        load_seeds([path])


def test_missing_seed_path(tmp_path: Path) -> None:
    with pytest.raises(SeedError, match="nowhere"):
        load_seeds([tmp_path / "nowhere"])


# -- similarity properties ---------------------------------------------------------------

WORDS = ["bridge", "lorry", "ban", "council", "harbour", "port", "cable", "mayor"]
words = st.lists(st.sampled_from(WORDS))


@settings(max_examples=60, deadline=None)
@given(words, words)
def test_cosine_symmetric_and_bounded(a: list[str], b: list[str]) -> None:
    bg = Background()
    va, vb = vector(analyse(" ".join(a), ""), bg), vector(analyse(" ".join(b), ""), bg)
    assert cosine(va, vb) == pytest.approx(cosine(vb, va))
    assert 0.0 <= cosine(va, vb) <= 1.0


@settings(max_examples=30, deadline=None)
@given(st.text(min_size=1, max_size=400), st.text(min_size=1, max_size=400))
def test_jaccard_symmetric_and_bounded(a: str, b: str) -> None:
    sa, sb = dedupe.signature(a, a), dedupe.signature(b, b)
    if sa is None or sb is None or sa.kind != sb.kind:
        return
    assert dedupe.jaccard(sa, sb) == dedupe.jaccard(sb, sa)
    assert 0.0 <= dedupe.jaccard(sa, sb) <= 1.0


def test_terms_in_other_scripts_never_crash() -> None:
    for text in ("Талибан исключён из списка", "طالبان از فهرست حذف شد", "तालिबान को सूची से हटाया"):
        assert terms(text)
    assert "taliban" in terms("движения «Талибан»")  # transliterated: names meet across scripts


# -- dedupe -----------------------------------------------------------------------------

paragraphs = WIRE.split("\n\n")
EDITS = {
    "new headline": ("A different headline", WIRE),
    "trimmed ending": ("Bridge closes", "\n\n".join(paragraphs[:-1])),
    "extended ending": ("Bridge closes", WIRE + "\n\nThe mayor will speak on Monday."),
    "byline": ("Bridge closes", "By Ann Lee, Staff Writer\n\n" + WIRE),
    "read more footer": ("Bridge closes", WIRE + "\n\nRead more: www.example.com/norbury"),
    "html wrapped": ("Bridge closes", html_to_text(f"<div><p>{WIRE}</p><img src=x></div>")),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_dedupe_catches_edits(edit: str) -> None:
    original = dedupe.signature("Norbury bridge to shut to lorries", WIRE)
    title, body = EDITS[edit]
    copy = dedupe.signature(title, body)
    assert original is not None and copy is not None
    assert set(dedupe.band_keys(original)) & set(dedupe.band_keys(copy)), "LSH must find it"
    found = dedupe.verdict(copy, [("s_orig", original)])
    assert found is not None and found.of == "s_orig"


def test_title_only_copies_and_independent_reports() -> None:
    a = dedupe.signature("FLASH: Norbury closes harbour bridge to lorries", "")
    b = dedupe.signature("Flash - Norbury closes harbour bridge to lorries", "")
    assert a is not None and b is not None and a.kind == "title"
    assert dedupe.verdict(b, [("s_a", a)]) is not None
    other = (
        "Lorries will no longer be allowed across Norbury's Old Harbour Bridge from next "
        "month. Councillors voted after a report on rusting cables; the haulage association "
        "called the decision rushed and said firms would pass on the cost of longer routes. "
        "A ferry for freight is under discussion with the port, officials said on Friday."
    )
    independent = dedupe.signature("Norbury bans lorries from bridge", other)
    original = dedupe.signature("Norbury bridge to shut to lorries", WIRE)
    assert independent is not None and original is not None
    assert dedupe.verdict(independent, [("s_orig", original)]) is None


def test_tracking_parameters_do_not_hide_a_copy(seed_dir: Path, store: Store) -> None:
    judge = Judge.open(store, [Topic("bridge", (seed_dir,))], T0)
    url = "https://news.example.org/norbury-bridge"
    first = entry("Norbury bridge to shut to lorries", WIRE, url=url, when=T0)
    again = entry(
        "Bridge shuts", "Short teaser only.", url=url + "?utm_source=rss&utm_medium=feed",
        when=T0 + timedelta(hours=1),
    )  # fmt: skip
    judge_one(judge, store, first, T0)
    with store.atomic():
        sid = store.insert_story(again, origin="other", feed_id=None, now=T0)
        [intent] = judge.process(sid, again, T0 + timedelta(hours=1))
    assert intent.status == Status.DUPLICATE


# -- relevance, decisions, feedback --------------------------------------------------------


def test_profile_scores_on_topic_above_off_topic(seed_dir: Path) -> None:
    seeds = load_seeds([seed_dir])
    profile = build_profile("bridge", [(s.id, s.title, s.text) for s in seeds])
    on = relevance(profile, "Norbury bridge to shut to lorries", WIRE)
    off = relevance(profile, "Norbury wins football cup", "The club beat its rivals 2-0.")
    short = relevance(profile, "Lorry ban on Norbury harbour bridge starts", "")
    assert on.related and short.related and not off.related
    assert on.score > off.score
    assert on.matched_terms and on.nearest is not None


def test_a_story_close_to_a_related_one_is_no_negative_example(seed_dir: Path) -> None:
    """Stories below `REJECT` become the topic's negative examples, which veto related
    neighbours of later stories. One close to a related story is no clear negative: taken
    for one, it vetoed the later reports of its event too (a monitor started late missed
    one report of an event on its seeds' score, then the rest through it)."""
    seeds = load_seeds([seed_dir])
    profile = build_profile("bridge", [(s.id, s.title, s.text) for s in seeds])
    background = Background()
    title = "Norbury freight ferry carries its first lorries across the harbour"
    text = (
        "The temporary freight ferry made its first crossing of Norbury harbour on Monday "
        "with twelve lorries aboard, as hauliers queued at the port terminal. The port "
        "authority said crossings would run every hour, day and night, while the bridge is "
        "closed to heavy traffic."
    )
    profile.learn(Example("s_ferry", title, analyse(title, text), "related"), background)
    near = relevance(
        profile, "Ferry fares rise across the region",
        "Ferry operators raised fares by five percent on Monday, blaming fuel costs; night "
        "crossings were cut.", background=background,
    )  # fmt: skip
    far = relevance(
        profile, "Norbury dock workers vote on strike",
        "Dock workers at Norbury port voted on Monday on a strike over pay and night shifts, "
        "the union said.", background=background,
    )  # fmt: skip
    assert not near.related and near.score < REJECT and not near.reject
    assert not far.related and far.score < REJECT and far.reject


def test_short_plurals_meet_their_singular() -> None:
    assert [stem(w) for w in ("cars", "bans", "vans", "taxis")] == ["car", "ban", "van", "taxi"]
    assert [stem(w) for w in ("plus", "less", "isis", "bias")] == ["plus", "less", "isis", "bias"]


def test_seed_names_are_the_words_never_written_in_lower_case() -> None:
    names = seed_names(SEED.split("\n", 1)[1])
    assert {"norbur", "cald", "ine", "old"} <= names  # Norbury, Calder, Ines, Old Harbour Bridge
    assert not names & set(terms("bridge harbour lorries council"))  # also in lower case


def test_a_name_the_seed_writes_whole_counts_once() -> None:
    bag = analyse("Casco Antiguo closes", "The Casco Antiguo will close to cars. Cars wait.")
    vec = vector(bag, Background())
    once = one_name(vec, bag, {"casco", "antiguo"})
    parts = ("casco", "antiguo", "casco antiguo")
    weights = [vec[t] for t in parts]
    scale = once["car"] / vec["car"]  # what renormalising did to every other term
    assert sum(once[t] for t in parts) == pytest.approx(max(weights) * scale)


def test_the_same_measure_elsewhere_or_the_same_mayor_on_another_subject(seed_dir: Path) -> None:
    seeds = load_seeds([seed_dir])
    profile = build_profile("bridge", [(s.id, s.title, s.text) for s in seeds])
    elsewhere = relevance(
        profile,
        "Aldwick to close its harbour bridge to lorries",
        "Aldwick's council decided to close the town's harbour bridge to lorries heavier than "
        "7.5 tonnes from July, after engineers found corrosion in the steel cables. Local "
        "hauliers warned the lorry ban would add an hour to deliveries to the port.",
    )
    assert not elsewhere.related and elsewhere.score > 0.3
    assert any(r.kind == "names" for r in elsewhere.reasons)
    other = relevance(
        profile,
        "Summer visitors to pay a nightly tourist tax",
        "Mayor Ines Calder said Norbury's council would charge visitors two pounds a night from "
        "June, to pay for repairs to the Old Harbour Bridge and the port promenade. Hoteliers "
        "said the tax would hurt trade.",
    )
    assert not other.related and other.score > profile.threshold
    assert any(r.kind == "headline" for r in other.reasons)
    on = relevance(profile, "Norbury bridge to shut to lorries", WIRE)
    assert on.related and "norbur" in on.names


def test_keywords_and_exclude_guards(seed_dir: Path) -> None:
    seeds = load_seeds([seed_dir])
    doc = [(s.id, s.title, s.text) for s in seeds]
    guarded = build_profile("bridge", doc, keywords=("ferry",))
    assert not relevance(
        guarded, "Norbury bridge to shut to lorries", WIRE.split("Port")[0]
    ).related
    excluded = build_profile("bridge", doc, exclude=("weight cameras",))
    assert not relevance(excluded, "Norbury bridge to shut to lorries", WIRE).related


def test_seed_restatement_is_a_duplicate(seed_dir: Path, store: Store) -> None:
    judge = Judge.open(store, [Topic("bridge", (seed_dir,))], T0)
    restated = restatement()
    assert judge_one(judge, store, restated, T0) == Status.DUPLICATE


def test_a_short_later_step_naming_the_seeds_places_and_people_is_no_restatement(
    seed_dir: Path, store: Store
) -> None:
    """A monitor started after its seed's event: the first related story is a later step.
    A short report names the seed's bridge, mayor and cables in a few word pairs (6 of its
    30: 20%), which took it for a restatement of the seed (no alert); and the seed's
    development, dated by it, then took every later step as a duplicate too."""
    judge = Judge.open(store, [Topic("bridge", (seed_dir,))], T0)
    later = T0 + timedelta(days=30)
    contract = entry(
        "Danish firm wins Norbury cable contract",
        "A Danish engineering company won the contract to replace the corroded steel cables "
        "of the Old Harbour Bridge, Norbury's council said, with work starting in September. "
        "Its director promised night shifts to shorten the closure; Mayor Ines Calder "
        "welcomed the choice.",
        url="https://c.example/contract", when=later,
    )  # fmt: skip
    assert judge_one(judge, store, contract, later) == Status.DEVELOPMENT
    # ... while a restatement of the seed, repeating its quotes and figures, still is one
    assert judge_one(judge, store, restatement(), later) == Status.DUPLICATE


def test_the_judge_s_background_counts_stories_and_words_alike(
    seed_dir: Path, store: Store, tmp_path: Path
) -> None:
    """The judge reads word counts from the database as it needs them: its number of
    stories moves with them, including when another process's counts come in (a replay
    beside the daemon), so a word's stream weight never reads a count without its stories."""
    judge = Judge.open(store, [Topic("bridge", (seed_dir,))], T0)
    bg = judge.background
    start = bg.n
    for i in range(3):
        story = entry(f"Zorblaxia port story {i}", "Zorblaxia ferries run late again.",
                      url=f"https://a.example/z{i}", when=T0)  # fmt: skip
        judge_one(judge, store, story, T0)
    assert bg.n == start + 3 == store.counted_stories()
    assert bg.df.get("zorblaxia", 0) == 3  # not written yet: buffered

    other = Store(tmp_path / "monitor.db")  # another process, on the same database
    for _ in range(500):
        other.count_terms(["zorblaxia"])
    other.write_buffered()
    other.close()
    store.write_buffered()  # this process's cycle ends: its counts written, the table read again
    judge_one(judge, store, entry("Harbour news", "Ferries run.", url="https://a.example/h",
                                  when=T0), T0)  # fmt: skip
    assert bg.n == start + 3 + 500 + 1 == store.counted_stories()
    assert bg.df.get("zorblaxia", 0) == 503
    expected = math.log((bg.n + bg.smoothing) / (503 + 1))
    assert bg.idf("zorblaxia") == pytest.approx(min(MAX_IDF, expected)) and expected > 0

    # another process's counts committed while this one's are all written and read: the
    # next story reads both again, a word first read then included
    other = Store(tmp_path / "monitor.db")
    for _ in range(300):
        other.count_terms(["quorvania"])
    other.write_buffered()
    other.close()
    judge_one(judge, store, entry("Quorvania port", "Quorvania ferries.",
                                  url="https://a.example/q", when=T0), T0)  # fmt: skip
    assert bg.n == start + 3 + 500 + 1 + 300 + 1 == store.counted_stories()
    assert bg.df.get("quorvania", 0) == 301


def test_a_seed_s_language_is_detected_once_per_text(seed_dir: Path, store: Store) -> None:
    """The language a seed was detected as is kept with it and read back while its text is
    unchanged (the model is not loaded for it again); a changed text is detected again."""
    topics = [Topic("bridge", (seed_dir,))]
    Judge.open(store, topics, T0)
    assert store.db.execute("SELECT language FROM seeds").fetchall() == [("en",)]
    assert Judge.open(store, topics, T0).topics["bridge"].profile.language == "en"
    # what is kept is what is used: a stored value no detection would give comes back
    store.db.execute("UPDATE seeds SET language = 'de'")
    assert Judge.open(store, topics, T0).topics["bridge"].profile.language == "de"
    (seed_dir / "bridge.txt").write_text(SEED + "The work starts in June.\n", encoding="utf-8")
    assert Judge.open(store, topics, T0).topics["bridge"].profile.language == "en"
    assert store.db.execute("SELECT language FROM seeds").fetchall() == [("en",)]
    # a database from before the column: the language is detected and filled in
    store.db.execute("UPDATE seeds SET language = NULL")
    assert Judge.open(store, topics, T0).topics["bridge"].profile.language == "en"
    assert store.db.execute("SELECT language FROM seeds").fetchall() == [("en",)]
    # an edit of letter case only (the same text to content_hash; not to the model, which
    # sees case) is detected again, and the row keeps the text as written
    store.db.execute("UPDATE seeds SET language = 'de'")
    shouted = SEED.upper() + "THE WORK STARTS IN JUNE.\n"
    (seed_dir / "bridge.txt").write_text(shouted, encoding="utf-8")
    assert Judge.open(store, topics, T0).topics["bridge"].profile.language == "en"
    assert store.db.execute("SELECT language, substr(text, 1, 9) FROM seeds").fetchall() == [
        ("en", "NORBURY'S")
    ]
    assert store.db.execute("SELECT label FROM developments").fetchall() == [
        (SEED.upper().splitlines()[0],)
    ]  # the seed's development is named as the seed now is, and kept
    # two topics on the same seed files share its row, and its language
    store.db.execute("UPDATE seeds SET language = 'de'")
    both = [Topic("bridge", (seed_dir,)), Topic("port", (seed_dir,))]
    opened = Judge.open(store, both, T0)
    assert [opened.topics[t].profile.language for t in ("bridge", "port")] == ["de", "de"]


def test_later_step_after_the_seed_alerts(seed_dir: Path, store: Store) -> None:
    """The seed's development is dated by its first restatement, then decays like any other:
    a later step that reads like the seed is a new development."""
    judge = Judge.open(store, [Topic("bridge", (seed_dir,))], T0)
    restated = restatement()
    assert judge_one(judge, store, restated, T0) == Status.DUPLICATE
    later = T0 + timedelta(days=90)
    step = ferry_step(later)
    assert judge_one(judge, store, step, later) == Status.DEVELOPMENT
    assert (
        store.db.execute("SELECT count(*) FROM alerts WHERE kind='development'").fetchone()[0] == 1
    )


def test_a_backlog_judged_at_once_dates_developments_by_their_stories(
    seed_dir: Path, store: Store
) -> None:
    """The first poll of a feed's backlog judges three months of stories at once. Dated by
    that poll, the seed's restatement made the seed's development look reported today, and
    the later step (as in `test_later_step_after_the_seed_alerts`) was taken for it."""
    judge = Judge.open(store, [Topic("bridge", (seed_dir,))], T0)
    now = T0 + timedelta(days=90)
    assert judge_one(judge, store, restatement(), now) == Status.DUPLICATE  # published T0
    assert judge_one(judge, store, ferry_step(now), now) == Status.DEVELOPMENT
    first_seen = store.db.execute(
        "SELECT first_seen FROM developments WHERE first_story LIKE 'seed:%'"
    ).fetchone()[0]
    assert first_seen == T0.isoformat()


def test_the_seeds_development_is_dated_by_its_first_report_in_the_database_too(
    seed_dir: Path, store: Store
) -> None:
    """The seeds were loaded a month before anything reported them: the row's first_seen
    (Datasette, SQL) is the first report's time, not the loading's."""
    judge = Judge.open(store, [Topic("bridge", (seed_dir,))], T0 - timedelta(days=30))
    assert judge_one(judge, store, restatement(), T0) == Status.DUPLICATE
    (first_seen, count) = store.db.execute(
        "SELECT first_seen, story_count FROM developments WHERE first_story LIKE 'seed:%'"
    ).fetchone()
    assert (first_seen, count) == (T0.isoformat(), 2)


def test_the_migration_dates_stored_seed_developments_by_their_first_report(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    loaded, reported = "2026-11-28T04:36:00+00:00", "2024-10-04T13:45:00+00:00"
    database_before(path, "m017_seed_developments_dated_by_their_first_report", {
        "id": "s_1", "origin": "replay:x", "title": "Restated",
        "published": reported, "seen_at": reported,
    })  # fmt: skip
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("INSERT INTO topics (name, created_at) VALUES ('t', ?)", [loaded])
        for dev, seed, count in (("dev_told", "seed:a.txt", 2), ("dev_untold", "seed:b.txt", 1)):
            conn.execute(
                "INSERT INTO developments (id, topic, label, first_story, sources, story_count, "
                "terms, first_seen, last_seen) VALUES (?, 't', 'l', ?, '[]', ?, '{}', ?, ?)",
                [dev, seed, count, loaded, reported],
            )
        conn.execute(
            "INSERT INTO decisions (story_id, topic, status, score, duplicate_of, decided_at) "
            "VALUES ('s_1', 't', 'duplicate', 0.9, 'seed:a.txt', ?)",
            [reported],
        )
    finally:
        conn.close()
    store = Store(path)
    try:
        rows = store.db.execute("SELECT id, first_seen FROM developments ORDER BY id").fetchall()
    finally:
        store.close()
    assert rows == [("dev_told", reported), ("dev_untold", loaded)]


def test_a_development_is_labelled_with_its_headline_words_as_written(
    seed_dir: Path, store: Store
) -> None:
    """The label shows the headline's own words as written, not another form of the same
    term that the judge met first (the seed's "lorries" for the headline's "lorry")."""
    judge = Judge.open(store, [Topic("bridge", (seed_dir,))], T0)
    restated = restatement()
    judge_one(judge, store, restated, T0)
    later = T0 + timedelta(days=90)
    step = ferry_step(later)
    headline = step.title
    assert judge_one(judge, store, step, later) == Status.DEVELOPMENT
    (label,) = store.db.execute(
        "SELECT label FROM developments WHERE first_story NOT LIKE 'seed:%'"
    ).fetchone()
    words = headline.split()
    positions = [words.index(word) for word in label.split()]  # ValueError: not as written
    assert positions == sorted(positions) and len(positions) == 6
    assert "lorry" in label.split()  # the seed's "lorries" came first
    # the alert's matched terms are words of the story too, not stems ("lorr", "harbour")
    (payload,) = store.db.execute(
        "SELECT payload FROM alerts WHERE kind = 'development'"
    ).fetchone()
    matched = [term for term, _ in json.loads(payload)["matched_terms"]]
    written = set(tokenize(f"{step.title} {step.content}"))
    assert matched and all(word in written for term in matched for word in term.split(" "))


def test_label_for() -> None:
    heavy = {"kazakhstan": 3.0, "drop": 2.0, "taliban": 2.5, "list": 1.0, "bann": 1.5}
    heavy |= {"organis": 1.2, "organisation": 1.2}
    assert (
        label_for("Kazakhstan drops Taliban from list of banned organisations", heavy)
        == "Kazakhstan drops Taliban list banned organisations"
    )
    # quotes and colons come off; ties keep the headline's order; the first letter is upper
    assert label_for("ban: the 'allies' meet in Kabul", {}, words=3) == "Ban allies meet"
    # a hyphenated word counts once for its parts, a possessive as written
    assert label_for("Russia's anti-terror list grows", {}, words=4) == "Russia's anti-terror list"
    # no term at all: the headline itself
    assert label_for("To be or not to be", {}) == "To be or not to be"
    long = " ".join(f"Word{n}x" for n in range(40))
    cut = label_for(long, {}, words=40)
    assert len(cut) <= LABEL_MAX_CHARS and cut.endswith("…") and long.startswith(cut[:-1])


def test_feedback_changes_later_decisions(seed_dir: Path, store: Store) -> None:
    topic = Topic("bridge", (seed_dir,))
    judge = Judge.open(store, [topic], T0)
    text = (
        "Harbourline, a catamaran company, ordered two boats from a shipyard in Vigo to "
        "carry tourists around the bay during the summer season, its chief executive said."
    )
    first = entry("Harbourline orders catamarans", text, url="https://c.example/1", when=T0)
    assert judge_one(judge, store, first, T0) == Status.UNRELATED
    sid = store.db.execute("SELECT id FROM stories WHERE url = ?", [first.url]).fetchone()[0]
    message = record_feedback(store, sid, "relevant", T0 + timedelta(minutes=5))
    assert "relevant" in message
    later = T0 + timedelta(days=1)
    similar = entry(
        "Harbourline catamarans for bay tourists",
        "Two catamarans built in Vigo for Harbourline will take tourists on bay trips this "
        "summer season; the company expects its first boat in May.",
        url="https://d.example/2",
        when=later,
    )
    assert judge_one(judge, store, similar, later) != Status.UNRELATED
    with pytest.raises(UserError):
        record_feedback(store, "s_nope", "relevant", later)
    rows = store.feedback_rows("bridge")  # what the next judge reads at its start
    assert [(row["id"], row["feedback"]) for row in rows] == [(sid, "relevant")]
    assert store.feedback_rows("another topic") == []
    executed: list[str] = []
    store.db.conn.set_trace_callback(executed.append)
    store.feedback_rows("bridge")
    store.db.conn.set_trace_callback(None)
    (query,) = [sql for sql in executed if "feedback" in sql]  # its parameters filled in
    plan = " ".join(str(step[-1]) for step in store.db.execute(f"EXPLAIN QUERY PLAN {query}"))
    assert "decisions_feedback" in plan and "TEMP B-TREE" not in plan


def test_feedback_goes_to_the_topic_it_names(seed_dir: Path, store: Store) -> None:
    """A story judged by two topics may be about one and not the other: the verdict goes
    to the topic named, and without a name it is refused rather than given to both."""
    judge = Judge.open(store, [Topic("bridge", (seed_dir,)), Topic("port", (seed_dir,))], T0)
    item = entry("Norbury bridge to shut to lorries", WIRE, url="https://e.example/w", when=T0)
    with store.atomic():
        sid = store.insert_story(item, origin="test", feed_id=None, now=T0)
        assert len(judge.process(sid, item, T0)) == 2
    with pytest.raises(UserError, match=r"judged for 2 topics \(bridge, port\).*--topic"):
        record_feedback(store, sid, "irrelevant", T0)
    with pytest.raises(UserError, match="not judged for topic 'ferry'"):
        record_feedback(store, sid, "irrelevant", T0, topic="ferry")
    assert "(port)" in record_feedback(store, sid, "irrelevant", T0, topic="port")
    given = store.db.execute("SELECT topic, feedback FROM decisions ORDER BY topic").fetchall()
    assert given == [("bridge", None), ("port", "irrelevant")]


def test_explain_golden(seed_dir: Path, store: Store) -> None:
    judge = Judge.open(store, [Topic("bridge", (seed_dir,))], T0)
    item = entry("Norbury bridge to shut to lorries", WIRE, url="https://e.example/w", when=T0)
    judge_one(judge, store, item, T0)
    text = explain(store, "https://e.example/w")
    text = "\n".join(line for line in text.splitlines() if not line.strip().startswith("Alert a_"))
    golden = GOLDEN / "bridge_wire.txt"
    if os.environ.get("UPDATE_GOLDEN") or not golden.exists():
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text + "\n", encoding="utf-8")
    assert text + "\n" == golden.read_text(encoding="utf-8")
    with pytest.raises(UserError):
        explain(store, "s_unknown")


def test_a_summary_the_body_only_partly_repeats_still_records_its_word_forms(
    seed_dir: Path, store: Store
) -> None:
    # A word form first seen in a summary decides its term's weight later (`terms`), so a
    # summary is read even when the body was judged without it, unless the body repeats
    # all of it: here once cut inside a word ("tug" / "tugging"), once with a tail the
    # body lacks after the 80 characters `story_body` compares.
    judge = Judge.open(store, [Topic("bridge", (seed_dir,))], T0)
    surfaces = judge.background.surfaces
    lead = "Harbour pilots in the northern port town held a meeting about the winter tug"
    assert "tug" not in surfaces and "zanzibarit" not in surfaces
    cases = [
        (lead, lead + "ging of ferries.", "tug", "tug"),
        (f"{lead} and a zanzibarite cargo.", f"{lead} and went home.", "zanzibarit", "zanzibarite"),
    ]
    for n, (summary, content, term, form) in enumerate(cases):
        item = entry("Pilots meet", url=f"https://example.org/{n}", when=T0)
        judge_one(judge, store, replace(item, summary=summary, content=content), T0)
        assert surfaces.get(term) == form
