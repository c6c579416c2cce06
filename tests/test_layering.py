"""The package's imports, read from its source: no module imports another in a circle, none imports a higher
layer (docs/architecture.md, "Layers"), none imports the ``vitkit`` facade, and ``import vitkit.data`` or
``vitkit.config`` loads no model code. Every import counts, also those inside functions: a lazy import that goes
upward is still an upward dependency."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from paths import REPO

PACKAGE = REPO / "src" / "vitkit"

# Lowest first. A module belongs to the layer of the longest prefix that names it; it may import its own layer and
# any below. Within weights, eval and viz the pure parts (converters, metrics, maps) sit low and the parts that ask
# the families or the tasks sit high.
LAYERS: list[tuple[str, ...]] = [
    ("vitkit.version", "vitkit.utils"),
    ("vitkit.config",),
    ("vitkit.layers",),
    ("vitkit.models",),
    (  # one pure converter per foreign format, and what they share
        "vitkit.weights.checkpoint",
        "vitkit.weights.errors",
        "vitkit.weights.io",
        "vitkit.weights.rules",
        "vitkit.weights.adapt",
        "vitkit.weights.jax",
        "vitkit.weights.hf",
        "vitkit.weights.timm",
        "vitkit.weights.swin",
        "vitkit.weights.bit",
        "vitkit.weights.mae",
        "vitkit.weights.vit_adapter",
        "vitkit.weights.upernet_hf",
        "vitkit.weights.mmseg",
    ),
    ("vitkit.families", "vitkit.registry"),
    ("vitkit.weights", "vitkit.data", "vitkit.fast"),
    ("vitkit.adapters",),
    ("vitkit.eval", "vitkit.viz", "vitkit.train.objectives"),  # metrics, loops over a model, maps, losses
    ("vitkit.tasks",),
    (
        "vitkit.train",
        "vitkit.eval.api",
        "vitkit.eval.loading",
        "vitkit.eval.antispoof_eval",
        "vitkit.viz.draw",
        "vitkit.studies",
    ),  # fmt: skip
    ("vitkit.serve",),
    ("vitkit.cli", "vitkit.__main__"),
    ("vitkit",),  # the facade: nothing inside imports it
]


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the vitkit modules it imports anywhere in its source (``from pkg import sub`` names ``pkg.sub``)."""

    def resolve(name: str) -> str:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in mods.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            for name in names:
                target = resolve(name) if name.startswith("vitkit") else ""
                if target and target != module:
                    graph[module].add(target)
    return graph


def _layer(module: str) -> int:
    best, level = -1, None
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, level = len(prefix), i
    if level is None:
        raise AssertionError(f"{module} belongs to no layer; add its package to LAYERS (and to docs/architecture.md)")
    return level


MODULES = _modules()
GRAPH = _imports(MODULES)


def test_every_module_has_a_layer():
    for module in MODULES:
        _layer(module)


def test_no_upward_imports():
    upward = sorted(
        f"{m} ({LAYERS[_layer(m)][0]}) imports {t} ({LAYERS[_layer(t)][0]})"
        for m, targets in GRAPH.items()
        for t in targets
        if _layer(t) > _layer(m)
    )
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in sorted(MODULES):
        if module not in index:
            visit(module)
    assert not cycles, "modules importing each other in a circle: " + "; ".join(", ".join(c) for c in cycles)


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    """The checker itself can fail: a lazy upward import inside a function is found."""
    assert "vitkit.weights.load" in GRAPH["vitkit.adapters.loading"]  # imported at the top
    assert any(t.startswith("vitkit.") for t in GRAPH["vitkit.registry"])
    source = "def f():\n    from vitkit.cli.main import main\n"
    tree = ast.parse(source)
    found = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert found == ["vitkit.cli.main"] and _layer("vitkit.cli.main") > _layer("vitkit.config")


@pytest.mark.parametrize("package", ["vitkit.data", "vitkit.config"])
def test_light_packages_load_no_model_code(package):
    loaded = "sorted(m for m in sys.modules if m.startswith(('vitkit.models', 'vitkit.families')))"
    code = f"import sys, {package}; print({loaded})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"import {package} loaded {out.strip()}"
