"""The one syscall policy, per architecture: the BPF program run in a small classic-BPF
interpreter (what the kernel does with it), and its kafel rendering for nsjail."""

from __future__ import annotations

import errno
import re
import struct

import pytest

from adapters.sandbox.seccomp import (
    ARCHES,
    DENIED,
    SECCOMP_RET_ALLOW,
    SECCOMP_RET_ERRNO,
    SECCOMP_RET_KILL_PROCESS,
    X32_SYSCALL_BIT,
    ZYGOTE_NEEDS,
    build_program,
    kafel_policy,
)

MACHINES = sorted(ARCHES)
AF_INET, AF_UNIX, AF_VSOCK, AF_ALG = 2, 1, 40, 38
CLONE_NEWUSER, CLONE_NEWNET, SIGCHLD = 0x10000000, 0x40000000, 17


def run_filter(program: bytes, arch: int, nr: int, args: tuple[int, ...] = ()) -> int:
    """What the kernel's classic-BPF interpreter returns for one system call."""
    padded = (*args, 0, 0, 0, 0, 0, 0)[:6]
    data = struct.pack("<iIQ6Q", nr, arch, 0, *padded)
    insns = [struct.unpack("HBBI", program[i : i + 8]) for i in range(0, len(program), 8)]
    acc, pc = 0, 0
    for _step in range(len(insns)):
        code, jt, jf, k = insns[pc]
        if code == 0x20:  # BPF_LD | BPF_W | BPF_ABS
            acc = struct.unpack_from("<I", data, k)[0]
            pc += 1
        elif code == 0x06:  # BPF_RET | BPF_K
            return k
        elif code in (0x15, 0x35, 0x45):  # BPF_JMP | JEQ / JGE / JSET, BPF_K
            taken = {0x15: acc == k, 0x35: acc >= k, 0x45: bool(acc & k)}[code]
            pc += 1 + (jt if taken else jf)
        else:
            raise AssertionError(f"instruction {code:#x} the filter should not use")
    raise AssertionError("the program ran off its end")


def errno_of(name: str) -> int:
    return SECCOMP_RET_ERRNO | getattr(errno, name)


@pytest.mark.parametrize("machine", MACHINES)
def test_every_denied_syscall_gets_eperm_and_the_rest_are_allowed(machine: str) -> None:
    program = build_program(machine)
    assert program is not None and len(program) // 8 <= 4096
    arch, numbers = ARCHES[machine]

    for name, nr in DENIED[machine].items():
        assert run_filter(program, arch, nr) == errno_of("EPERM"), name
    denied_or_checked = set(DENIED[machine].values()) | set(numbers.values())
    for nr in sorted(set(range(460)) - denied_or_checked):
        assert run_filter(program, arch, nr) == SECCOMP_RET_ALLOW, nr


@pytest.mark.parametrize("machine", MACHINES)
def test_sockets_other_than_unix_are_refused(machine: str) -> None:
    program = build_program(machine)
    assert program is not None
    arch, numbers = ARCHES[machine]

    assert run_filter(program, arch, numbers["socket"], (AF_UNIX, 1, 0)) == SECCOMP_RET_ALLOW
    for family in (AF_INET, 10, 16, 17, AF_VSOCK, AF_ALG, 30, 21):
        answer = run_filter(program, arch, numbers["socket"], (family, 1, 0))
        assert answer == errno_of("EAFNOSUPPORT"), family


@pytest.mark.parametrize("machine", MACHINES)
def test_namespace_clones_are_refused_and_clone3_falls_back(machine: str) -> None:
    program = build_program(machine)
    assert program is not None
    arch, numbers = ARCHES[machine]

    assert run_filter(program, arch, numbers["clone"], (SIGCHLD,)) == SECCOMP_RET_ALLOW
    for flags in (CLONE_NEWUSER, CLONE_NEWNET | SIGCHLD, 0x00020000):
        assert run_filter(program, arch, numbers["clone"], (flags,)) == errno_of("EPERM")
    assert run_filter(program, arch, numbers["clone3"]) == errno_of("ENOSYS")


@pytest.mark.parametrize("machine", MACHINES)
def test_a_foreign_architecture_is_killed(machine: str) -> None:
    program = build_program(machine)
    assert program is not None
    other = next(arch for m, (arch, _) in ARCHES.items() if m != machine)
    i386 = 0x40000003

    for arch in (other, i386):
        assert run_filter(program, arch, 39) == SECCOMP_RET_KILL_PROCESS


def test_x32_syscalls_are_refused_on_x86_64() -> None:
    program = build_program("x86_64")
    assert program is not None
    arch = ARCHES["x86_64"][0]

    for nr in (39, 41, 101, 512, 547):  # getpid, socket, ptrace, x32-only numbers
        assert run_filter(program, arch, X32_SYSCALL_BIT | nr) == errno_of("EPERM"), nr


def test_an_unknown_architecture_has_no_policy() -> None:
    assert build_program("riscv64") is None
    assert kafel_policy("riscv64") is None


def kafel_numbers(policy: str, action: str) -> set[int]:
    block = re.search(rf"ERRNO\({action}\) {{ (SYSCALL\[[^}}]*) }}", policy)
    assert block is not None, policy[:300]
    return {int(n, 16) for n in re.findall(r"SYSCALL\[(0x[0-9a-f]+)\]", block.group(1))}


@pytest.mark.parametrize("machine", MACHINES)
def test_the_kafel_policy_refuses_the_same_numbers(machine: str) -> None:
    policy = kafel_policy(machine)
    assert policy is not None
    _arch, numbers = ARCHES[machine]

    refused = kafel_numbers(policy, str(errno.EPERM))

    native = {nr for nr in refused if nr < X32_SYSCALL_BIT}
    assert native == set(DENIED[machine].values())
    assert kafel_numbers(policy, str(errno.ENOSYS)) == {numbers["clone3"]}
    assert f"socket {{ family != {AF_UNIX} }}" in policy
    assert "clone { (clone_flags & 0x7e020000) != 0 }" in policy
    x32 = {nr for nr in refused if nr >= X32_SYSCALL_BIT}
    assert (X32_SYSCALL_BIT + 39 in x32) is (machine == "x86_64")


def test_no_architecture_names_a_syscall_it_does_not_have() -> None:
    assert "iopl" not in DENIED["aarch64"] and "ioperm" not in DENIED["aarch64"]
    assert DENIED["aarch64"].keys() <= DENIED["x86_64"].keys()


@pytest.mark.parametrize("machine", MACHINES)
def test_the_zygote_keeps_only_what_it_needs(machine: str) -> None:
    full, zygote = kafel_policy(machine), kafel_policy(machine, keep=ZYGOTE_NEEDS)
    assert full is not None and zygote is not None

    dropped = kafel_numbers(full, "1") - kafel_numbers(zygote, "1")

    assert dropped == {DENIED[machine][name] for name in ZYGOTE_NEEDS}
