"""The Python runtime the sandbox runs: an interpreter and library directories that the
unprivileged sandbox user can read. Never the service's own code or virtualenv."""

from __future__ import annotations

import os
import platform
import stat
import sys
from functools import cache
from pathlib import Path

import attrs

HARNESS_PATH = Path(__file__).with_name("harness.py")
ZYGOTE_PATH = Path(__file__).with_name("zygote.py")
MINIMAL_ROOT_PATH = Path(__file__).with_name("minimal_root.py")

# Thread pools inside numpy/BLAS would otherwise start one thread per core and count
# against the process limit; the sandbox is single-threaded by design.
SANDBOX_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONHASHSEED": "random",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}


@cache
def harness_source() -> str:
    """The one-shot program: the harness, then its entry point."""
    return HARNESS_PATH.read_text() + "\n_bootstrap()\n"


@cache
def zygote_source() -> str:
    """The warm program: the harness (for running each script), the mount machinery it
    shares with the one-shot rlimit runner, then the zygote."""
    parts = (HARNESS_PATH, MINIMAL_ROOT_PATH, ZYGOTE_PATH)
    return "\n".join(part.read_text() for part in parts) + "\nzygote_main()\n"


def world_readable(path: Path) -> bool:
    """True when any user can reach `path`: every parent directory is o+x and it is o+r."""
    try:
        resolved = path.resolve(strict=True)
        if not resolved.stat().st_mode & stat.S_IROTH:
            return False
        return all(p.stat().st_mode & stat.S_IXOTH for p in resolved.parents)
    except OSError:
        return False


def default_interpreter() -> str:
    """The first interpreter of this Python version that an unprivileged user can run.

    The service's own interpreter may live where the sandbox user cannot go (a pyenv build in
    /root), so the distribution's interpreter of the same minor version is the next choice."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [
        Path(sys.executable).resolve(),
        Path(sys.base_prefix) / "bin" / version,
        Path("/usr/local/bin") / version,
        Path("/usr/bin") / version,
    ]
    for candidate in candidates:
        if world_readable(candidate) and os.access(candidate, os.X_OK):
            return str(candidate.resolve())
    return str(candidates[-1])


@attrs.frozen(kw_only=True)
class SandboxRuntime:
    """What the sandbox executes: `python` (absolute, resolved) and extra import paths."""

    python: str
    site_dirs: tuple[str, ...] = ()

    @property
    def prefix(self) -> str:
        """The interpreter's installation prefix (holds bin/ and lib/pythonX.Y)."""
        return str(Path(self.python).resolve().parent.parent)

    def read_only_paths(self) -> list[str]:
        """Everything the sandbox needs to see, and nothing more: the interpreter, its
        standard library (and libpython where it is shared), the system's shared C
        libraries, the dynamic loader, time zone data and the sandbox libraries."""
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        prefix = Path(self.prefix)
        triplet = f"{platform.machine()}-linux-gnu"
        candidates = [
            Path(self.python),
            prefix / "lib" / f"python{version}",
            *sorted((prefix / "lib").glob(f"libpython{version}*.so*")),
            Path("/lib") / triplet,
            Path("/usr/lib") / triplet,
            Path("/lib64"),
            Path("/usr/share/zoneinfo"),
            *map(Path, self.site_dirs),
        ]
        return list(dict.fromkeys(str(p) for p in candidates if p.exists()))

    def _interpreter(self, program: str) -> list[str]:
        return [
            self.python,
            "-I",  # isolated: no PYTHON* variables, no user site, no script directory
            "-S",  # no site module: the only libraries are the ones listed in site_dirs
            "-B",
            "-X",
            "utf8",
            "-c",
            program,
        ]

    def harness_argv(self, script_fd: int, channel_fd: int, result_cap: int) -> list[str]:
        return [
            *self._interpreter(harness_source()),
            str(script_fd),
            str(channel_fd),
            str(result_cap),
            *self.site_dirs,
        ]

    def zygote_argv(self, control_fd: int) -> list[str]:
        """The warm zygote; its configuration comes on the control socket, not argv."""
        return [*self._interpreter(zygote_source()), str(control_fd)]
