"""Check facskit's import graph: cycles and upward imports between its layers.

The package is built in layers (docs/architecture.md draws them); a module may import from its own layer
and from the layers below it, never from a layer above. Lowest first:

    foundation   errors, device, deprecation, lazy, config_loader, config   (importable from anywhere)
    media        io, faces, align, aus, targets, metrics
    data         data, synth, teacher
    models       models
    training     train, eval, tcae
    runtime      runtime                                     (export, backends, quantisation)
    analyze      analyze
    interface    cli, __main__, the package root (facskit/__init__.py: the public API)

``metrics.py`` sits with ``aus`` rather than in the foundation because it reads ``aus``' occurrence
threshold; nothing below the data layer uses it.

Two checks, each over imports parsed with ``ast`` (nothing is imported, so the tool runs without torch):

* **Upward imports**: every import, whether at module level or inside a function (a lazy import is still a
  dependency), except those under ``if TYPE_CHECKING:`` (annotations only).
* **Private names**: ``from facskit.x import _name`` from another module (what is shared is made public).
* **Cycles**: strongly connected components of the same graph. A lazy import does not fail at import time,
  but a cycle through one still means two modules cannot be understood, tested or moved apart. The one
  accepted cycle is ``facskit.models``' lazy re-export (PEP 562), whose package root names what its own
  modules define.

    python tools/import_graph.py            # the report; exit 1 on an upward import, private name or cycle
    python tools/import_graph.py --edges    # also prints every cross-layer edge
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "facskit"

#: Layer of each top-level name under facskit/ (a subpackage or a module), lowest first.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("errors", "device", "deprecation", "lazy", "config_loader", "config")),
    ("media", ("io", "faces", "align", "aus", "targets", "metrics")),
    ("data", ("data", "synth", "teacher")),
    ("models", ("models",)),
    ("training", ("train", "eval", "tcae")),
    ("runtime", ("runtime",)),
    ("analyze", ("analyze",)),
    ("interface", ("cli", "__main__", "")),
)
LAYER_RANK = {name: rank for rank, (_, names) in enumerate(LAYERS) for name in names}
LAYER_NAME = {name: layer for layer, names in LAYERS for name in names}

#: Names the package root defines itself and imports nothing for: importing them is not an import of the
#: public API (``facskit/__init__.py``), which sits at the top only because it re-exports ``Detector``.
ROOT_CONSTANTS = (f"{PACKAGE}.__version__",)

#: Packages whose internal cycles are deliberate (a lazy PEP 562 re-export from the package root).
ACCEPTED_CYCLE_PACKAGES = ("facskit.models",)


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` at ``line``; ``lazy`` when the import is inside a function."""

    source: str
    target: str
    line: int
    lazy: bool


def module_files(root: Path) -> dict[str, Path]:
    """Module name -> file for every ``.py`` file of the package (``facskit.x`` for ``x/__init__.py``)."""
    modules = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement with whether it runs lazily (inside a function), skipping TYPE_CHECKING."""

    def walk(node: ast.AST, lazy: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for orelse in child.orelse:
                    yield from walk(orelse, lazy)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, lazy
            inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            yield from walk(child, inner)

    yield from walk(tree, False)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def private_imports(modules: dict[str, Path]) -> list[str]:
    """``module:line -> target._name`` for every private name one facskit module imports from another."""
    found = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, _ in _imports(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            base = _resolve(module, path.name == "__init__.py", node)
            for alias in node.names:
                private = alias.name.startswith("_") and not alias.name.startswith("__")
                if private and base.startswith(PACKAGE) and base != module:
                    found.append(f"{module}:{node.lineno} -> {base}.{alias.name}")
    return found


def import_edges(modules: dict[str, Path]) -> list[Edge]:
    """Edges to facskit modules; ``from pkg import name`` points at ``pkg.name`` when that is a module."""
    edges = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        root_uses = {
            f"{PACKAGE}.{node.attr}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == PACKAGE
        }
        for node, lazy in _imports(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
                if targets == [PACKAGE] and root_uses <= set(ROOT_CONSTANTS):
                    continue  # `import facskit` for `facskit.__version__` only
            else:
                base = _resolve(module, is_package, node)
                for alias in node.names:
                    name = f"{base}.{alias.name}"
                    if name in ROOT_CONSTANTS:
                        continue
                    targets.append(name if name in modules else base)
            for target in dict.fromkeys(targets):
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target.startswith(PACKAGE) and target != module:
                    edges.append(Edge(module, target, node.lineno, lazy))
    return edges


def layer_of(module: str) -> str:
    """The top-level name a module belongs to (``facskit.analyze.runner`` -> ``analyze``; root -> "")."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def upward_imports(edges: list[Edge]) -> list[Edge]:
    """Edges from a lower layer to a higher one; a module under an unknown top-level name is reported too."""
    bad = []
    for edge in edges:
        source, target = layer_of(edge.source), layer_of(edge.target)
        unknown = source not in LAYER_RANK or target not in LAYER_RANK
        if unknown or LAYER_RANK[target] > LAYER_RANK[source]:
            bad.append(edge)
    return bad


def cycles(modules: list[str], edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    graph: dict[str, list[str]] = {module: [] for module in modules}
    for edge in edges:
        graph[edge.source].append(edge.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in modules:
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def accepted(component: list[str]) -> bool:
    """A cycle entirely inside a package whose lazy re-export is deliberate."""
    return any(all(m == p or m.startswith(p + ".") for m in component) for p in ACCEPTED_CYCLE_PACKAGES)


def _where(edge: Edge) -> str:
    kind = "lazy" if edge.lazy else "module-level"
    return f"{edge.source}:{edge.line} -> {edge.target} ({kind})"


def report(root: Path = ROOT, show_edges: bool = False) -> tuple[list[str], bool]:
    """The report's lines and whether the graph is clean (no upward import, private name or cycle)."""
    modules = module_files(root)
    edges = import_edges(modules)
    upward = upward_imports(edges)
    components = cycles(list(modules), edges)
    bad_cycles = [c for c in components if not accepted(c)]
    lines = [f"{len(modules)} modules, {len(edges)} imports between them"]
    lines.append(f"upward imports: {len(upward)}")
    for edge in upward:
        source, target = layer_of(edge.source), layer_of(edge.target)
        lines.append(f"  {_where(edge)}   [{LAYER_NAME.get(source, '?')} -> {LAYER_NAME.get(target, '?')}]")
    private = private_imports(modules)
    lines.append(f"private names imported: {len(private)}")
    lines.extend(f"  {where}" for where in private)
    lines.append(f"cycles: {len(bad_cycles)} (+{len(components) - len(bad_cycles)} accepted)")
    for component in components:
        members = set(component)
        tag = "accepted: lazy re-export" if accepted(component) else "CYCLE"
        lines.append(f"  {tag}: {len(component)} modules")
        for edge in edges:
            if edge.source in members and edge.target in members:
                lines.append(f"    {_where(edge)}")
    if show_edges:
        lines.append("cross-layer imports:")
        for edge in edges:
            if layer_of(edge.source) != layer_of(edge.target):
                lines.append(f"  {_where(edge)}")
    return lines, not upward and not private and not bad_cycles


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository root (holds facskit/)")
    parser.add_argument("--edges", action="store_true", help="also print cross-layer imports")
    args = parser.parse_args(argv)
    lines, clean = report(args.root, args.edges)
    print("\n".join(lines))
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
