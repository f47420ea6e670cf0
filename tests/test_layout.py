"""The import directions of DESIGN.md hold: searchspaces and nasbench never import torch; supernets never
imports strategies or nas; strategies never imports nas."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("package, forbidden", [
    ("searchspaces", ("torch", "nasbench", "supernets", "strategies", "nas")),
    ("nasbench", ("torch", "supernets", "strategies", "nas")),
    ("supernets", ("strategies", "nas", "nasbench")),
    ("strategies", ("nas", "nasbench")),
])
def test_import_directions(package, forbidden):
    code = (f"import sys, {package}\n"
            f"bad = [m for m in {forbidden!r} if m in sys.modules]\n"
            "print(','.join(bad))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"{package} imports {result.stdout.strip()}"


def _module_imports(package_dir, package: str) -> dict[str, set[str]]:
    """`module -> modules of the package it imports`, anywhere in the file (function-level imports included)."""
    import ast

    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        modules[".".join(parts)] = (path, is_package)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, is_package) in modules.items():
        here = name if is_package else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = here
                for _ in range(max(node.level - 1, 0)):
                    base = base.rpartition(".")[0]
                base = (f"{base}.{node.module}" if node.module else base) if node.level else node.module or ""
                submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules]
                targets = submodules or [base]  # `from pkg import sub` needs sub, not pkg's own body
            else:
                continue
            ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}  # imported anyway
            graph[name] |= {t for t in targets if t in modules and t != name and t not in ancestors}
    return graph


def test_no_import_cycle_inside_nas():
    """Modules of the face package import each other in one direction only, counting imports inside functions
    (pipeline and rank once imported each other that way)."""
    from pathlib import Path

    import networkx as nx

    graph = _module_imports(Path(__file__).resolve().parent.parent / "nas", "nas")
    assert {"nas.pipeline", "nas.rank", "nas.components"} <= set(graph)
    assert "nas.components" in graph["nas.rank"]  # the reader sees real edges, not an empty graph
    cycles = list(nx.simple_cycles(nx.DiGraph([(a, b) for a, targets in graph.items() for b in targets])))
    assert cycles == [], f"import cycles in nas/: {cycles}"
