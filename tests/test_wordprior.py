"""`wordprior`'s kept tables: built once per database, read back by later processes."""

from __future__ import annotations

import json
import math
import random
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import wordfreq

from monitor import wordprior
from monitor.storage import Storage

WORDS = ["the", "government", "taliban", "list", "zzzqqq", "москва", "o'brien", "1999", "3rd"]


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    opened = Storage(tmp_path / "monitor.db")
    yield opened
    opened.close()


@pytest.fixture
def no_held_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    """This test starts as a new process would: no table held in memory."""
    monkeypatch.setattr(wordprior, "_tables", {})


def kept(storage: Storage) -> list[tuple[str, str, int]]:
    """(language, source, bytes of keys) of each kept table."""
    return [
        (row[0], row[1], int(row[2]))
        for row in storage.db.execute(
            "SELECT lang, source, sum(length(keys)) FROM word_prior GROUP BY lang, source "
            "ORDER BY lang"
        )
    ]


def test_conversions_equal_wordfreqs_to_the_last_bit() -> None:
    for bucket in range(0, 1200):
        assert wordprior._cb_to_freq(-bucket) == wordfreq.cB_to_freq(-bucket)
    for step in range(1, 2000):
        freq = step / 2000 * 1e-3
        assert wordprior._freq_to_zipf(freq) == wordfreq.freq_to_zipf(freq)
    for zipf in (0.0, 0.5, 1.0, 3.3, 7.0, 8.1):
        assert wordprior._zipf_to_freq(zipf) == wordfreq.zipf_to_freq(zipf)


def test_latin_1_letters_are_one_english_token() -> None:
    """The plain path's claim: wordfreq's English tokenizer leaves such a word whole."""
    from wordfreq.tokens import lossy_tokenize

    letters = "abcdefghijklmnopqrstuvwxyz" + "".join(
        chr(c) for c in [*range(0xE0, 0xF7), *range(0xF8, 0x100)]
    )
    rng = random.Random(7)
    for _ in range(5000):
        word = "".join(rng.choice(letters) for _ in range(rng.randint(1, 9)))
        assert wordprior._PLAIN_EN.match(word)
        assert lossy_tokenize(word, "en") == [word], word
        assert wordprior.zipf_frequency(word, "en") == wordfreq.zipf_frequency(word, "en"), word
    for word in ("josé", "são", "pokémon", "naïve", "café"):
        assert wordprior.zipf_frequency(word, "en") == wordfreq.zipf_frequency(word, "en") > 0


def test_words_looked_up_together_get_wordfreq_s_answers() -> None:
    """`zipf_frequencies` (one search for a list's plain words) answers as wordfreq does,
    word for word: listed and unlisted, every frequency band, and words it hands to the
    tokenizer (digits, apostrophes, mixed scripts)."""
    english = [*wordfreq.top_n_list("en", 50000)[::7], "zzzqqq", "qxjv", "josé", *WORDS]
    rng = random.Random(3)
    rng.shuffle(english)
    assert wordprior.zipf_frequencies(english, "en") == [
        wordfreq.zipf_frequency(word, "en") for word in english
    ]
    russian = [*wordfreq.top_n_list("ru", 20000)[::11], "москваа", "2024", "nato"]
    assert wordprior.zipf_frequencies(russian, "ru") == [
        wordfreq.zipf_frequency(word, "ru") for word in russian
    ]
    assert wordprior.zipf_frequencies([], "en") == []


