"""A lease on a range of sandbox uids, so two services on one host never share uids.

The rlimit runner kills every process of a slot's uid after each execution, and both runners
name cgroups after the slot: two instances using the same range would kill each other's
executions. The lease is an flock held for the life of the process; a second instance moves
on to the next free range.

Unprivileged, the lock files live in a directory under the shared /tmp, where another user
could plant a symlink or a directory of their own first. The directory is used only when it is
a real directory owned by this user and writable by no one else, and the lock files are opened
relative to it without following symlinks and without truncating anything."""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
from pathlib import Path
from typing import IO

import attrs

RANGE_STRIDE = 10_000  # uids per range: a service's slots must fit in one (MAX_CONCURRENCY)
MAX_ATTEMPTS = 100  # ranges tried from the base
UID_BASE_MIN = 65_536  # below it live system users and daemons the uid sweep must never reach
UID_LIMIT = 2**31  # every leased uid stays below it (uid_t is unsigned; -1 means "no change")
UID_BASE_MAX = UID_LIMIT - MAX_ATTEMPTS * RANGE_STRIDE  # so that every range tried fits


class LeaseError(RuntimeError):
    """No uid range can be leased safely; the message says why."""


@attrs.frozen
class UidLease:
    base: int
    handle: IO[str] = attrs.field(repr=False, eq=False)


def lock_directory() -> Path:
    if os.geteuid() == 0:
        return Path("/run/safe-exec")
    return Path(tempfile.gettempdir()) / f"safe-exec-{os.getuid()}"


def _open_private_directory(directory: Path) -> int:
    """An fd of `directory`, created if missing; refused unless it is a real directory (not a
    symlink) owned by this user and neither group- nor world-writable."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        directory.mkdir(mode=0o700)
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(directory, flags)
    except OSError as error:
        raise LeaseError(f"uid lease directory {directory} is unusable: {error}") from None
    info = os.fstat(fd)
    problem = None
    if info.st_uid != os.geteuid():
        problem = f"it belongs to uid {info.st_uid}, not {os.geteuid()}"
    elif info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        problem = f"others may write to it (mode {stat.S_IMODE(info.st_mode):o})"
    if problem is not None:
        os.close(fd)
        raise LeaseError(f"uid lease directory {directory} is refused: {problem}")
    return fd


def _open_lock_file(directory_fd: int, name: str) -> IO[str]:
    """The lock file `name` in the directory, created if missing, never through a symlink."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, 0o600, dir_fd=directory_fd)
    except OSError as error:
        raise LeaseError(f"uid lease file {name} is unusable: {error}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise LeaseError(f"uid lease file {name} is not a regular file")
    return os.fdopen(fd, "r+")


def lease_uid_range(base: int, directory: Path | None = None) -> UidLease:
    if not UID_BASE_MIN <= base <= UID_BASE_MAX:
        raise LeaseError(f"uid base {base} is outside {UID_BASE_MIN}-{UID_BASE_MAX}")
    directory_fd = _open_private_directory(directory or lock_directory())
    try:
        for attempt in range(MAX_ATTEMPTS):
            candidate = base + attempt * RANGE_STRIDE
            handle = _open_lock_file(directory_fd, f"uids-{candidate}.lock")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            return UidLease(candidate, handle)
    finally:
        os.close(directory_fd)
    raise LeaseError(f"no free sandbox uid range from {base} in {MAX_ATTEMPTS} tries")
