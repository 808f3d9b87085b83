"""Development harness: replay a labelled stream through storage + Judge and score it.

    python bench/eval_harness.py [LABELS_DIR] [--seeds DIR] [--keep DB] [--show]

Reads the stream with the same reader as `monitor replay`, stores each item in a fresh
database, judges it with `detect.Judge`, writes the export (DESIGN.md §3.3) and runs
``score.py``. Used while the CLI was being written, and for quick tuning runs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor.detect import Judge  # noqa: E402
from monitor.parse import entry_from_item  # noqa: E402
from monitor.storage import Storage  # noqa: E402

SHARED = ROOT.parent / "shared" / "eval"


class _Store(Storage):
    """Storage with the detection use cases (until `Storage` composes them itself)."""


@dataclass(frozen=True)
class _Topic:
    name: str
    seeds: tuple[Path, ...]
    keywords: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    threshold: float | None = None


def read_items(stream: Path) -> list[tuple[Any, datetime]]:
    """Entries with their publication time, in publication order (dates are not checked
    against the clock: labelled streams may describe invented future events)."""
    items = []
    for line in stream.read_text(encoding="utf-8").splitlines():
        if line.strip():
            raw = json.loads(line)
            published = datetime.fromisoformat(raw["published"].replace("Z", "+00:00"))
            published = published.astimezone(UTC)
            items.append((entry_from_item(raw, published, source=raw.get("source")), published))
    items.sort(key=lambda pair: pair[1])
    return items


def replay(stream: Path, seeds: Path, db: Path, topic: str = "topic") -> list[dict]:
    storage = _Store(db)
    items = read_items(stream)
    first = items[0][1] if items else None
    judge = Judge.open(storage, [_Topic(topic, (seeds,))], first)  # type: ignore[arg-type]
    for entry, published in items:
        with storage.atomic():
            sid = storage.insert_story(
                entry, origin=f"replay:{stream.name}", feed_id=None, now=published
            )
            judge.process(sid, entry, published)
    rows = list(storage.export_rows())
    storage.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("labels", nargs="?", type=Path, default=SHARED / "dev")
    parser.add_argument("--seeds", type=Path, default=ROOT / "seeds")
    parser.add_argument("--keep", type=Path)
    parser.add_argument("--show", action="store_true", help="print every decision")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.keep or Path(tmp) / "replay.db"
        if db.exists():
            db.unlink()
        rows = replay(args.labels / "stream.jsonl", args.seeds, db)
        export = Path(tmp) / "export.jsonl"
        export.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        if args.show:
            labels = {}
            for line in (args.labels / "stream.jsonl").read_text().splitlines():
                item = json.loads(line)
                labels[item["url"]] = item
            for row in rows:
                item = labels.get(row["url"], {})
                print(
                    item.get("id"),
                    item.get("grade"),
                    item.get("development"),
                    item.get("dup_group") or "-",
                    "S" if item.get("seed_dup") else "-",
                    f"{row['status'][:5]:5} {row['score']:.3f}",
                    row["development"],
                    row["duplicate_of"],
                    row["title"][:60],
                )
        done = subprocess.run(
            [sys.executable, str(SHARED / "score.py"), str(args.labels), str(export), "--check"],
            check=False,
        )
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
