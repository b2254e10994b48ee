"""The test tree's own rules: shared helpers live in tests/support (or tests/security/attack.py),
so no test module imports another, and the benchmarks use the same helpers without editing
sys.path (they run as modules: `python -m bench.x`)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.server import ROOT


def imported_modules(path: Path) -> list[str]:
    """Every module a file imports (relative imports resolved from its package)."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.append(base)
            names += [f"{base}.{alias.name}" for alias in node.names]
    return names


def is_test_module(name: str) -> bool:
    return name.rsplit(".", 1)[-1].startswith("test_")


def test_no_test_module_imports_another() -> None:
    offenders = {
        str(path.relative_to(ROOT)): [n for n in imported_modules(path) if is_test_module(n)]
        for path in [*(ROOT / "tests").rglob("*.py"), *(ROOT / "bench").glob("*.py")]
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_benchmarks_do_not_edit_sys_path() -> None:
    edits = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "bench").glob("*.py")
        if "sys.path" in path.read_text()
    ]
    assert edits == []
