"""The architecture of docs/architecture.md holds: no module is in an import cycle, the
layer contracts in pyproject.toml pass, and every import inside a function says why it
is lazy."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

grimp = pytest.importorskip("grimp", reason="grimp comes with import-linter (the test extra)")

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("fdseg_core", "fdseg_backbones", "fdseg_cli", "fdseg_kernels")
FOLDERS = {"fdseg_core": "fdseg_core", "fdseg_backbones": "fdseg_backbones"}
FOLDERS |= {"fdseg_cli": "fdseg_cli", "fdseg_kernels": "kernels"}


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    adj = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(adj):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = counter
                counter += 1
                stack.append(v)
                on_stack.add(v)
            if i < len(adj[v]):
                work.append((v, i + 1))
                w = adj[v][i]
                if w not in index:
                    work.append((w, 0))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
    return found


def test_no_module_is_in_an_import_cycle():
    graph = grimp.build_graph(*PACKAGES)  # function-level imports included
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = grimp.ImportGraph()
    for m in ("a", "a.x", "a.y", "a.z"):
        graph.add_module(m)
    graph.add_import(importer="a.x", imported="a.y")
    graph.add_import(importer="a.y", imported="a.z")
    graph.add_import(importer="a.z", imported="a.x")
    assert _cycles(graph) == [["a.x", "a.y", "a.z"]]


def test_the_layer_contracts_pass():
    linter = Path(sys.executable).with_name("lint-imports")
    if not linter.exists():
        pytest.skip("lint-imports is not installed next to this Python")
    done = subprocess.run([str(linter)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "0 broken" in done.stdout


def _unexplained(path: Path) -> list[str]:
    """Function-level imports of one file with no comment on their line or above their
    block."""
    lines = path.read_text().splitlines()
    bad = []
    for func in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(func):
            if isinstance(node, ast.Import | ast.ImportFrom):
                if not _explained(lines, node.lineno - 1):
                    bad.append(f"{path.name}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    return bad


def _lazy_imports_without_a_reason() -> list[str]:
    return [
        line
        for folder in FOLDERS.values()
        for path in sorted((ROOT / folder).rglob("*.py"))
        for line in _unexplained(path)
    ]


def _explained(lines: list[str], i: int) -> bool:
    """A comment on the import's line, or right above the block of imports it is in."""
    if "#" in lines[i]:
        return True
    i -= 1
    while i >= 0:
        text = lines[i].strip()
        if text.startswith("#") or (text.startswith(("from ", "import ")) and "#" in text):
            return True
        in_block = (
            not text  # the blank line between import groups
            or text.startswith(("from ", "import "))
            or text == ")"
            or text.endswith(",")
        )
        if not in_block:
            return False
        i -= 1
    return False


def test_every_function_level_import_says_why_it_is_lazy():
    assert _lazy_imports_without_a_reason() == []


def test_the_lazy_import_check_finds_an_unexplained_import(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "import os\n\n\ndef a():\n    # the optional extra\n    import json\n\n"
        "    from pathlib import Path\n\n\ndef b():\n    import csv\n"
    )
    assert _unexplained(source) == ["m.py:12: import csv"]


def test_the_test_tree_mirrors_the_packages():
    """Every test folder is named after the package (or subpackage) it tests."""
    root = Path(__file__).resolve().parents[1]
    tops = {"core": "fdseg_core", "cli": "fdseg_cli", "backbones": "fdseg_backbones"}
    tops |= {"kernels": "kernels", "benchmarks": "benchmarks"}
    strays = []
    for folder in sorted(p for p in (root / "tests").rglob("*") if p.is_dir()):
        if folder.name == "__pycache__":
            continue
        parts = folder.relative_to(root / "tests").parts
        if parts[0] not in tops or not (root / tops[parts[0]]).joinpath(*parts[1:]).is_dir():
            strays.append("/".join(parts))
    assert strays == []
