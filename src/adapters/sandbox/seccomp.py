"""A small seccomp-bpf filter for the rlimit runner, built with ctypes (no libseccomp).

It allows everything except: sockets of any family but AF_UNIX (no network even where a
network namespace cannot be made), and the syscalls an escape needs (ptrace, namespaces,
mounts, BPF, perf, io_uring, keyrings, kernel modules). It exists only for machines whose
syscall table is listed here (x86_64, aarch64); elsewhere the runner reports it as missing."""

from __future__ import annotations

import ctypes
import errno
import platform
import struct

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_KILL_PROCESS = 0x80000000
AF_UNIX = 1
X32_SYSCALL_BIT = 0x40000000

BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_JGE_K = 0x35
BPF_RET_K = 0x06

# (audit arch, socket, syscalls refused with EPERM)
TABLES: dict[str, tuple[int, int, dict[str, int]]] = {
    "x86_64": (
        0xC000003E,
        41,
        {
            "ptrace": 101,
            "process_vm_readv": 310,
            "process_vm_writev": 311,
            "mount": 165,
            "umount2": 166,
            "pivot_root": 155,
            "chroot": 161,
            "unshare": 272,
            "setns": 308,
            "kexec_load": 246,
            "kexec_file_load": 320,
            "init_module": 175,
            "finit_module": 313,
            "delete_module": 176,
            "bpf": 321,
            "perf_event_open": 298,
            "keyctl": 250,
            "add_key": 248,
            "request_key": 249,
            "userfaultfd": 323,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
            "open_by_handle_at": 304,
            "name_to_handle_at": 303,
            "reboot": 169,
            "swapon": 167,
            "swapoff": 168,
            "syslog": 103,
            "iopl": 172,
            "ioperm": 173,
        },
    ),
    "aarch64": (
        0xC00000B7,
        198,
        {
            "ptrace": 117,
            "process_vm_readv": 270,
            "process_vm_writev": 271,
            "mount": 40,
            "umount2": 39,
            "pivot_root": 41,
            "chroot": 51,
            "unshare": 97,
            "setns": 268,
            "kexec_load": 104,
            "kexec_file_load": 294,
            "init_module": 105,
            "finit_module": 273,
            "delete_module": 106,
            "bpf": 280,
            "perf_event_open": 241,
            "keyctl": 219,
            "add_key": 217,
            "request_key": 218,
            "userfaultfd": 282,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
            "open_by_handle_at": 265,
            "name_to_handle_at": 264,
            "reboot": 142,
            "swapon": 224,
            "swapoff": 225,
            "syslog": 116,
        },
    ),
}


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def build_program(machine: str | None = None) -> bytes | None:
    """The filter's instructions for this machine, or None if its syscall table is unknown."""
    table = TABLES.get(machine or platform.machine())
    if table is None:
        return None
    arch, socket_nr, denied = table
    eperm = SECCOMP_RET_ERRNO | errno.EPERM
    eaccess = SECCOMP_RET_ERRNO | errno.EAFNOSUPPORT
    numbers = sorted(set(denied.values()))
    insns = [
        _insn(BPF_LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
        _insn(BPF_JEQ_K, 1, 0, arch),
        _insn(BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),
        _insn(BPF_LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
    ]
    if arch == TABLES["x86_64"][0]:
        insns.append(_insn(BPF_JGE_K, 0, 1, X32_SYSCALL_BIT))  # x32 ABI: refuse wholesale
        insns.append(_insn(BPF_RET_K, 0, 0, eperm))
    # socket(): jump to the family check, which sits after the deny list.
    insns.append(_insn(BPF_JEQ_K, len(numbers) + 2, 0, socket_nr))
    for index, number in enumerate(numbers):
        insns.append(_insn(BPF_JEQ_K, len(numbers) - index, 0, number))
    insns.append(_insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    insns.append(_insn(BPF_RET_K, 0, 0, eperm))
    insns.append(_insn(BPF_LD_W_ABS, 0, 0, 16))  # seccomp_data.args[0], low half
    insns.append(_insn(BPF_JEQ_K, 0, 1, AF_UNIX))
    insns.append(_insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    insns.append(_insn(BPF_RET_K, 0, 0, eaccess))
    return b"".join(insns)


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


class SeccompFilter:
    """Holds a prepared filter so that `install()` (in a forked child) only makes syscalls."""

    def __init__(self, program: bytes) -> None:
        self._buffer = ctypes.create_string_buffer(program, len(program))
        self._prog = _SockFprog(len(program) // 8, ctypes.addressof(self._buffer))
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._prctl = self._libc.prctl

    def install(self) -> None:
        if self._prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(NO_NEW_PRIVS) failed")
        if self._prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(self._prog), 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(SECCOMP) failed")
