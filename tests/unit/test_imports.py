"""Routing a script to the lightest warm interpreter: imports read from the syntax tree."""

from __future__ import annotations

import keyword

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.imports import imported_roots, needs_preloaded

PRELOAD = ("numpy", "pandas")


@pytest.mark.parametrize(
    ("source", "roots"),
    [
        ("import numpy as np\n", {"numpy"}),
        ("import os, numpy.linalg\n", {"os", "numpy"}),
        ("from pandas.core import frame\n", {"pandas"}),
        ("from . import sibling\nfrom .pkg import x\n", set()),
        ("def main():\n    import pandas\n    return 1\n", {"pandas"}),
        ("if False:\n    import numpy\n", {"numpy"}),
        ("np = __import__('numpy.random')\n", {"numpy"}),
        ("import importlib\npd = importlib.import_module('pandas')\n", {"importlib", "pandas"}),
        ("name = 'numpy'\nmodule = __import__(name)\n", set()),  # not a literal: unknowable
        ("# import numpy\ntext = 'import pandas'\n", set()),  # comments and strings are not code
    ],
)
def test_imported_roots_reads_real_imports_only(source: str, roots: set[str]) -> None:
    assert imported_roots(source) == frozenset(roots)


@pytest.mark.parametrize("source", ["def main(:\n", "import\n", "x = '\n", "\0"])
def test_a_script_that_does_not_parse_has_no_known_imports(source: str) -> None:
    assert imported_roots(source) is None
    assert needs_preloaded(source, PRELOAD) is False  # the plain zygote reports SYNTAX_ERROR


def test_deep_nesting_does_not_break_routing() -> None:
    source = "x = " + "(" * 5000 + ")" * 5000 + "\nimport numpy\n"

    assert needs_preloaded(source, PRELOAD) in (True, False)


def test_needs_preloaded_only_for_the_preloaded_packages() -> None:
    assert needs_preloaded("import pandas as pd\n", PRELOAD)
    assert needs_preloaded("from numpy import array\n", PRELOAD)
    assert not needs_preloaded("import json, math\n", PRELOAD)
    assert not needs_preloaded("import numpy\n", ())  # nothing preloaded: always plain
    assert not needs_preloaded("import numpyx\n", PRELOAD)  # a prefix is not the package


names = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda name: not keyword.iskeyword(name)
)
dotted = st.lists(names, min_size=1, max_size=3).map(".".join)


@given(modules=st.lists(dotted, max_size=6), extra=st.lists(dotted, max_size=3))
def test_adding_an_import_never_hides_another(modules: list[str], extra: list[str]) -> None:
    base = "".join(f"import {m}\n" for m in modules)
    more = base + "".join(f"from {m} import x\n" for m in extra)

    before, after = imported_roots(base), imported_roots(more)

    assert before is not None and after is not None
    assert before == {m.split(".")[0] for m in modules}
    assert before <= after


@given(modules=st.lists(dotted, max_size=6))
def test_routing_agrees_with_the_roots(modules: list[str]) -> None:
    source = "".join(f"import {m}\n" for m in modules) + "def main():\n    return 1\n"

    expected = any(m.split(".")[0] in PRELOAD for m in modules)

    assert needs_preloaded(source, PRELOAD) is expected
