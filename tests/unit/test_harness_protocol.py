"""The in-sandbox harness and domain.report agree on the report protocol.

The harness may import nothing of the service, so it repeats the status names. It runs itself
when imported, so it is read here with ast, never imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

from domain.classify import parse_harness_report
from domain.report import HarnessStatus

HARNESS = Path(__file__).resolve().parents[2] / "src" / "adapters" / "sandbox" / "harness.py"


def harness_tree() -> ast.Module:
    return ast.parse(HARNESS.read_text(encoding="utf-8"), filename=str(HARNESS))


def module_constant(name: str) -> object:
    """The literal value of a top-level `NAME = <literal>` in the harness."""
    for node in harness_tree().body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == name for target in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{HARNESS} assigns no top-level {name}")


def statuses_written(tree: ast.Module) -> set[str]:
    """Every status written as a literal `{"status": "<name>", ...}` in `tree`."""
    written: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if (
                    isinstance(key, ast.Constant)
                    and key.value == "status"
                    and isinstance(value, ast.Constant)
                    and isinstance(value.value, str)
                ):
                    written.add(value.value)
    return written


def test_the_harness_declares_exactly_the_domain_statuses() -> None:
    statuses = module_constant("STATUSES")

    assert isinstance(statuses, tuple)
    assert len(set(statuses)) == len(statuses), "duplicate status names"
    assert set(statuses) == {status.value for status in HarnessStatus}


def test_every_status_the_harness_writes_is_declared() -> None:
    declared = module_constant("STATUSES")
    assert isinstance(declared, tuple)

    written = statuses_written(harness_tree())

    assert written, "found no status literal in the harness; the scan is broken"
    assert written <= set(declared)


def test_every_status_is_written_somewhere() -> None:
    expected = {status.value for status in HarnessStatus}

    assert statuses_written(harness_tree()) == expected


def test_the_canned_memory_report_parses_as_memory_error_after_the_token_line() -> None:
    memory_report = module_constant("MEMORY_REPORT")
    assert isinstance(memory_report, bytes)
    token = b"5f0c8a1e9b7d"

    parsed = parse_harness_report(token + b"\n" + memory_report, token)

    assert parsed == ({"status": HarnessStatus.MEMORY_ERROR.value}, b"")


def test_the_scan_finds_status_literals_in_synthetic_source() -> None:
    tree = ast.parse('x = {"status": "ok", "detail": 1}\ny = {"other": "no_main", **z}')

    assert statuses_written(tree) == {"ok"}
