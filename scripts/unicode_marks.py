"""Write monitor/unicode_marks.py: the combining marks of this Python's Unicode database.

    .venv/bin/python scripts/unicode_marks.py

`monitor.text` tokenises with a character class of every combining mark; listing them
means asking `unicodedata` about 135,000 code points (~14 ms in every process that reads
non-ASCII text). The generated module holds them for one Unicode version; a Python with
another version lists them at run time (tests/test_text.py compares the two).
"""

from __future__ import annotations

import sys
import textwrap
import unicodedata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.text import scan_mark_ranges

OUT = Path(__file__).resolve().parent.parent / "monitor" / "unicode_marks.py"


def main() -> None:
    ranges = " ".join(f"{a:x}" if a == b else f"{a:x}-{b:x}" for a, b in scan_mark_ranges())
    lines = textwrap.wrap(ranges, 84)
    body = "\n".join(f'    "{line} "' for line in lines)
    OUT.write_text(
        '"""Combining marks (Mn, Mc, Me) of Unicode planes 0, 1 and 14 as hexadecimal code\n'
        "point ranges, for `monitor.text`: written by scripts/unicode_marks.py from Python's\n"
        '`unicodedata` for the version below (another version lists them at run time)."""\n\n'
        f'UNICODE_VERSION = "{unicodedata.unidata_version}"\n'
        f"RANGES = (\n{body}\n)\n",
        encoding="utf-8",
    )
    print(f"wrote {OUT} ({unicodedata.unidata_version}, {len(ranges.split())} ranges)")


if __name__ == "__main__":
    main()
