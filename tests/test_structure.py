"""The code's shape, checked from its own source: no function over 80 lines, and no package
taking another package's private (_underscored) names. The import layers and the absence of
circles are import-linter contracts in pyproject.toml (`lint-imports`, run by CI)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "vitkit"
MAX_FUNCTION_LINES = 80


def _trees():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE), ast.parse(path.read_text(), str(path))


def test_no_function_is_longer_than_a_screen():
    long = [f"{path}:{node.lineno} {node.name}() has {node.end_lineno - node.lineno + 1} lines"
            for path, tree in _trees() for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, "\n".join(long)


def _package_of(path: Path, node: ast.ImportFrom) -> str | None:
    """The vitkit sub-package an import reaches (None: outside vitkit or its top level)."""
    if node.level:
        parts = list(path.parent.parts)[:len(path.parent.parts) - (node.level - 1)]
        target = [*parts, *(node.module.split(".") if node.module else [])]
    elif node.module and node.module.startswith("vitkit."):
        target = node.module.split(".")[1:]
    else:
        return None
    return target[0] if target else None


def test_no_package_takes_another_packages_private_names():
    taken = []
    for path, tree in _trees():
        here = path.parts[0] if len(path.parts) > 1 else None
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            there = _package_of(path, node)
            private = [a.name for a in node.names
                       if a.name.startswith("_") and not a.name.startswith("__")]
            if private and there is not None and there != here:
                taken.append(f"{path}:{node.lineno} takes {there}.{', '.join(private)}")
    assert not taken, "\n".join(taken)
