"""Landlock: the rlimit runner's filesystem confinement where it cannot have mount namespaces
(degraded mode). An unprivileged process restricts itself, so this works wherever the kernel
has Landlock, whatever the container runtime allows.

The execution may read and execute beneath the runtime's paths, read and write the four
devices, and do anything beneath its private work directory; every other path is refused
(EACCES), /proc and the host's /tmp included. From ABI 6 on it is also scoped: it cannot
connect to abstract unix sockets or signal processes outside its own Landlock domain.

What Landlock does not cover (and degraded mode therefore does not guarantee): connecting to
a named unix socket of the host (Landlock does not mediate connect(); DAC does), and walking
directories by name (only listing them is refused)."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence

SYS_CREATE_RULESET = 444  # the same numbers on every architecture
SYS_ADD_RULE = 445
SYS_RESTRICT_SELF = 446
CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH = 1

EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1  # ABI 6

FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV  # all a file rule may hold
READ_EXECUTE = EXECUTE | READ_FILE | READ_DIR
DEVICE = READ_FILE | WRITE_FILE
# Everything a program does with its own files; never device nodes.
OWN_FILES = (
    EXECUTE
    | WRITE_FILE
    | READ_FILE
    | READ_DIR
    | REMOVE_DIR
    | REMOVE_FILE
    | MAKE_DIR
    | MAKE_REG
    | MAKE_SOCK
    | MAKE_FIFO
    | MAKE_SYM
    | REFER
    | TRUNCATE
)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _RulesetAttr(ctypes.Structure):
    _fields_ = (
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    )


class _PathBeneath(ctypes.Structure):
    _pack_ = 1  # the kernel's struct is packed: 12 bytes
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


def abi() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is absent or disabled."""
    version = _libc.syscall(SYS_CREATE_RULESET, None, 0, CREATE_RULESET_VERSION)
    return max(0, int(version))


def handled_fs(version: int) -> int:
    """Every filesystem right this ABI knows: all of them are refused unless a rule allows."""
    rights = (1 << 13) - 1
    if version >= 2:
        rights |= REFER
    if version >= 3:
        rights |= TRUNCATE
    if version >= 5:
        rights |= IOCTL_DEV
    return rights


def _attr_size(version: int) -> int:
    # The kernel accepts the struct as long as the fields it knows (ABI 1: fs; 4: net; 6:
    # scoped); a longer one with unknown non-zero fields is refused.
    return 24 if version >= 6 else 16 if version >= 4 else 8


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"landlock {what}: {os.strerror(err)}")
    return result


class Confinement:
    """A Landlock policy prepared in the service and applied in the child before exec
    (`apply` makes only system calls). `version` 0 means Landlock is unavailable."""

    def __init__(
        self,
        version: int,
        read_execute: Sequence[str],
        devices: Sequence[str],
        writable: Sequence[str],
    ) -> None:
        self.version = version
        handled = handled_fs(version)
        self._attr = _RulesetAttr(
            handled,
            0,  # network: seccomp already refuses every socket family but AF_UNIX
            SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if version >= 6 else 0,
        )
        wanted = [
            *((path, READ_EXECUTE) for path in read_execute),
            *((path, DEVICE) for path in devices),
            *((path, OWN_FILES) for path in writable),
        ]
        self._rules = [
            (path.encode(), access & handled & (~0 if os.path.isdir(path) else FILE_RIGHTS))
            for path, access in wanted
            if os.path.exists(path)
        ]

    def apply(self) -> None:
        """Restrict this process and its future children. Needs no_new_privs set first."""
        ruleset = _check(
            _libc.syscall(
                SYS_CREATE_RULESET, ctypes.byref(self._attr), _attr_size(self.version), 0
            ),
            "create_ruleset",
        )
        try:
            for path, access in self._rules:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                try:
                    rule = _PathBeneath(access, fd)
                    _check(
                        _libc.syscall(
                            SYS_ADD_RULE, ruleset, RULE_PATH_BENEATH, ctypes.byref(rule), 0
                        ),
                        f"add_rule {path!r}",
                    )
                finally:
                    os.close(fd)
            _check(_libc.syscall(SYS_RESTRICT_SELF, ruleset, 0), "restrict_self")
        finally:
            os.close(ruleset)
