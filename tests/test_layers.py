"""Imports point down the layers of DESIGN.md §4; adapters never import each other."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "monitor"

LAYERS = {
    "entry": {
        "cli",
        "daemon",
        "service",
        "healthcheck",
        "__main__",
        "status",
        "progress",
        "report",
    },
    "orchestration": {
        "pipeline",
        "detect",
        "deliver",
        "digest",
        "channels",
        "budget",
        "alerts_cli",
    },
    "adapter": {"fetch", "storage", "notify"},
    "core": {
        "config",
        "corpus",
        "text",
        "parse",
        "article",
        "score",
        "wordprior",
        "dedupe",
        "decide",
        "schedule",
        "render",
        "opml",
    },
    "bottom": {"errors", "models", "log", "metrics", "unicode_marks", "__init__"},
}
RANK = {"entry": 4, "orchestration": 3, "adapter": 2, "core": 1, "bottom": 0}


def layer_of(module: str) -> str:
    for layer, names in LAYERS.items():
        if module in names:
            return layer
    raise AssertionError(f"monitor.{module} has no layer: add it to LAYERS in this test")


def top_module(path: Path) -> str:
    relative = path.relative_to(PACKAGE).with_suffix("")
    return relative.parts[0]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    depth = len(path.relative_to(PACKAGE).parts) - 1
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level <= depth:
                    continue  # inside the same subpackage
                if node.module:
                    found.add(node.module.split(".")[0])
                else:
                    found.update(alias.name for alias in node.names)
            elif node.module and node.module.startswith("monitor."):
                found.add(node.module.split(".")[1])
            elif node.module == "monitor":
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("monitor."):
                    found.add(alias.name.split(".")[1])
    return {name if _is_module(name) else "__init__" for name in found}


def _is_module(name: str) -> bool:
    return (PACKAGE / f"{name}.py").exists() or (PACKAGE / name).is_dir()


def test_imports_point_down() -> None:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = top_module(path)
        rank = RANK[layer_of(module)]
        for target in imported_modules(path):
            if target == module:
                continue
            target_layer = layer_of(target)
            if RANK[target_layer] > rank:
                problems.append(f"{path.relative_to(PACKAGE)} imports {target} ({target_layer})")
            if target_layer == "adapter" and layer_of(module) == "adapter":
                problems.append(f"adapter {module} imports adapter {target}")
    assert not problems, "\n".join(problems)
