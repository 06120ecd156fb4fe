"""The house's floors: no import circle in ``calib/`` and no import from a lower floor upwards.

The graph is read from the source (AST), counting every import: at module level, inside
functions and under ``if TYPE_CHECKING:`` alike — an import hidden in a function is still a
dependency. ``calib.experiments`` (the command line, a link to ``experiments/``) is not the
library and is left out; ``calib/__init__.py`` (the public names, loaded lazily) stands above
every floor.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "calib"

#: Lowest first. A module may import modules of its own floor or of lower ones only.
FLOORS: tuple[tuple[str, ...], ...] = (
    ("calib.validation", "calib.io", "calib.registry", "calib.launch"),
    ("calib.class_names",),  # names of a head's columns: S, U given as names
    ("calib.rules",),  # the decision rule and its kernels
    ("calib.metrics",),
    ("calib.selectors",),
    ("calib.estimator",),  # LogitBiasCalibrator, its file and its temperature
    ("calib.distributed", "calib.extract"),
    ("calib.wrapper",),  # CalibratedClassifier, calibrate()
    ("calib.data", "calib.models", "calib.train", "calib.pseudo_cv", "calib.sequence"),
    ("calib.methods",),
    ("calib.dynamics",),
    ("calib.figures",),
    ("calib.run",),  # the harness: settings → plan → stages → results, collation
)


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent)
        if rel.parts[1] in ("experiments", "conf"):
            continue
        name = ".".join(rel.with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The calib modules ``name`` imports (``from pkg import mod`` counts as ``pkg.mod``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from pkg import mod` imports pkg.mod; `from mod import name` imports mod
            targets = [
                f"{module}.{alias.name}" if f"{module}.{alias.name}" in MODULES else module
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _floor(module: str) -> int | None:
    for level, prefixes in enumerate(FLOORS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return level
    return None


def _circles() -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
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

    for v in GRAPH:
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_function_level_and_type_only_imports():
    # guards the reader itself: these edges exist only inside functions / TYPE_CHECKING blocks
    assert "calib.rules.torch_ops" in GRAPH["calib.estimator.calibrator"]
    assert "calib.metrics.accuracy" in GRAPH["calib.estimator.calibrator"]


def test_no_import_circle():
    assert _circles() == []


def test_every_module_has_a_floor():
    assert [m for m in MODULES if m != "calib" and _floor(m) is None] == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "calib"))
def test_no_import_goes_up_a_floor(module):
    upward = sorted(t for t in GRAPH[module] if t == "calib" or _floor(t) > _floor(module))
    assert upward == [], f"{module} (floor {_floor(module)}) imports a higher floor: {upward}"


def test_the_top_of_the_package_holds_few_modules():
    """Concepts live in packages; the top holds the public face and a few one-module concepts."""
    top = sorted(p.stem for p in ROOT.glob("*.py"))
    assert top == [
        "__init__", "class_names", "distributed", "extract", "io", "launch", "pseudo_cv", "registry",
        "sequence", "validation", "wrapper",
    ]  # fmt: skip
