"""A monitor that starts late: a labelled stream from a later start, only the seeds known before.

    python bench/cold_start.py [LABELS_DIR] [--seeds DIR] [--config TOML]
                               [--start seed,2024-12-01,2025-04-01]

The labelled streams begin well before their seeds' event, so by the time a story matters
the topic has learnt its names and vocabulary from the related stories before it. A user
starts with the seeds alone, on the seed's day or months later. For each ``--start``
(an ISO date, or ``seed``: the first item labelled a restatement of the seed) this writes
the items published from then on, with the developments they open, to a temporary
labelled folder, replays them with ``monitor replay`` into a fresh database, exports, and
prints ``score.py``'s figures. Defaults: the dev stream beside the checkout and the
repository's seeds, under a config naming one topic on them (``--config`` for another,
e.g. ``tests/data/eval2/monitor.toml`` with ``tests/data/eval2``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "eval" / "dev"
SCORE = ROOT.parent / "shared" / "eval" / "score.py"
FIGURES = (
    "relevance_precision", "relevance_recall", "dedup_recall", "dedup_precision",
    "development_recall", "alert_precision", "alerts", "redundant_alerts", "false_alerts",
    "missed_developments",
)  # fmt: skip


def _when(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _start(label: str, items: list[dict[str, Any]]) -> datetime:
    if label == "seed":
        restated = [_when(item["published"]) for item in items if item.get("seed_dup")]
        if not restated:
            raise SystemExit("--start seed: no item of the stream is labelled seed_dup")
        return min(restated)
    return _when(label)


def _later_part(labels: Path, start: datetime, folder: Path) -> int:
    """Write the items published from ``start`` on, and the developments they open."""
    lines = (labels / "stream.jsonl").read_text(encoding="utf-8").splitlines()
    kept = [json.loads(line) for line in lines if line.strip()]
    kept = [item for item in kept if _when(item["published"]) >= start]
    ids = {item["id"] for item in kept}
    developments = json.loads((labels / "developments.json").read_text(encoding="utf-8"))
    folder.mkdir(parents=True)
    with (folder / "stream.jsonl").open("w", encoding="utf-8") as out:
        out.writelines(json.dumps(item, ensure_ascii=False) + "\n" for item in kept)
    opened = [d for d in developments if d["first_item"] in ids]
    (folder / "developments.json").write_text(json.dumps(opened), encoding="utf-8")
    return len(kept)


def _score(folder: Path, config: Path, work: Path) -> dict[str, Any]:
    env = {**os.environ, "MONITOR_DB": str(work / "replay.db")}
    monitor = [sys.executable, "-m", "monitor", "--config", str(config)]
    stream = str(folder / "stream.jsonl")
    subprocess.run([*monitor, "replay", stream], env=env, check=True, capture_output=True)
    export = subprocess.run(
        [*monitor, "export", "--format", "jsonl"], env=env, check=True, capture_output=True
    ).stdout
    (work / "export.jsonl").write_bytes(export)
    done = subprocess.run(
        [sys.executable, str(SCORE), str(folder), str(work / "export.jsonl"), "--json"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return dict(json.loads(done.stdout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("labels", nargs="?", type=Path, default=DEV)
    parser.add_argument("--seeds", type=Path, default=ROOT / "seeds")
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--start", default="seed,2024-12-01,2025-04-01")
    args = parser.parse_args()
    lines = (args.labels / "stream.jsonl").read_text(encoding="utf-8").splitlines()
    items = [json.loads(line) for line in lines if line.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        config = args.config
        if config is None:
            config = Path(tmp) / "monitor.toml"
            seeds = json.dumps(str(args.seeds.resolve()))
            config.write_text(f'[[topics]]\nname = "topic"\nseeds = [{seeds}]\n')
        print(f"{'start':<26} {'items':>5}  " + "  ".join(FIGURES))
        for label in args.start.split(","):
            start = _start(label.strip(), items)
            work = Path(tmp) / f"run-{start:%Y%m%d%H%M}"
            count = _later_part(args.labels, start, work / "labels")
            figures = _score(work / "labels", config.resolve(), work)
            shown = "  ".join(str(figures.get(name)) for name in FIGURES)
            print(f"{label.strip() + ' ' + start.date().isoformat():<26} {count:>5}  {shown}")


if __name__ == "__main__":
    main()
