"""Layers point one way (DESIGN.md "Suggested layout"; issue 15, item 4).

An AST import graph over ``src/obliviate``: every module sits on a layer, no module imports from a
higher layer, the modules form no import cycle, and no function hides an ``obliviate`` import.
Function-local imports count as edges for the layer and cycle checks too, so hiding an import in a
function never hides a back-arrow.

cli → scenarios → steps/audit/report/testing → attacks/defenses → unlearn → metrics/perturb →
train/models/data/checkpoint/inference → utilities.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "obliviate"

#: Layer of each top-level part of the package (its first dotted component after ``obliviate``;
#: ``""`` is ``obliviate/__init__``). A module whose part is not here is an error: place it.
LAYERS: dict[str, int] = {
    **dict.fromkeys(["", "errors", "utils", "_io", "memo", "config", "registry"], 0),
    **dict.fromkeys(["data", "models", "train", "checkpoint", "inference"], 1),
    **dict.fromkeys(["metrics", "perturb"], 2),
    "unlearn": 3,
    **dict.fromkeys(["attacks", "defenses"], 4),
    **dict.fromkeys(["steps", "audit", "report", "testing"], 5),
    "scenarios": 6,
    **dict.fromkeys(["cli", "demo"], 7),
}
#: Parts named ``<prefix><anything>`` (e.g. ``cli_heal``) sit on the prefix's layer.
PREFIX_LAYERS: dict[str, int] = {"cli_": 7}

#: (importing module, imported module) → why that import may stay inside a function. Keep this
#: minimal: only optional or deliberately lazy loading belongs here, each entry with its reason.
LOCAL_IMPORT_ALLOWLIST: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Edge:
    """One import of an ``obliviate`` module by another, where it stands and whether it is local."""

    src: str
    dst: str
    path: str
    line: int
    local: bool

    def __str__(self) -> str:
        where = "function-local" if self.local else "module-level"
        return f"{self.src} -> {self.dst} ({where}, {self.path}:{self.line})"


def find_modules(root: Path, package: str = PACKAGE) -> dict[str, tuple[Path, bool]]:
    """Dotted module name → (file, is_package) for every ``.py`` file of ``package`` under root."""
    mods: dict[str, tuple[Path, bool]] = {}
    for p in sorted((root / package).rglob("*.py")):
        parts = list(p.relative_to(root).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        mods[".".join(parts)] = (p, is_pkg)
    return mods


def _is_type_checking(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``): imports for annotations only, never
    executed, so they are not edges of the runtime import graph."""
    if not isinstance(node, ast.If):
        return False
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, in_function: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Every node under ``node`` with whether it sits inside a function (or lambda) body;
    ``if TYPE_CHECKING:`` blocks are skipped (see :func:`_is_type_checking`)."""
    for child in ast.iter_child_nodes(node):
        if _is_type_checking(child):
            for n in child.orelse:
                yield n, in_function
                yield from _walk(n, in_function)
            continue
        yield child, in_function
        inner = in_function or isinstance(
            child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
        )
        yield from _walk(child, inner)


def _targets(
    mod: str, is_pkg: bool, node: ast.Import | ast.ImportFrom, mods: Mapping[str, object]
) -> list[str]:
    """Dotted names an import statement loads: ``from pkg import sub`` names ``pkg.sub`` when that
    is a module, else ``pkg``; relative imports are resolved against ``mod``."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:
        base = mod.split(".") if is_pkg else mod.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    return [f"{target}.{a.name}" if f"{target}.{a.name}" in mods else target for a in node.names]


def import_edges(root: Path, package: str = PACKAGE) -> tuple[list[str], list[Edge]]:
    """All modules of ``package`` and every import edge between two of them (self-edges left
    out), each marked module-level or function-local."""
    mods = find_modules(root, package)
    edges: set[Edge] = set()
    for mod, (path, is_pkg) in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, local in _walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for t in _targets(mod, is_pkg, node, mods):
                if t != package and not t.startswith(package + "."):
                    continue
                while t not in mods and "." in t:
                    t = t.rsplit(".", 1)[0]
                if t != mod and t in mods:
                    rel = path.relative_to(root).as_posix()
                    edges.add(Edge(mod, t, rel, node.lineno, local))
    return sorted(mods), sorted(edges, key=lambda e: (e.src, e.path, e.line, e.dst))


