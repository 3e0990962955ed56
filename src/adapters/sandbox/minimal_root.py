# Mount-namespace machinery: how a child's filesystem view is reduced to a minimal root.
# Shared by the one-shot rlimit runner (imported by the service, called in the forked child
# before exec) and the warm zygote (this file is concatenated into the zygote's program after
# harness.py, see runtime.zygote_source), so it uses only the standard library and runs
# nothing when loaded but loading libc.
import ctypes
import os

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}  # glibc has no wrapper

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def pivot_into_minimal_root(paths: list[str], devices: list[str], empty: list[str]) -> None:
    """Make a tmpfs holding only `paths` (read-only, nosuid, nodev) and `devices`, with
    `empty` directories to mount on, the root of this (private, unshared) mount namespace;
    the old root is detached, so the host's files, sockets, FIFOs, ptys, cgroup files and
    setuid binaries are not reachable by any path."""
    new_root = "/tmp"  # any directory of the host serves as the mount point
    _check(
        _libc.mount(b"tmpfs", new_root.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=0755"),
        "root",
    )
    for path in [*paths, *devices]:
        target = new_root + path
        if os.path.isdir(path):
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            open(target, "a").close()  # an empty file to bind onto
        _check(_libc.mount(path.encode(), target.encode(), None, MS_BIND | MS_REC, None), "bind")
        if path not in devices:  # /dev/null must stay writable
            flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV
            _check(_libc.mount(None, target.encode(), None, flags, None), "read-only bind")
    for directory in [*empty, "/.old"]:
        os.makedirs(new_root + directory, exist_ok=True)
    os.chdir(new_root)
    _check(_libc.syscall(PIVOT_ROOT[os.uname().machine], b".", b".old"), "pivot_root")
    os.chdir("/")
    _check(_libc.umount2(b"/.old", MNT_DETACH), "detach the old root")
    os.rmdir("/.old")
    flags = MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV
    _check(_libc.mount(b"none", b"/", None, flags, None), "read-only root")
