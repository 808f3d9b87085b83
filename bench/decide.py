"""Stories per second through score + dedupe + decide, with 10,000 and 100,000 stored.

    python bench/decide.py [--stored 10000 100000] [--measure 8192]

Synthetic but realistic: headlines of 6-12 words and bodies of 80-250 words drawn from a
Zipf-distributed vocabulary of 30,000 words; every 20th story is a lightly edited copy of
an earlier one. The stored stories are bulk-loaded (signatures and LSH band rows as the
Judge writes them, term frequencies counted); then `Judge.process` is timed on new
stories, one core, in transactions of ``--batch`` stories (default 50: the pipeline writes
each feed's new entries in one transaction, and a feed carries 20-100 entries), then the
writes held back for batches are made (`Storage.write_buffered`, as at the end of a poll
cycle), all inside the timing. The default window, 8,192 stories, is one period of the
largest batched write (the LSH merge, `DetectionStore.LSH_MERGE_ROWS`): every batched
write (term counts, full-text index, LSH merge, WAL checkpoint) falls in it as often as
it does in a long run, whichever story the window starts at. The process is pinned to one
CPU (where the system allows it), so that no helper thread runs beside the judge. Wall
time and the process's CPU time are both printed; CPU time is the one to compare when
other work shares the machine.
"""

from __future__ import annotations

import argparse
import os
import pickle
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor import dedupe  # noqa: E402
from monitor.detect import Judge  # noqa: E402
from monitor.models import Entry  # noqa: E402
from monitor.score import analyse  # noqa: E402
from monitor.storage import Storage  # noqa: E402
from monitor.text import canonical_url, content_hash  # noqa: E402

T0 = datetime(2025, 1, 1, tzinfo=UTC)


class _Store(Storage):
    pass


@dataclass(frozen=True)
class _Topic:
    name: str
    seeds: tuple[Path, ...]
    keywords: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    threshold: float | None = None


class Corpus:
    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        letters = "abcdefghijklmnopqrstuvwxyz"
        self.words = [
            "".join(self.rng.choice(letters) for _ in range(self.rng.randint(3, 10)))
            for _ in range(30_000)
        ]
        self.weights = [1.0 / (rank + 1) for rank in range(len(self.words))]
        self.made: list[tuple[str, str]] = []

    def text(self, low: int, high: int) -> str:
        n = self.rng.randint(low, high)
        return " ".join(self.rng.choices(self.words, self.weights, k=n))

    def story(self, i: int) -> Entry:
        if self.made and i % 20 == 0:
            title, body = self.rng.choice(self.made)
            body = body + " Read more at the example site."
            title = "Copy: " + title
        else:
            title, body = self.text(6, 12).capitalize(), self.text(80, 250)
            if len(self.made) < 5000:
                self.made.append((title, body))
        url = f"https://news.example.org/{i}?utm_source=rss"
        return Entry(
            key=url, url=url, canonical_url=canonical_url(url), title=title, summary="",
            content=body, published=T0 + timedelta(seconds=i),
            content_hash=content_hash(title, body), source="Bench", language="en",
        )  # fmt: skip


def prefill(store: _Store, corpus: Corpus, count: int) -> None:
    df: Counter[str] = Counter()
    with store.atomic():
        for i in range(count):
            item = corpus.story(i)
            sid = store.insert_story(item, origin="bench", feed_id=None, now=item.published)
            sig = dedupe.signature(item.title, item.content)
            if sig is not None:
                store.add_signature(
                    sid, kind=sig.kind, size=sig.size, signature=sig.to_bytes(),
                    bands=dedupe.band_keys(sig),
                )  # fmt: skip
            df.update({t for t in analyse(item.title, item.content) if " " not in t})
        store.db.conn.executemany(
            "INSERT INTO term_frequencies (term, df) VALUES (?, ?) "
            "ON CONFLICT(term) DO UPDATE SET df = df + excluded.df",
            [*df.items(), ("", count)],
        )


def _prefilled(path: Path, stored: int, cache: Path | None) -> Corpus:
    """A database at ``path`` holding ``stored`` stories (copied from ``cache`` if there)."""
    corpus = Corpus()
    kept = None if cache is None else cache / f"decide-{stored}.db"
    if kept is not None and kept.exists():
        shutil.copyfile(kept, path)
        state = kept.with_suffix(".corpus")  # where the random sequence stood
        if state.exists():
            rng_state, corpus.made = pickle.loads(state.read_bytes())
            corpus.rng.setstate(rng_state)
        else:
            for i in range(stored):  # the measured stories follow the same random sequence
                corpus.story(i)
        return corpus
    store = _Store(path)
    prefill(store, corpus, stored)
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    if kept is not None:
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, kept)
        kept.with_suffix(".corpus").write_bytes(pickle.dumps((corpus.rng.getstate(), corpus.made)))
    return corpus


def run(
    stored: int, measure: int, seeds: Path, batch: int, cache: Path | None = None
) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        corpus = _prefilled(Path(tmp) / "bench.db", stored, cache)
        store = _Store(Path(tmp) / "bench.db")
        judge = Judge.open(store, [_Topic("topic", (seeds,))], T0)
        items = [corpus.story(stored + i) for i in range(measure)]
        started, cpu = time.perf_counter(), time.process_time()
        for first in range(0, len(items), batch):
            with store.atomic():
                for item in items[first : first + batch]:
                    sid = store.insert_story(item, origin="bench", feed_id=None, now=item.published)
                    judge.process(sid, item, item.published)
        store.write_buffered()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        store.close()
    return elapsed / measure, cpu / measure


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stored", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--measure", type=int, default=8192)
    parser.add_argument("--seeds", type=Path, default=ROOT / "seeds")
    parser.add_argument("--batch", type=int, default=50, help="stories per transaction")
    parser.add_argument(
        "--cache", type=Path, default=None,
        help="keep the prefilled databases in this folder and reuse them (same code only)",
    )  # fmt: skip
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    costs = {}
    for stored in args.stored:
        cost, cpu = run(stored, args.measure, args.seeds, max(1, args.batch), args.cache)
        costs[stored] = cost
        print(
            f"{stored:>7} stored: {1 / cost:8.0f} stories/s ({cost * 1000:.2f} ms/story wall, "
            f"{cpu * 1000:.2f} ms CPU; {args.batch} a transaction)"
        )
    if len(costs) > 1:
        low, high = min(costs), max(costs)
        print(f"cost ratio {high} vs {low} stored: {costs[high] / costs[low]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
