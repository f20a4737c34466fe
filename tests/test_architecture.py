"""The layering of the packages, read from the source (every import, at module level or inside a function):

    fitrain.core <- fitrain.data <- fitrain.train <- fitrain.pipeline <- fitrain.commands / fitrain.cli
    data_gen may import core and data; fitrain_eval (eval/) may import core, data and train;
    fitrain.pipeline is the only fitrain package that imports data_gen and fitrain_eval.

and no import cycle between modules. The checker is tested on a synthetic graph too, so it can fail.
"""
from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers.paths import REPO

ROOTS = {"fitrain": "fitrain", "data_gen": "data_gen", "eval": "fitrain_eval"}
CORE, DATA, TRAIN, PIPE = "fitrain.core", "fitrain.data", "fitrain.train", "fitrain.pipeline"
ALLOWED: dict[str, set[str]] = {
    CORE: {CORE},
    DATA: {CORE, DATA},
    TRAIN: {CORE, DATA, TRAIN},
    PIPE: {CORE, DATA, TRAIN, PIPE, "data_gen", "fitrain_eval"},
    "fitrain.commands": {CORE, DATA, TRAIN, PIPE, "fitrain.commands", "data_gen", "fitrain_eval"},
    "fitrain.cli": {CORE, "fitrain.commands"},
    "data_gen": {CORE, DATA, "data_gen"},
    "fitrain_eval": {CORE, DATA, TRAIN, "fitrain_eval"},
    "fitrain": set(),
}


def home(module: str) -> str:
    """The layer a module belongs to: ``fitrain.<package>``, ``data_gen`` or ``fitrain_eval``."""
    parts = module.split(".")
    if parts[0] == "fitrain" and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0]


def from_module(node: ast.ImportFrom, mod: str, is_package: bool) -> str:
    """The absolute module a ``from ... import`` reads: ``from . import x`` in ``a.b.c`` is ``a.b``, ``from
    ..m import y`` is ``a.m`` (in a package's ``__init__``, ``.`` is the package itself)."""
    if node.level == 0:
        return node.module or ""
    package = mod.split(".") if is_package else mod.split(".")[:-1]
    base = package[:len(package) - (node.level - 1)] if node.level - 1 <= len(package) else []
    return ".".join(base + ([node.module] if node.module else []))


def source_graph(root: Path = REPO, roots: dict[str, str] = ROOTS) -> dict[str, set[str]]:
    """Module -> the project modules it imports (a ``from pkg import name`` counts as pkg.name when that is
    a module; relative imports are resolved). Package ``__init__`` files are modules named after the package."""
    files: dict[str, Path] = {}
    for folder, name in roots.items():
        for f in (root / folder).rglob("*.py"):
            rel = f.relative_to(root / folder).with_suffix("")
            parts = [name, *rel.parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files[".".join(parts)] = f
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, f in files.items():
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = from_module(node, mod, f.name == "__init__.py")
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            graph[mod] |= {t for t in targets if t in files and t != mod}
    return graph


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Edges against the layering rule, and import cycles (strongly connected components of two or more)."""
    out = [f"{a} -> {b}: {home(a)} may not import {home(b)}" for a, deps in sorted(graph.items())
           for b in sorted(deps) if home(b) not in ALLOWED.get(home(a), set())]
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()

    def strongconnect(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append("import cycle: " + " <-> ".join(sorted(comp)))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return out


def test_the_source_keeps_the_layering_and_has_no_cycles():
    graph = source_graph()
    assert len(graph) > 80 and any(home(m) == PIPE for m in graph)  # the walk found the tree
    assert violations(graph) == []


def test_the_checker_catches_an_upward_import_and_a_cycle():
    graph = {"fitrain.core.io": set(), "fitrain.data.records": {"fitrain.core.io"},
             "fitrain.train.model": {"fitrain.data.records"}, "data_gen.match": {"fitrain.data.records"}}
    assert violations(graph) == []
    planted = {**graph, "fitrain.core.io": {"fitrain.train.model"}}
    found = violations(planted)
    assert "fitrain.core.io -> fitrain.train.model: fitrain.core may not import fitrain.train" in found
    assert any(v.startswith("import cycle:") and "fitrain.core.io" in v for v in found)
    assert violations({**graph, "data_gen.match": {"fitrain_eval.run"}, "fitrain_eval.run": set()}) == [
        "data_gen.match -> fitrain_eval.run: data_gen may not import fitrain_eval"]
    assert violations({"fitrain.train.a": {"fitrain.train.b"}, "fitrain.train.b": {"fitrain.train.a"}}) == [
        "import cycle: fitrain.train.a <-> fitrain.train.b"]


def test_relative_imports_are_resolved(tmp_path):
    pkg = tmp_path / "fitrain"
    for rel, text in {"__init__.py": "", "core/__init__.py": "from . import io\n", "core/io.py": "",
                      "core/config.py": "from .io import x\nfrom ..train import model\n",
                      "train/__init__.py": "", "train/model.py": "def f():\n    from ..core.io import y\n",
                      "data/__init__.py": "", "data/records.py": "from .. import train\n"}.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    graph = source_graph(tmp_path, {"fitrain": "fitrain"})
    assert graph["fitrain.core"] == {"fitrain.core.io"}                                # `from . import io` in __init__
    assert graph["fitrain.core.config"] == {"fitrain.core.io", "fitrain.train.model"}  # `.io`, `..train import model`
    assert graph["fitrain.train.model"] == {"fitrain.core.io"}                         # inside a function too
    assert graph["fitrain.data.records"] == {"fitrain.train"}
    assert violations(graph) == ["fitrain.core.config -> fitrain.train.model: fitrain.core may not import fitrain.train",
                                 "fitrain.data.records -> fitrain.train: fitrain.data may not import fitrain.train"]


def test_core_imports_nothing_heavy():
    import subprocess
    import sys

    code = ("import sys, fitrain.core.config, fitrain.core.layout, fitrain.core.llm, fitrain.core.recipes, "
            "fitrain.cli; heavy = {'torch', 'lightning', 'transformers', 'lm_eval', 'faiss', 'datasets'}; "
            "print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"
