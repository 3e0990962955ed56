"""A lease on a range of sandbox uids, so two services on one host never share uids.

The rlimit runner kills every process of a slot's uid after each execution, and both runners
name cgroups after the slot: two instances using the same range would kill each other's
executions. The lease is an flock held for the life of the process; a second instance moves
on to the next free range."""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path
from typing import IO

import attrs

RANGE_STRIDE = 10_000
MAX_ATTEMPTS = 100


@attrs.frozen
class UidLease:
    base: int
    handle: IO[str] = attrs.field(repr=False, eq=False)


def lock_directory() -> Path:
    if os.geteuid() == 0:
        return Path("/run/safe-exec")
    return Path(tempfile.gettempdir()) / f"safe-exec-{os.getuid()}"


def lease_uid_range(base: int, directory: Path | None = None) -> UidLease:
    directory = directory or lock_directory()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for attempt in range(MAX_ATTEMPTS):
        candidate = base + attempt * RANGE_STRIDE
        handle = (directory / f"uids-{candidate}.lock").open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        return UidLease(candidate, handle)
    raise RuntimeError(f"no free sandbox uid range from {base} in {MAX_ATTEMPTS} tries")
