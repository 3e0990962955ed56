"""The one syscall policy of every sandbox, rendered two ways: a seccomp-bpf program built
with ctypes (no libseccomp), which the rlimit runners and every warm execution install, and a
kafel policy for nsjail's one-shot jails and warm zygotes.

It allows everything except: sockets of any family but AF_UNIX (no network even where a
network namespace cannot be made; AF_VSOCK reaches the hypervisor, AF_ALG, AF_TIPC, AF_RDS
load kernel code with a CVE history), the syscalls an escape needs (ptrace, namespaces,
mounts, BPF, perf, io_uring, keyrings, kernel modules, handles), what lets one execution watch
or starve another through the shared kernel (inotify and fanotify on the shared read-only
runtime, the AIO context pool of io_setup), clock and accounting changes, and, on x86_64,
every x32-ABI syscall (bit 30 of the number), which would otherwise bypass rules written for
the native numbers. It exists only for machines whose syscall table is listed here (x86_64,
aarch64); elsewhere the runners report seccomp as missing."""

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
X32_SYSCALLS = 1024  # x32 numbers in use are below 0x40000000 + 600; beyond, none exist
BPF_MAXINSNS = 4096

BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_JGE_K = 0x35
BPF_JSET_K = 0x45
BPF_RET_K = 0x06
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
CLONE_NEW_NAMESPACES = 0x7E020000

# What a warm zygote must keep to build each execution's jail; the execution's own filter
# refuses these too.
ZYGOTE_NEEDS = frozenset({"mount", "unshare", "setns"})

# Refused with EPERM, by name, with their numbers on each architecture (a name missing on an
# architecture does not exist there: iopl and ioperm are x86-only, inotify_init is legacy).
DENIED: dict[str, dict[str, int]] = {
    "x86_64": {
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
        "acct": 163,
        "settimeofday": 164,
        "clock_settime": 227,
        "clock_adjtime": 305,
        "adjtimex": 159,
        "quotactl": 179,
        "vhangup": 153,
        "inotify_init": 253,
        "inotify_init1": 294,
        "inotify_add_watch": 254,
        "inotify_rm_watch": 255,
        "fanotify_init": 300,
        "fanotify_mark": 301,
        "io_setup": 206,
        "io_destroy": 207,
        "io_getevents": 208,
        "io_submit": 209,
        "io_cancel": 210,
        "io_pgetevents": 333,
    },
    "aarch64": {
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
        "acct": 89,
        "settimeofday": 170,
        "clock_settime": 112,
        "clock_adjtime": 266,
        "adjtimex": 171,
        "quotactl": 60,
        "vhangup": 58,
        "inotify_init1": 26,
        "inotify_add_watch": 27,
        "inotify_rm_watch": 28,
        "fanotify_init": 262,
        "fanotify_mark": 263,
        "io_setup": 0,
        "io_destroy": 1,
        "io_submit": 2,
        "io_cancel": 3,
        "io_getevents": 4,
        "io_pgetevents": 292,
    },
}
# (audit arch, syscalls checked by argument)
ARCHES: dict[str, tuple[int, dict[str, int]]] = {
    "x86_64": (0xC000003E, {"socket": 41, "clone": 56, "clone3": 435}),
    "aarch64": (0xC00000B7, {"socket": 198, "clone": 220, "clone3": 435}),
}


Insn = tuple[int, str | None, str | None, int]  # (code, jump-if-true, jump-if-false, k)


def _assemble(program: list[Insn | str]) -> bytes:
    """Classic BPF with named jump targets: a str entry is a label for the next instruction."""
    positions: dict[str, int] = {}
    insns: list[Insn] = []
    for entry in program:
        if isinstance(entry, str):
            positions[entry] = len(insns)
        else:
            insns.append(entry)

    def offset(label: str | None, index: int) -> int:
        return 0 if label is None else positions[label] - index - 1

    return b"".join(
        struct.pack("HBBI", code, offset(jt, i), offset(jf, i), k)
        for i, (code, jt, jf, k) in enumerate(insns)
    )