def test_a_table_built_once_is_kept_and_read_back(storage: Storage, no_held_tables: None) -> None:
    answers = {word: wordprior.zipf_frequency(word, "en", storage) for word in WORDS}
    assert answers == {word: wordfreq.zipf_frequency(word, "en") for word in WORDS}
    built = wordprior._tables["en"]
    assert kept(storage) == [("en", wordprior.source("en"), 8 * len(built))]
    parts = storage.db.execute("SELECT count(*) FROM word_prior").fetchone()[0]
    assert parts == -(-len(built) // storage.WORD_PRIOR_PART) > 1

    wordprior._tables.clear()  # a later process: the table comes from the database
    assert {word: wordprior.zipf_frequency(word, "en", storage) for word in WORDS} == answers
    read = wordprior._tables["en"]
    assert read is not built and (read.keys == built.keys).all()
    assert (read.buckets == built.buckets).all()


def test_a_table_is_named_by_the_word_lists_it_comes_from() -> None:
    """The kept table's source names the language's list files and their sizes (another
    wordfreq with other lists makes it stale), read without importing wordfreq's metadata."""
    from wordfreq import available_languages

    best = Path(available_languages("best")["ru"])
    assert f"{best.name} {best.stat().st_size}" in wordprior.source("ru")
    assert wordprior.source("en") != wordprior.source("ru")
    assert "_ru." not in wordprior.source("en")


def test_without_wordfreq_s_data_folder_a_table_is_named_by_its_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from importlib.metadata import version

    monkeypatch.setattr(wordprior.importlib.util, "find_spec", lambda name: None)
    assert wordprior.source("en") == f"wordfreq {version('wordfreq')} best en; blake2b-64 keys"


def test_a_stale_or_damaged_table_is_built_again(storage: Storage, no_held_tables: None) -> None:
    keys, buckets = b"\x01" * 16, b"\x02" * 4  # two entries: keys equal, so not a table
    storage.save_word_prior("en", wordprior.source("en"), keys, buckets)
    storage.save_word_prior("ru", "wordfreq 0.1 best ru; blake2b-64 keys", b"", b"")
    assert wordprior.zipf_frequency("government", "en", storage) == wordfreq.zipf_frequency(
        "government", "en"
    )
    assert wordprior.zipf_frequency("москва", "ru", storage) == wordfreq.zipf_frequency(
        "москва", "ru"
    )
    assert [(lang, source) for lang, source, _ in kept(storage)] == [
        ("en", wordprior.source("en")),
        ("ru", wordprior.source("ru")),
    ]
    assert all(size > 1_000_000 for _, _, size in kept(storage))


def test_plain_words_from_a_kept_table_need_no_wordfreq(
    storage: Storage, no_held_tables: None
) -> None:
    """A new process answers a-z words from the database without importing wordfreq; a
    word with digits or other letters still goes through wordfreq's own code."""
    wordprior.table("en", storage)
    db = storage.path
    script = (
        "import json, sys\n"
        "from monitor import wordprior\n"
        "from monitor.storage import Storage\n"
        f"s = Storage({str(db)!r})\n"
        "plain = [wordprior.zipf_frequency(w, 'en', s) for w in ('government', 'zzzqqq', 'josé')]\n"
        "before = 'wordfreq' in sys.modules\n"
        "other = wordprior.zipf_frequency('1999', 'en', s)\n"
        "print(json.dumps([plain, before, other, 'wordfreq' in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    plain, imported_before, other, imported_after = json.loads(done.stdout)
    assert plain == [wordfreq.zipf_frequency(w, "en") for w in ("government", "zzzqqq", "josé")]
    assert not imported_before and imported_after
    assert math.isclose(other, wordfreq.zipf_frequency("1999", "en"))


def test_a_table_with_a_part_missing_is_built_again(storage: Storage, no_held_tables: None) -> None:
    wordprior.table("en", storage)
    storage.db.execute("DELETE FROM word_prior WHERE lang = 'en' AND part = 3")
    assert storage.load_word_prior("en", wordprior.source("en")) is None
    wordprior._tables.clear()
    assert wordprior.zipf_frequency("people", "en", storage) == wordfreq.zipf_frequency(
        "people", "en"
    )
    assert storage.load_word_prior("en", wordprior.source("en")) is not None  # replaced


def test_a_table_that_cannot_be_kept_is_still_used(
    storage: Storage, no_held_tables: None, caplog: pytest.LogCaptureFixture
) -> None:
    storage.db.execute(
        "CREATE TRIGGER no_room BEFORE INSERT ON word_prior "
        "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    )
    with storage.atomic():  # inside a feed's transaction, as in a poll
        storage.db.execute("CREATE TABLE feed_rows (x)")
        assert wordprior.zipf_frequency("people", "en", storage) > 0
        storage.db.execute("INSERT INTO feed_rows VALUES (1)")
    assert storage.db.execute("SELECT count(*) FROM feed_rows").fetchone()[0] == 1
    assert "not kept" in caplog.text and "disk full" in caplog.text
    assert "en" in wordprior._tables  # held in memory all the same
    assert kept(storage) == []


def test_a_failure_that_ends_the_transaction_is_not_hidden(
    storage: Storage, no_held_tables: None
) -> None:
    """An error that rolls back the caller's whole transaction (not just the savepoint) is
    raised: the feed's rows before it are gone, and carrying on would commit the rest alone."""
    storage.db.execute(
        "CREATE TRIGGER no_room BEFORE INSERT ON word_prior "
        "BEGIN SELECT RAISE(ROLLBACK, 'disk full'); END"
    )
    storage.db.execute("CREATE TABLE feed_rows (x)")
    with pytest.raises(sqlite3.Error), storage.atomic():
        storage.db.execute("INSERT INTO feed_rows VALUES (1)")
        wordprior.zipf_frequency("people", "en", storage)
        storage.db.execute("INSERT INTO feed_rows VALUES (2)")
    assert storage.db.execute("SELECT count(*) FROM feed_rows").fetchone()[0] == 0
