"""medmae's own import graph, read from the source with ``ast`` (nothing is imported).

Every import counts, including those inside functions. Used by the studies (which source
files a step's results depend on, :mod:`medmae.studies.code`) and by tests/test_layers.py
(no cycle, no upward import).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def module_name(path: Path, pkg: Path = PACKAGE) -> str:
    """``pkg/io/read.py`` -> ``medmae.io.read``; a package's ``__init__.py`` -> the package."""
    parts = list(path.relative_to(pkg.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_files(pkg: Path = PACKAGE) -> dict[str, Path]:
    """Module name -> its file, for every ``.py`` under ``pkg``."""
    return {module_name(p, pkg): p for p in sorted(pkg.rglob("*.py"))}


def imports(path: Path, modules: set[str], pkg: Path = PACKAGE) -> set[str]:
    """The modules of ``modules`` that ``path`` imports anywhere (``from a.b import c`` counts
    as ``a.b.c`` when that is a module, else as ``a.b``)."""
    me = module_name(path, pkg)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.add(full if full in modules else base)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m in modules and m != me}


def import_graph(pkg: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    files = module_files(pkg)
    return {m: imports(p, set(files), pkg) for m, p in files.items()}


def closure(graph: dict[str, set[str]], roots: list[str]) -> set[str]:
    """``roots`` and every module they import, directly or not (a package's ``__init__``
    counts for each of its modules: importing ``a.b.c`` runs ``a`` and ``a.b``)."""
    missing = [r for r in roots if r not in graph]
    if missing:
        raise KeyError(f"not modules of the package: {missing}")
    seen, todo = set(), list(roots)
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        parents = [".".join(m.split(".")[:i]) for i in range(1, m.count(".") + 1)]
        todo += [t for t in (*graph[m], *parents) if t in graph and t not in seen]
    return seen