def build_program(machine: str | None = None) -> bytes | None:
    """The filter's instructions for this machine, or None if its syscall table is unknown."""
    machine = machine or platform.machine()
    if machine not in ARCHES:
        return None
    arch, numbers = ARCHES[machine]
    denied = DENIED[machine]
    program: list[Insn | str] = [
        (BPF_LD_W_ABS, None, None, 4),  # seccomp_data.arch
        (BPF_JEQ_K, "native", None, arch),
        (BPF_RET_K, None, None, SECCOMP_RET_KILL_PROCESS),
        "native",
        (BPF_LD_W_ABS, None, None, 0),  # seccomp_data.nr
    ]
    if machine == "x86_64":
        program.append((BPF_JGE_K, "eperm", None, X32_SYSCALL_BIT))  # x32 ABI: refuse wholesale
    program += [
        (BPF_JEQ_K, "socket", None, numbers["socket"]),
        (BPF_JEQ_K, "clone", None, numbers["clone"]),
        # clone3 passes its flags in memory, out of a filter's sight: ENOSYS makes the C
        # library fall back to clone(), whose flags are checked below.
        (BPF_JEQ_K, "enosys", None, numbers["clone3"]),
        *((BPF_JEQ_K, "eperm", None, number) for number in sorted(set(denied.values()))),
        (BPF_RET_K, None, None, SECCOMP_RET_ALLOW),
        "socket",
        (BPF_LD_W_ABS, None, None, 16),  # seccomp_data.args[0] (low half): the family
        (BPF_JEQ_K, "allow", "eafnosupport", AF_UNIX),
        "clone",
        (BPF_LD_W_ABS, None, None, 16),  # seccomp_data.args[0] (low half): the flags
        (BPF_JSET_K, "eperm", "allow", CLONE_NEW_NAMESPACES),
        "allow",
        (BPF_RET_K, None, None, SECCOMP_RET_ALLOW),
        "eperm",
        (BPF_RET_K, None, None, SECCOMP_RET_ERRNO | errno.EPERM),
        "enosys",
        (BPF_RET_K, None, None, SECCOMP_RET_ERRNO | errno.ENOSYS),
        "eafnosupport",
        (BPF_RET_K, None, None, SECCOMP_RET_ERRNO | errno.EAFNOSUPPORT),
    ]
    return _assemble(program)


def kafel_policy(machine: str | None = None, keep: frozenset[str] = frozenset()) -> str | None:
    """The same policy in nsjail's kafel language, by number (so it compiles whatever names
    kafel knows for the architecture), less the syscalls in `keep`; None where unknown."""
    machine = machine or platform.machine()
    if machine not in ARCHES:
        return None
    _arch, numbers = ARCHES[machine]
    refused = sorted(nr for name, nr in DENIED[machine].items() if name not in keep)
    if machine == "x86_64":  # kafel checks the architecture but not the x32 bit
        refused += range(X32_SYSCALL_BIT, X32_SYSCALL_BIT + X32_SYSCALLS)
    listed = ", ".join(f"SYSCALL[{nr:#x}]" for nr in refused)
    namespaces = f"{CLONE_NEW_NAMESPACES:#x}"
    return (
        "POLICY safe_exec {\n"
        f"  ERRNO({errno.EPERM}) {{ {listed} }},\n"
        # clone3 passes its flags in memory, out of a filter's sight: ENOSYS makes the C
        # library fall back to clone(), whose flags are checked.
        f"  ERRNO({errno.ENOSYS}) {{ SYSCALL[{numbers['clone3']:#x}] }},\n"
        f"  ERRNO({errno.EPERM}) {{ clone {{ (clone_flags & {namespaces}) != 0 }} }},\n"
        f"  ERRNO({errno.EAFNOSUPPORT}) {{ socket {{ family != {AF_UNIX} }} }}\n"
        "}\n"
        "USE safe_exec DEFAULT ALLOW\n"
    )


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


class SeccompFilter:
    """Holds a prepared filter so that `install()` (in a forked child) only makes syscalls."""

    def __init__(self, program: bytes) -> None:
        self.program = program
        self._buffer = ctypes.create_string_buffer(program, len(program))
        self._prog = _SockFprog(len(program) // 8, ctypes.addressof(self._buffer))
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._prctl = self._libc.prctl

    def install(self) -> None:
        if self._prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(NO_NEW_PRIVS) failed")
        if self._prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(self._prog), 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(SECCOMP) failed")
