"""End to end: replay each labelled stream into a fresh database, export, and score it.

The dev stream lives beside the checkout (``../shared/eval/dev``, as in CI); the second
stream, with its own seed and config, in ``tests/data/eval2``. ``score.py --check`` must
pass. The replay runs through the CLI (``monitor replay`` then ``monitor export``); the
dev stream gets a small config naming the repository's seeds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.storage import Storage
from monitor.storage.detection import DetectionStore

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "eval"
DEV = SHARED / "dev"
EVAL2 = ROOT / "tests" / "data" / "eval2"

STREAMS = [
    pytest.param(DEV, ROOT / "seeds", None, id="dev"),
    pytest.param(EVAL2, EVAL2 / "seeds", EVAL2 / "monitor.toml", id="eval2"),
]


def _cli_ready() -> bool:
    return issubclass(Storage, DetectionStore)


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("labels", "seeds", "config"), STREAMS)
def test_stream_meets_targets(
    labels: Path, seeds: Path, config: Path | None, tmp_path: Path
) -> None:
    if not (labels / "stream.jsonl").exists():
        pytest.skip(f"{labels}: labelled stream not present")
    export = tmp_path / "export.jsonl"
    env = {**os.environ, "MONITOR_DB": str(tmp_path / "replay.db")}
    if _cli_ready() and config is None:
        config = tmp_path / "monitor.toml"
        config.write_text(
            f'[database]\npath = "replay.db"\n\n[[topics]]\nname = "dev"\n'
            f"seeds = [{json.dumps(str(seeds))}]\n",
            encoding="utf-8",
        )
    if _cli_ready() and config is not None:
        monitor = [sys.executable, "-m", "monitor", "--config", str(config)]
        subprocess.run([*monitor, "replay", str(labels / "stream.jsonl")], env=env, check=True)
        out = subprocess.run(
            [*monitor, "export", "--format", "jsonl"], env=env, check=True,
            capture_output=True, text=True,
        )  # fmt: skip
        export.write_text(out.stdout, encoding="utf-8")
    else:
        sys.path.insert(0, str(ROOT / "bench"))
        from eval_harness import replay

        rows = replay(labels / "stream.jsonl", seeds, tmp_path / "replay.db")
        export.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(SHARED / "score.py"), str(labels), str(export), "--check"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
