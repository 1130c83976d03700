#!/usr/bin/env python3
"""The package's import rules, checked from the source (``ast``; nothing is imported).

    python scripts/check_imports.py [PACKAGE_DIR]     # default: ./ipfs_accelerate_py

Prints one line per problem and exits 1 if there is any, else exits 0 silently.

Every ``import`` and ``from ... import`` inside the package counts, wherever it is:
module level, inside a function (a lazy import is still a dependency) and under
``if TYPE_CHECKING:`` (a type-only import is still a dependency, and a cycle of
them is the same tangle with the import moved out of sight; import-linter counts
them the same way by default).  ``from pkg import name`` is an edge to
``pkg.name`` when that is a module, else to ``pkg``.  The implicit import of a
parent package (``import a.b`` runs ``a/__init__.py``) is not an edge, as in
grimp.  Imports by string (``importlib.import_module``) are not seen: the
simulator's format discovery is the one, and stays inside the simulator.

The rules:

1. **No cycles.** No module reaches itself through the import graph.

2. **Layers.** From top to bottom; a module may import its own layer and any
   layer below it, never one above:

   ========================  ==============================================
   ``cli``, ``__main__``,    the applications: the command line, the bulk
   ``runner``, ``checks``    runner, the feature checks
   ``ipfs_accelerate_py``    the package root: the public names, re-exported
   ``api_backends``          the public clients
   ``providers``             pure wire mapping per provider
   ``engine``                the request lifecycle and its asyncio driver
   ``transport``             HTTP (and boto3) behind one seam
   ``resilience``            the sans-IO policies, errors, redaction
   ``_version``              the version string (a leaf anyone may read)
   ========================  ==============================================

3. **The simulator stands alone.** ``simulator`` imports nothing of the
   package outside itself, and only the applications (``cli``, ``runner``,
   ``checks``) import it -- with one exception: a backend whose base URL is
   ``"simulator"`` starts the embedded one, so ``api_backends`` may import
   ``simulator.embedded``, inside a function only (the client never loads the
   simulator unless asked for it).

4. Every module of the package belongs to a layer (a new top-level module
   must be placed here first), and every package-internal import names a
   module that exists.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

APPLICATION = "applications"
ROOT = "package root"
SIMULATOR = "simulator"

# Top to bottom: (layer name, first component of the module's path inside the package).
# "" is the package root itself (its __init__.py).
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    (APPLICATION, frozenset({"cli", "__main__", "runner", "checks"})),
    (ROOT, frozenset({""})),
    ("api_backends", frozenset({"api_backends"})),
    ("observability", frozenset({"observability"})),
    ("providers", frozenset({"providers"})),
    ("engine", frozenset({"engine"})),
    ("transport", frozenset({"transport"})),
    ("resilience", frozenset({"resilience"})),
    ("_version", frozenset({"_version"})),
)
LAZY_SIMULATOR_ENTRY = ("api_backends", "simulator.embedded")
"""(importer's top component, imported module): allowed inside a function only."""


@dataclass(frozen=True)
class Edge:
    """One import statement's dependency of ``source`` on ``target``."""

    source: str
    target: str
    path: Path
    line: int
    lazy: bool  # inside a function body
    type_only: bool  # under ``if TYPE_CHECKING:``

    def where(self) -> str:
        kind = ", TYPE_CHECKING" if self.type_only else ", in a function" if self.lazy else ""
        return f"{shown(self.path)}:{self.line}{kind}"


def shown(path: Path) -> str:
    """``path`` relative to the working directory when it is under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class Unresolved:
    path: Path
    line: int
    name: str


def module_names(package_dir: Path) -> dict[str, Path]:
    """Every module of the package, by dotted name (a package by its ``__init__``)."""
    package = package_dir.name
    found: dict[str, Path] = {}
    for path in sorted(package_dir.rglob("*.py")):
        rel = path.relative_to(package_dir).with_suffix("")
        parts = list(rel.parts)
        if any(not part.isidentifier() for part in parts):
            continue  # not importable (e.g. a data directory with dashes)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join([package, *parts])] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _imports(tree: ast.Module) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool, bool]]:
    """Each import statement with (inside a function?, under TYPE_CHECKING?)."""

    def walk(
        node: ast.AST, lazy: bool, type_only: bool
    ) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool, bool]]:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, lazy, type_only
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for statement in node.body:
                yield from walk(statement, lazy, True)
            for statement in node.orelse:
                yield from walk(statement, lazy, type_only)
            return
        inner = lazy or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            yield from walk(child, inner, type_only)

    yield from walk(tree, False, False)


def _base_of(module: str, is_package: bool, level: int) -> str:
    """The package a relative import of ``level`` dots starts from."""
    parts = module.split(".")
    if not is_package:
        parts.pop()
    if level > 1:
        parts = parts[: len(parts) - (level - 1)]
    return ".".join(parts)


def edges_of(
    module: str, path: Path, modules: dict[str, Path], package: str
) -> tuple[list[Edge], list[Unresolved]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    edges: list[Edge] = []
    unresolved: list[Unresolved] = []

    def add(target: str, node: ast.stmt, lazy: bool, type_only: bool) -> None:
        if target != module:
            edges.append(Edge(module, target, path, node.lineno, lazy, type_only))

    for node, lazy, type_only in _imports(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.name
                if name != package and not name.startswith(package + "."):
                    continue
                # ``import a.b.c`` depends on the deepest of a.b.c, a.b, a that is a module.
                while name not in modules and "." in name:
                    name = name.rsplit(".", 1)[0]
                if name in modules and name == alias.name:
                    add(name, node, lazy, type_only)
                else:
                    unresolved.append(Unresolved(path, node.lineno, alias.name))
            continue
        if node.level:
            base = _base_of(module, is_package, node.level)
            base = f"{base}.{node.module}" if node.module else base
        else:
            base = node.module or ""
            if base != package and not base.startswith(package + "."):
                continue
        if base not in modules:
            unresolved.append(Unresolved(path, node.lineno, base))
            continue
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            add(submodule if submodule in modules else base, node, lazy, type_only)
    return edges, unresolved


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (a deep package must not hit the recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def _shortest_cycle(start: str, graph: dict[str, set[str]], allowed: set[str]) -> list[str]:
    """The shortest path start -> ... -> start inside ``allowed`` (breadth first)."""
    previous: dict[str, str] = {}
    queue = deque([start])
    seen = {start}
    while queue:
        node = queue.popleft()
        for child in sorted(graph[node] & allowed):
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if child not in seen:
                seen.add(child)
                previous[child] = node
                queue.append(child)
    return []


def find_cycles(edges: Sequence[Edge], modules: dict[str, Path]) -> list[str]:
    graph: dict[str, set[str]] = {name: set() for name in modules}
    first_edge: dict[tuple[str, str], Edge] = {}
    for edge in edges:
        graph[edge.source].add(edge.target)
        first_edge.setdefault((edge.source, edge.target), edge)
    problems: list[str] = []
    seen: set[tuple[str, ...]] = set()
    for component in _strongly_connected(graph):
        if len(component) < 2:
            continue
        members = set(component)
        for start in component:
            cycle = _shortest_cycle(start, graph, members)
            # The same cycle found from each of its modules: keep one, from its smallest.
            lowest = cycle.index(min(cycle[:-1]))
            canonical = tuple(cycle[lowest:-1] + cycle[:lowest])
            if canonical in seen:
                continue
            seen.add(canonical)
            chain = [canonical[0]]
            for a, b in zip(canonical, canonical[1:] + canonical[:1], strict=True):
                chain.append(f"{b} ({first_edge[a, b].where()})")
            problems.append("import cycle: " + " -> ".join(chain))
    return problems


def layer_of(module: str) -> str | None:
    """The layer of a dotted module name (its first component after the package's)."""
    parts = module.split(".")[1:]
    top = parts[0] if parts else ""
    if top == SIMULATOR:
        return SIMULATOR
    for name, tops in LAYERS:
        if top in tops:
            return name
    return None


def _rank(layer: str) -> int:
    return [name for name, _ in LAYERS].index(layer)


def layer_problems(edges: Sequence[Edge], modules: dict[str, Path], package: str) -> list[str]:
    problems = [
        f"{shown(path)}: module {name} is in no layer (place it in scripts/check_imports.py)"
        for name, path in modules.items()
        if layer_of(name) is None
    ]
    lazy_from, lazy_target = LAZY_SIMULATOR_ENTRY
    for edge in edges:
        source = layer_of(edge.source)
        target = layer_of(edge.target)
        if source is None or target is None:
            continue
        where = f"{shown(edge.path)}:{edge.line}"
        if source == SIMULATOR:
            if target != SIMULATOR:
                problems.append(
                    f"{where}: the simulator stands alone, but {edge.source} imports {edge.target}"
                )
            continue
        if target == SIMULATOR:
            if source == APPLICATION:
                continue
            if source == lazy_from and edge.target == f"{package}.{lazy_target}" and edge.lazy:
                continue
            problems.append(
                f"{where}: only the applications import the simulator, but {edge.source} "
                f"({source}) imports {edge.target}"
            )
            continue
        if _rank(target) < _rank(source):
            problems.append(
                f"{where}: layer violation: {edge.source} ({source}) imports {edge.target} "
                f"({target}, a higher layer)"
            )
    return problems


def check(package_dir: Path) -> list[str]:
    """Every problem found in the package at ``package_dir``, one line each."""
    package = package_dir.name
    modules = module_names(package_dir)
    edges: list[Edge] = []
    problems: list[str] = []
    for name, path in modules.items():
        try:
            found, unresolved = edges_of(name, path, modules, package)
        except SyntaxError as exc:
            problems.append(f"{shown(path)}:{exc.lineno}: cannot parse: {exc.msg}")
            continue
        edges.extend(found)
        problems.extend(
            f"{shown(u.path)}:{u.line}: imports {u.name}, which is not a module of the package"
            for u in unresolved
        )
    return problems + find_cycles(edges, modules) + layer_problems(edges, modules, package)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "package_dir",
        nargs="?",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "ipfs_accelerate_py",
        help="the package's directory (default: this checkout's ipfs_accelerate_py)",
    )
    args = parser.parse_args(argv)
    package_dir: Path = args.package_dir
    if not (package_dir / "__init__.py").is_file():
        print(f"{package_dir}: not a package (no __init__.py)")
        return 1
    problems = check(package_dir)
    for line in problems:
        print(line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
