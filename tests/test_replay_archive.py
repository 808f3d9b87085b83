"""Reading a replay file (DESIGN.md §3.4): JSON Lines split at "\n" only, and every bad
item one line naming the file and the line, exit 2, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.errors import UserError
from monitor.pipeline import read_archive

ROOT = Path(__file__).resolve().parents[1]


def item(number: int, **fields: object) -> dict[str, object]:
    return {
        "url": f"https://a.example/{number}",
        "title": f"Item {number}",
        "published": f"2026-01-0{number}T00:00:00Z",
        **fields,
    }


def test_line_breaks_inside_strings_belong_to_the_item(tmp_path: Path) -> None:
    """Written raw (ensure_ascii=False), U+2028, U+2029 and NEL are valid inside a JSON
    string; str.splitlines() cut the line there and the item was rejected."""
    archive = tmp_path / "breaks.jsonl"
    lines = [
        json.dumps(
            item(1, title="Line\u2028separator", summary="a\u2029b\x85c"), ensure_ascii=False
        ),
        json.dumps(item(2, summary="form\x0cfeed \x1c file separator"), ensure_ascii=False),
        json.dumps(item(3)),
    ]
    assert "\u2028" in lines[0] and "\x85" in lines[0]  # raw, not escaped
    archive.write_bytes(("\r\n".join(lines) + "\r\n").encode())  # and "\r\n" line ends
    entries = read_archive(archive)
    assert [entry.url for entry, _ in entries] == [f"https://a.example/{n}" for n in (1, 2, 3)]

    archive.write_bytes(f"{lines[0]}\n{lines[1]}\n{{}}\n".encode())
    with pytest.raises(UserError, match=f"^{archive}:3: not a replay item"):  # (not line 5)
        read_archive(archive)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        pytest.param(
            json.dumps(item(1, source=["Reuters"])), '"source" is not a string', id="source"
        ),
        pytest.param(
            json.dumps(item(1, summary=float("nan"))), '"summary" is not a string', id="nan"
        ),
        pytest.param(
            json.dumps(item(1, published="9999-12-31T00:00:00Z")),
            '"published": "9999-12-31T00:00:00Z" is not between the years 1000 and 8999',
            id="year-9999",
        ),
        pytest.param(
            json.dumps(item(1, published="0001-01-01T00:00:00+05:00")),
            '"published": "0001-01-01T00:00:00+05:00" is not between the years 1000 and 8999',
            id="year-1-east",
        ),
        pytest.param(
            json.dumps(item(1, published="9999-12-31T23:59:59-05:00")),
            '"published": "9999-12-31T23:59:59-05:00" is not between',
            id="year-9999-west",
        ),
        pytest.param(
            json.dumps(item(1))[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
            "JSON nested too deeply",
            id="deep",
        ),
    ],
)
def test_bad_items_are_one_line_naming_file_and_line(
    tmp_path: Path, line: str, message: str
) -> None:
    archive = tmp_path / "bad.jsonl"
    archive.write_text(json.dumps(item(2)) + "\n" + line + "\n", encoding="utf-8")
    config = tmp_path / "monitor.toml"
    config.write_text(
        f'[[topics]]\nname = "valdoria"\nseeds = ["{ROOT / "tests/data/eval2/seeds"}"]\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "--config", str(config), "replay", str(archive)],
        env={**os.environ, "MONITOR_DB": str(tmp_path / "replay.db")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.startswith(f"monitor: {archive}:2: not a replay item: {message}")
    assert len(done.stderr.strip().splitlines()) == 1  # (no traceback)
