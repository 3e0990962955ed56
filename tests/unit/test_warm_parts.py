"""The warm runner's pure parts: routing, the keeper's exit message, the jail configuration,
and the program the zygote runs (its execution is tested for real in the integration suites)."""

from __future__ import annotations

import ast
import os
import sys

import pytest

from adapters.sandbox.process import Launch
from adapters.sandbox.runtime import harness_source, zygote_source
from adapters.sandbox.seccomp import build_program
from adapters.sandbox.warm import (
    DATA,
    EXECUTION_NAMESPACES,
    PLAIN,
    WarmSandbox,
    _parse_exit,
    jail_config,
    slot_cpu,
)
from domain.limits import MIB, Limits

LIMITS = Limits(wall_time_s=2, cpu_time_s=2, memory_bytes=256 * MIB, tmp_size_bytes=8 * MIB)


def runner(preload: tuple[str, ...]) -> WarmSandbox:
    def launch(_slot: int, _fd: int) -> Launch:
        raise AssertionError("never started in unit tests")

    return WarmSandbox(
        name="test-warm",
        isolation=("test",),
        launch=launch,
        jail=lambda _slot: {},
        limits=LIMITS,
        slots=1,
        preload=preload,
    )


def test_scripts_go_to_the_lightest_zygote_that_has_their_imports() -> None:
    warm = runner(("numpy", "pandas"))

    assert warm.kinds == (PLAIN, DATA)
    assert warm.kind_for("def main():\n    return 1\n") == PLAIN
    assert warm.kind_for("import pandas as pd\ndef main():\n    return 1\n") == DATA
    assert warm.kind_for("def main(:\n    import pandas\n") == PLAIN  # SYNTAX_ERROR stays exact


def test_without_preloaded_libraries_there_is_one_kind() -> None:
    warm = runner(())

    assert warm.kinds == (PLAIN,)
    assert warm.kind_for("import pandas\n") == PLAIN


def test_an_unusable_runner_refuses_to_start_and_reports_why() -> None:
    warm = runner(())
    warm.unusable = "no namespaces here"

    with pytest.raises(RuntimeError, match="no namespaces here"):
        warm.start()


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (b"exit 0 0.25 0.5 1024", (0, 0.75, 1024 * 1024)),
        (b"exit 9 1.0 0.0 10", (9, 1.0, 10 * 1024)),
        (b"ready 1 2\x00exit 256 0.0 0.0 1", (256, 0.0, 1024)),
    ],
)
def test_the_exit_message_gives_status_cpu_and_peak(
    message: bytes, expected: tuple[int, float, int]
) -> None:
    assert _parse_exit(message) == expected


@pytest.mark.parametrize("message", [b"", b"ready 1 2", b"exit", b"exit x y z w", b"error boom"])
def test_no_exit_message_means_no_known_end(message: bytes) -> None:
    assert _parse_exit(message) is None


def test_the_jail_configuration_carries_every_layer() -> None:
    program = build_program("x86_64")
    assert program is not None

    config = jail_config(
        limits=LIMITS,
        seccomp=program,
        scratch=("/tmp",),
        uid=900123,
        root_paths=("/usr/lib/python3.11",),
        devices=("/dev/null",),
        proc_options="hidepid=2",
        cpu=1,
    )

    assert config["namespaces"] == EXECUTION_NAMESPACES
    # mount, IPC and PID per execution; network and UTS per zygote; never a user namespace
    assert config["namespaces"] == 0x00020000 | 0x08000000 | 0x20000000
    assert config["zygote_namespaces"] == 0x40000000 | 0x04000000
    assert not (config["namespaces"] | config["zygote_namespaces"]) & 0x10000000
    assert bytes.fromhex(config["seccomp"]) == program
    assert config["tmp_size"] == 8 * MIB
    assert (config["uid"], config["root_paths"], config["cpu"]) == (
        900123,
        ["/usr/lib/python3.11"],
        1,
    )
    assert config["devices"] == ["/dev/null"]


def test_both_programs_parse_and_run_nothing_but_their_entry_point() -> None:
    for source, entry in ((harness_source(), "_bootstrap"), (zygote_source(), "zygote_main")):
        tree = ast.parse(source)
        calls = [
            node.value.func.id
            for node in tree.body
            if isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name)
        ]
        assert calls == [entry]
        first = tree.body[0]
        assert isinstance(first, ast.ImportFrom) and first.module == "__future__"


def _runtime_imports(tree: ast.AST) -> set[str]:
    """Top-level modules imported at run time (an `if TYPE_CHECKING:` body never runs)."""
    found: set[str] = set()
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
        found |= _runtime_imports(node)
    return found


def test_the_sandbox_programs_import_only_the_standard_library() -> None:
    for source in (harness_source(), zygote_source()):
        imported = _runtime_imports(ast.parse(source))

        assert "os" in imported  # the scan sees imports at all
        assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def test_slots_are_pinned_only_where_the_cpus_are_the_services_own() -> None:
    mask = sorted(os.sched_getaffinity(0))

    assert slot_cpu(0, quota=lambda: None) == mask[0]
    assert slot_cpu(len(mask), quota=lambda: None) == mask[0]  # wraps around the mask
    # under a CPU quota the mask is the whole node's: pinning would stack instances on a core
    assert slot_cpu(0, quota=lambda: 1.5) is None


def test_no_runner_lists_a_layer_twice() -> None:
    from adapters.sandbox.rlimit import RlimitSandbox, warm_rlimit
    from adapters.sandbox.runtime import SandboxRuntime, default_interpreter

    one_shot = RlimitSandbox(runtime=SandboxRuntime(python=default_interpreter()), uid_base=900000)
    warm = warm_rlimit(one_shot, LIMITS, 1, ())

    for layers in (one_shot.isolation, warm.isolation):
        assert len(layers) == len(set(layers)), layers
