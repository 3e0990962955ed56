"""The layers import only what they may: domain <- application <- adapters <- entrypoints.

Every .py file under src/ is parsed with ast (never imported). Imports anywhere in a file count,
including those inside functions and `if TYPE_CHECKING:` blocks, and
`importlib.import_module("x")` / `__import__("x")` calls with a literal name.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
LAYERS = ("domain", "application", "adapters", "entrypoints")
STDLIB = frozenset(sys.stdlib_module_names)
ATTRS = frozenset({"attrs", "attr"})  # one distribution, two import names

ALLOWED = {
    "domain": STDLIB | ATTRS | {"domain"},
    "application": STDLIB | ATTRS | {"domain", "application"},
}
FORBIDDEN = {
    "application": frozenset(
        {
            "adapters",
            "entrypoints",
            "litestar",
            "uvicorn",
            "dependency_injector",
            "nsjail",
            "subprocess",
        }
    ),
    "adapters": frozenset({"entrypoints"}),
}


def imported_modules(source: str, layer: str) -> set[str]:
    """The dotted names a module imports; a relative import stays inside its own layer."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            modules.add(layer if node.level > 0 else node.module or "")
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func) and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                modules.add(first.value)
    return modules


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in {"__import__", "import_module"}
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def violations(source: str, layer: str) -> list[str]:
    """Every import in `source` that `layer` may not make, as readable lines."""
    found = []
    for module in sorted(imported_modules(source, layer)):
        top = module.split(".")[0]
        allowed = ALLOWED.get(layer)
        if top in FORBIDDEN.get(layer, ()) or (allowed is not None and top not in allowed):
            found.append(f"{layer} imports {module}")
    return found


def source_files() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def layer_of(path: Path) -> str:
    return path.relative_to(SRC).parts[0]


# --- the source tree ------------------------------------------------------------------------


def test_every_layer_has_source_files() -> None:
    assert {layer_of(path) for path in source_files()} >= set(LAYERS)


def test_every_source_file_belongs_to_a_known_layer() -> None:
    unknown = [str(path) for path in source_files() if layer_of(path) not in LAYERS]

    assert unknown == []


@pytest.mark.parametrize("path", source_files(), ids=lambda path: str(path.relative_to(SRC)))
def test_the_file_respects_its_layer(path: Path) -> None:
    source = path.read_text(encoding="utf-8")

    assert violations(source, layer_of(path)) == []


# --- the checker itself ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layer", "source"),
    [
        ("domain", "import litestar"),
        ("domain", "from application.ports import Sandbox"),
        ("domain", "from adapters.sandbox import nsjail"),
        ("domain", "import numpy as np"),
        ("application", "import subprocess"),
        ("application", "from subprocess import run"),
        ("application", "from adapters.metrics import Metrics"),
        ("application", "import entrypoints.app"),
        ("application", "from dependency_injector import containers"),
        ("application", "import nsjail"),
        ("application", "def f():\n    import uvicorn\n"),
        ("application", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import litestar"),
        ("application", "import importlib\nimportlib.import_module('litestar')"),
        ("application", "__import__('subprocess')"),
        ("adapters", "from entrypoints.container import Container"),
        ("adapters", "import entrypoints"),
    ],
)
def test_the_checker_catches_a_violation(layer: str, source: str) -> None:
    assert violations(source, layer) != []


@pytest.mark.parametrize(
    ("layer", "source"),
    [
        ("domain", "from __future__ import annotations\nimport json, enum\nimport attrs"),
        ("domain", "from attrs import validators\nfrom domain.limits import Limits"),
        ("domain", "from . import limits\nfrom .outcome import Failure"),
        ("application", "import asyncio\nfrom concurrent.futures import Executor"),
        ("application", "from domain.classify import classify\nfrom application.ports import X"),
        ("adapters", "import subprocess\nimport litestar\nfrom application.ports import Sandbox"),
        ("entrypoints", "import uvicorn\nfrom adapters.settings import Settings"),
    ],
)
def test_the_checker_accepts_allowed_imports(layer: str, source: str) -> None:
    assert violations(source, layer) == []


def test_the_checker_names_the_offending_module() -> None:
    assert violations("import json\nfrom litestar import Litestar", "domain") == [
        "domain imports litestar"
    ]
