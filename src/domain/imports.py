"""Which modules a script imports, read from its syntax tree (never from regexes, never run).

The warm runners keep one zygote with the heavy libraries preloaded and one without; this
decides which of the two a script needs."""

from __future__ import annotations

import ast
from collections.abc import Collection

DYNAMIC_IMPORTERS = frozenset({"__import__", "import_module"})


def imported_roots(source: str) -> frozenset[str] | None:
    """The top-level package of every absolute import anywhere in `source` (including
    `__import__("x")` and `importlib.import_module("x")` with a literal name), or None when
    the source does not parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and _dynamic_import(node.func) and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str) and first.value:
                roots.add(first.value.split(".")[0])
    return frozenset(roots)


def _dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in DYNAMIC_IMPORTERS
    return isinstance(func, ast.Attribute) and func.attr in DYNAMIC_IMPORTERS


def needs_preloaded(source: str, preloaded: Collection[str]) -> bool:
    """Whether the script imports any of the `preloaded` top-level packages. A script that
    does not parse needs none: the lightest interpreter reports its SYNTAX_ERROR exactly."""
    roots = imported_roots(source)
    return roots is not None and not roots.isdisjoint(preloaded)
