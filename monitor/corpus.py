"""Seed documents: read the files or folders a topic names into `SeedDoc` records.

Pure apart from reading the seed files themselves: no network, no database, no clock.
A file that cannot be read, or holds no text, is a `SeedError` naming the file.

Formats:
- ``.txt``: the first non-empty line is the title, the rest the text;
- ``.md``: the first heading (``# ...``) is the title, else the first line;
- ``.html``/``.htm``: ``<title>``, else the first ``<h1>``, else the first line of the text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import SeedError
from .text import html_to_text

SEED_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm")
_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")
_HTML_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_HTML_H1 = re.compile(r"<h1[^>]*>(.*?)</h1>", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True, slots=True)
class SeedDoc:
    """One seed document: ``id`` is ``seed:<file name>``; ``text`` excludes the title."""

    id: str
    path: Path
    title: str
    text: str

    @property
    def full_text(self) -> str:
        return f"{self.title}\n\n{self.text}".strip()


def load_seeds(paths: Sequence[Path]) -> list[SeedDoc]:
    """Every seed document under ``paths`` (files, or folders read non-recursively by name).

    Raises `SeedError` for a missing path, an unreadable or empty file, a folder without
    seed files, or two seeds with the same file name (their IDs would collide).
    """
    files: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            found = sorted(
                child
                for child in path.iterdir()
                if child.is_file()
                and child.suffix.lower() in SEED_SUFFIXES
                and not child.name.startswith(".")
            )
            if not found:
                raise SeedError(f"{path}: no seed documents (.txt, .md, .html) in this folder")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise SeedError(f"{path}: seed file or folder not found")
    docs: list[SeedDoc] = []
    seen: dict[str, Path] = {}
    for file in files:
        doc = read_seed(file)
        if doc.id in seen:
            raise SeedError(f"{file}: same file name as seed {seen[doc.id]}")
        seen[doc.id] = file
        docs.append(doc)
    return docs


def read_seed(path: Path) -> SeedDoc:
    """One seed file as a `SeedDoc`."""
    try:
        raw = path.read_bytes().decode("utf-8-sig")
    except OSError as error:
        raise SeedError(f"{path}: cannot read the seed: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise SeedError(f"{path}: the seed is not UTF-8 text") from None
    suffix = path.suffix.lower()
    if suffix in (".html", ".htm"):
        title, text = _split_html(raw)
    elif suffix in (".md", ".markdown"):
        title, text = _split_markdown(raw)
    else:
        title, text = _split_first_line(raw)
    if not title and not text:
        raise SeedError(f"{path}: the seed is empty")
    return SeedDoc(id=f"seed:{path.name}", path=path, title=title or text[:80], text=text)


def _split_first_line(raw: str) -> tuple[str, str]:
    lines = raw.strip().splitlines()
    if not lines:
        return "", ""
    return lines[0].strip(), "\n".join(lines[1:]).strip()


def _split_markdown(raw: str) -> tuple[str, str]:
    lines = raw.strip().splitlines()
    for index, line in enumerate(lines):
        match = _MD_HEADING.match(line)
        if match:
            rest = lines[:index] + lines[index + 1 :]
            return match.group(1).strip(), "\n".join(rest).strip()
    return _split_first_line(raw)


def _split_html(raw: str) -> tuple[str, str]:
    text = html_to_text(raw)
    for pattern in (_HTML_TITLE, _HTML_H1):
        match = pattern.search(raw)
        if match:
            title = " ".join(html_to_text(match.group(1)).split())
            if title:
                body = text
                if body.startswith(title):
                    body = body[len(title) :]
                return title, body.strip()
    return _split_first_line(text)