def layer_of(module: str) -> int | None:
    """The layer of a dotted module name, or ``None`` when it has not been placed."""
    parts = module.split(".")
    part = parts[1] if len(parts) > 1 else ""
    if part in LAYERS:
        return LAYERS[part]
    for prefix, layer in PREFIX_LAYERS.items():
        if part.startswith(prefix):
            return layer
    return None


def unplaced(modules: list[str]) -> list[str]:
    return [m for m in modules if layer_of(m) is None]


def upward(edges: list[Edge]) -> list[str]:
    """Imports from a lower layer into a higher one (unplaced modules are reported apart)."""
    out = []
    for e in edges:
        a, b = layer_of(e.src), layer_of(e.dst)
        if a is not None and b is not None and b > a:
            out.append(f"{e} imports layer {b} from layer {a}")
    return out


def cycles(modules: list[str], edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for e in edges:
        graph[e.src].add(e.dst)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
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
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def local_imports(edges: list[Edge], allow: Mapping[tuple[str, str], str]) -> list[str]:
    return [str(e) for e in edges if e.local and (e.src, e.dst) not in allow]


def violations(kind: str, root: Path, package: str = PACKAGE) -> list[str]:
    """The violations of one class (``unplaced``, ``upward``, ``cycle``, ``local``)."""
    modules, edges = import_edges(root, package)
    if kind == "unplaced":
        return [
            f"{m} is on no layer: add it to LAYERS in tests/test_layers.py"
            for m in unplaced(modules)
        ]
    if kind == "upward":
        return upward(edges)
    if kind == "cycle":
        out = []
        for comp in cycles(modules, edges):
            inside = [str(e) for e in edges if e.src in comp and e.dst in comp]
            out.append(f"cycle {comp}: " + "; ".join(inside))
        return out
    if kind == "local":
        return local_imports(edges, LOCAL_IMPORT_ALLOWLIST)
    raise ValueError(f"unknown violation class {kind!r}")


@pytest.mark.parametrize("kind", ["unplaced", "upward", "cycle", "local"])
def test_layers_point_one_way(kind: str) -> None:
    found = violations(kind, SRC)
    if found:
        pytest.fail(f"{len(found)} {kind} violation(s):\n" + "\n".join(found), pytrace=False)


def test_allowlist_entries_are_live_and_justified() -> None:
    _, edges = import_edges(SRC)
    live = {(e.src, e.dst) for e in edges if e.local}
    stale = [k for k in LOCAL_IMPORT_ALLOWLIST if k not in live]
    assert not stale, f"allowlisted function-local imports no longer exist: {stale}"
    assert all(why.strip() for why in LOCAL_IMPORT_ALLOWLIST.values())


# ----------------------------------------------------------------- the checker itself


def _write(root: Path, files: Mapping[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")


def test_checker_flags_an_upward_edge_a_cycle_and_a_local_import(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "obliviate/__init__.py": "",
            "obliviate/errors.py": "",
            # metrics (2) reaching up into unlearn (3), hidden in a function
            "obliviate/metrics/__init__.py": "def f():\n    from obliviate.unlearn import base\n",
            "obliviate/unlearn/__init__.py": "",
            # a cycle through a relative import and a `from pkg import submodule`
            "obliviate/unlearn/base.py": "from . import task\n",
            "obliviate/unlearn/task.py": (
                "from obliviate.unlearn import base\nimport obliviate.errors\n"
            ),
            "obliviate/newthing.py": "",
        },
    )
    assert violations("unplaced", tmp_path) == [
        "obliviate.newthing is on no layer: add it to LAYERS in tests/test_layers.py"
    ]
    up = violations("upward", tmp_path)
    assert len(up) == 1 and up[0].startswith("obliviate.metrics -> obliviate.unlearn.base (")
    assert "function-local" in up[0] and "layer 3 from layer 2" in up[0]
    assert cycles(*import_edges(tmp_path)) == [["obliviate.unlearn.base", "obliviate.unlearn.task"]]
    assert len(violations("cycle", tmp_path)) == 1
    local = violations("local", tmp_path)
    assert local == [
        "obliviate.metrics -> obliviate.unlearn.base (function-local, "
        "obliviate/metrics/__init__.py:2)"
    ]


def test_checker_passes_a_clean_package(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "obliviate/__init__.py": "",
            "obliviate/errors.py": "import json\n",
            "obliviate/train.py": "from obliviate.errors import X\nimport obliviate\n",
            "obliviate/cli_x.py": "def f():\n    import rich\nfrom obliviate import train\n",
        },
    )
    for kind in ("unplaced", "upward", "cycle", "local"):
        assert violations(kind, tmp_path) == [], kind
