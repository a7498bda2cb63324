"""The host_tools import graph has no cycle, and the RKNN build modules import in one direction.

Imports are read with ``ast`` from the source (module level and inside functions alike: a lazy
import inside a function is still a dependency), so the check needs neither torch nor the toolkit.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Optional, Set

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = "host_tools"


def imports_of(path: Path, module: str, known: Set[str]) -> Set[str]:
    """The ``known`` modules that the source of ``module`` imports (absolute or relative)."""
    tree = ast.parse(path.read_text(), str(path))
    pkg_parts = module.split(".")[:-1] if not path.name == "__init__.py" else module.split(".")
    found: Set[str] = set()
    for node in ast.walk(tree):
        names: List[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(pkg_parts[: len(pkg_parts) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            names = [mod] + [f"{mod}.{a.name}" for a in node.names]
        for n in names:
            # "a.b.c" counts as an import of the longest known prefix
            parts = n.split(".")
            for k in range(len(parts), 0, -1):
                cand = ".".join(parts[:k])
                if cand in known:
                    if cand != module:
                        found.add(cand)
                    break
    return found


def import_graph(root: Path = ROOT, pkg: str = PKG) -> Dict[str, Set[str]]:
    files = {}
    for p in sorted((root / pkg).rglob("*.py")):
        rel = p.relative_to(root).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join(parts)] = p
    known = set(files)
    return {m: imports_of(p, m, known) - {pkg} for m, p in files.items()}


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One cycle as ``[a, b, ..., a]``, or None."""
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(m: str) -> Optional[List[str]]:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state:
                c = visit(d)
                if c:
                    return c
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            c = visit(m)
            if c:
                return c
    return None


def test_host_tools_import_graph_has_no_cycle():
    graph = import_graph()
    assert "host_tools.rknn_toolkit" in graph and "host_tools.verify" in graph
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_rknn_layers_import_downwards_only():
    graph = import_graph()
    layers = [["host_tools.rknn_toolkit"], ["host_tools.calib"], ["host_tools.det_split"],
              ["host_tools.rknn_build", "host_tools.det_build"], ["host_tools.verify"], ["host_tools.rknn_commands"]]
    level = {m: i for i, group in enumerate(layers) for m in group}
    for m, i in level.items():
        for d in graph[m]:
            if d in level:
                assert level[d] < i, f"{m} (layer {i}) imports {d} (layer {level[d]})"
    assert "host_tools.det_build" not in graph["host_tools.rknn_build"]
    assert "host_tools.rknn_build" not in graph["host_tools.det_build"]


def test_the_check_finds_a_cycle(tmp_path):
    # a package where a imports b at module level and b imports a inside a function
    pkg = tmp_path / "pk"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pk.b import f\n")
    (pkg / "b.py").write_text("def f():\n    from pk import a\n    return a\n")
    (pkg / "c.py").write_text("from . import b\n")
    g = import_graph(tmp_path, "pk")
    assert g["pk.a"] == {"pk.b"} and g["pk.b"] == {"pk.a"} and g["pk.c"] == {"pk.b"}
    assert find_cycle(g) in (["pk.a", "pk.b", "pk.a"], ["pk.b", "pk.a", "pk.b"])
    (pkg / "b.py").write_text("def f():\n    return 1\n")
    assert find_cycle(import_graph(tmp_path, "pk")) is None


@pytest.mark.parametrize("old", ["host_tools.rknn_build", "host_tools.calib", "host_tools.det_build"])
def test_old_import_paths_still_work(old):
    import importlib

    mod = importlib.import_module(old)
    if old == "host_tools.rknn_build":
        for name in ("BuildOptions", "check_target", "toolkit1_kwargs", "toolkit2_kwargs", "load_onnx_meta",
                     "build_rknn", "RKNN_factory", "ToolkitError", "_call", "toolkit_log", "toolkit_major"):
            assert hasattr(mod, name), name
    elif old == "host_tools.calib":
        assert hasattr(mod, "IMAGE_EXTS") and hasattr(mod, "check_mean_std")
    else:
        assert hasattr(mod, "match_boxes") and hasattr(mod, "box_agreement")
