"""Latency, throughput and idle footprint of /execute per sandbox runner, against cold-start
baselines measured in the same run, printed next to issue 5's targets.

Run: make bench   (or: .venv/bin/python bench/bench.py [--requests N] [--modes a,b] [--json PATH])

Baselines (no sandbox, no HTTP), with the interpreter the sandbox runs:
- cold `python -I -S -c pass` (how the sandbox starts it; the reference for the ratios: measured
  once up front and again right before and after each mode, whose ratios use the latter, so a
  shared machine's drifting load cancels out) and a plain `python -c pass` for comparison;
- cold `python -I -S -c 'import numpy, pandas'` with the sandbox's library directory.

Each runner mode gets a real server (uvicorn, real HTTP, its own PID namespace) started with
SANDBOX=<mode> and the production defaults of README's configuration table, not the test
limits. Ratios are informational: the exit status is 1 only when a request or a server fails
unexpectedly."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.server import TEST_ENV, Server, running_server

from adapters.sandbox.runtime import default_interpreter

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODES = "nsjail-warm,rlimit-warm,nsjail,rlimit"
CLIENTS = 8
WARMUP_REQUESTS = 5
READY_TIMEOUT_S = 120.0
THROUGHPUT_TIME_BOUND_S = 60.0
REQUEST_TIMEOUT_S = 60.0

CORES = os.cpu_count() or 1
TRIVIAL = "def main():\n    return 1\n"
PANDAS = (
    "import numpy as np, pandas as pd\n"
    "def main():\n    return int(pd.Series(np.arange(1000)).sum())\n"
)
EXPECTED = {TRIVIAL: 1, PANDAS: 499500}

# README's configuration table. HOST stays on loopback; the queue is deep enough that eight
# clients never see BUSY.
PRODUCTION_ENV = {
    "HOST": "127.0.0.1",
    "WALL_TIME_S": "5",
    "CPU_TIME_S": "5",
    "MEMORY_MB": "512",
    "STDOUT_CAP_BYTES": "1048576",
    "STDERR_CAP_BYTES": "65536",
    "RESULT_CAP_BYTES": "1048576",
    "MAX_SCRIPT_BYTES": "262144",
    "MAX_BODY_BYTES": "1048576",
    "MAX_CONCURRENCY": str(CORES),
    "QUEUE_SIZE": "64",
    "SHUTDOWN_GRACE_S": "7",
}


class BenchError(RuntimeError):
    """A request or a server failed in a way a benchmark run must not hide."""


# --- statistics -------------------------------------------------------------------------


def p50(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def p99(samples: Sequence[float]) -> float:
    """Nearest-rank 99th percentile."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


# --- machine and baselines --------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": CORES,
        "kernel": platform.release(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
    }


def sandbox_site() -> str:
    default = "/opt/safe-exec/sandbox-site" if os.geteuid() == 0 else str(ROOT / ".sandbox/site")
    site = os.environ.get("SANDBOX_SITE") or default
    if not Path(site, "pandas").is_dir():
        raise BenchError(f"no pandas in the sandbox site {site}; run `make install`")
    return site


def time_runs(argv: list[str], runs: int, env: Mapping[str, str] | None = None) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)
        samples.append(time.perf_counter() - started)
    return samples


@dataclass
class Baselines:
    python: str
    site: str
    isolated_pass: list[float]
    plain_pass: list[float]
    import_numpy_pandas: list[float]


def measure_baselines(requests: int) -> Baselines:
    python, site = default_interpreter(), sandbox_site()
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    imports = f"import sys; sys.path[:0] = [{site!r}]; import numpy, pandas"
    time_runs([python, "-I", "-S", "-c", imports], 2, env)  # page cache
    return Baselines(
        python=python,
        site=site,
        isolated_pass=time_runs([python, "-I", "-S", "-c", "pass"], requests),
        plain_pass=time_runs([python, "-c", "pass"], requests),
        import_numpy_pandas=time_runs([python, "-I", "-S", "-c", imports], quarter(requests), env),
    )


def quarter(requests: int) -> int:
    return max(5, requests // 4)


# --- HTTP client ------------------------------------------------------------------------


class Client:
    """One keep-alive connection; reconnects once when the server closed it between requests."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)

    def execute(self, script: str) -> tuple[int, bytes]:
        body = json.dumps({"script": script}).encode()
        try:
            return self._post(body)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self.conn.close()
            return self._post(body)

    def _post(self, body: bytes) -> tuple[int, bytes]:
        self.conn.request("POST", "/execute", body, {"Content-Type": "application/json"})
        response = self.conn.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self.conn.close()


def problem(script: str, status: int, body: bytes) -> str | None:
    """None for the expected answer, else a short description of what came back."""
    with contextlib.suppress(ValueError):
        answer = json.loads(body)
        if status == 200 and answer.get("result") == EXPECTED[script]:
            return None
        if "error" in answer:
            return f"HTTP {status} {answer['error']}: {answer.get('message', '')}"
    return f"HTTP {status} {body[:200]!r}"


def sequential(client: Client, script: str, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        status, body = client.execute(script)
        samples.append(time.perf_counter() - started)
        if (error := problem(script, status, body)) is not None:
            raise BenchError(f"sequential request failed: {error}")
    return samples


@dataclass
class Throughput:
    clients: int
    planned: int
    ok: int = 0
    elapsed_s: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s else 0.0


def throughput(port: int, script: str, clients: int, per_client: int) -> Throughput:
    result = Throughput(clients=clients, planned=clients * per_client)
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    deadline = time.perf_counter() + THROUGHPUT_TIME_BOUND_S

    def worker() -> None:
        client = Client(port)
        client.conn.connect()
        start.wait()
        try:
            for _ in range(per_client):
                if time.perf_counter() > deadline:
                    break
                try:
                    status, body = client.execute(script)
                    error = problem(script, status, body)
                except (OSError, http.client.HTTPException) as exc:
                    error = f"{type(exc).__name__}: {exc}"
                with lock:
                    if error is None:
                        result.ok += 1
                    else:
                        result.errors.append(error)
        finally:
            client.close()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    result.elapsed_s = time.perf_counter() - started
    return result


# --- footprint --------------------------------------------------------------------------


def parent_links() -> dict[int, int]:
    """pid -> ppid for every process visible in /proc."""
    links = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # comm may hold spaces and parentheses: the fields after the last ')' are fixed.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            links[int(stat.parent.name)] = int(fields[1])
    return links


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, ppid in parent_links().items():
        children.setdefault(ppid, []).append(pid)
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def pss_kib(pid: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return None


def comm(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/comm").read_text().strip()
    return "?"


@dataclass
class Footprint:
    pss_mib: float
    processes: int
    per_process: list[dict[str, Any]]


def footprint(root: int) -> Footprint:
    rows = []
    for pid in descendants(root):
        kib = pss_kib(pid)
        if kib is not None:
            rows.append({"pid": pid, "comm": comm(pid), "pss_kib": kib})
    total = sum(row["pss_kib"] for row in rows)
    return Footprint(pss_mib=round(total / 1024, 1), processes=len(rows), per_process=rows)


# --- one runner mode ----------------------------------------------------------------------


def production_env() -> dict[str, str]:
    missing = set(TEST_ENV) - set(PRODUCTION_ENV)
    if missing:
        raise BenchError(f"no production default for test settings {sorted(missing)}")
    return dict(PRODUCTION_ENV)


def wait_ready(server: Server, mode: str) -> dict[str, Any]:
    """The /health JSON once it names `mode` as the active sandbox (warming may take a while)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    last: Any = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(f"server exited:\n{tail(server.log())}")
        with contextlib.suppress(OSError, ValueError):
            last = server.health().json()
            if isinstance(last, dict) and last.get("sandbox") == mode:
                return last
        time.sleep(0.2)
    raise BenchError(f"/health never named {mode} in {READY_TIMEOUT_S:.0f} s (last: {last})")


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class ModeResult:
    mode: str
    isolation: list[str]
    trivial: list[float]
    pandas: list[float]
    load: Throughput
    idle: Footprint
    # Cold `python -I -S -c pass` starts measured right before and right after this mode: the
    # reference for its ratios, so that a shared machine's drifting load cancels out.
    cold_pass: list[float]


def run_mode(mode: str, requests: int, tmp: Path, python: str) -> ModeResult:
    cold = [python, "-I", "-S", "-c", "pass"]
    cold_before = time_runs(cold, max(5, requests // 2))
    with running_server(mode, tmp, production_env()) as server:
        health = wait_ready(server, mode)
        client = Client(server.port)
        try:
            sequential(client, TRIVIAL, WARMUP_REQUESTS)
            sequential(client, PANDAS, WARMUP_REQUESTS)
            trivial = sequential(client, TRIVIAL, requests)
            pandas = sequential(client, PANDAS, quarter(requests))
        finally:
            client.close()
        load = throughput(server.port, TRIVIAL, CLIENTS, quarter(requests))
        time.sleep(1)
        idle = footprint(server.process.pid)
    cold_after = time_runs(cold, max(5, requests // 2))
    isolation = list(health.get("isolation") or [])
    return ModeResult(mode, isolation, trivial, pandas, load, idle, cold_before + cold_after)


# --- report -------------------------------------------------------------------------------


@dataclass
class Target:
    key: str
    label: str
    bound: str
    value: Callable[[ModeResult], float]
    passes: Callable[[float], bool]
    digits: int = 2


def targets(base: Baselines, cores: int) -> list[Target]:
    """Issue 5's targets; the cold-spawn limit is cores x 1000 / cold `python -c` p50 ms, with
    the cold starts measured around each mode (see ModeResult.cold_pass)."""

    def spawn_limit(result: ModeResult) -> float:
        return cores / p50(result.cold_pass)

    return [
        Target(
            "trivial_p50_over_cold_python",
            "trivial p50 / cold python -c p50",
            "<= 0.5",
            lambda r: p50(r.trivial) / p50(r.cold_pass),
            lambda v: v <= 0.5,
        ),
        Target(
            "pandas_p50_over_cold_import",
            "pandas p50 / cold numpy+pandas import",
            "<= 0.1",
            lambda r: p50(r.pandas) / p50(base.import_numpy_pandas),
            lambda v: v <= 0.1,
        ),
        Target(
            "throughput_over_spawn_limit",
            "req/s / cold-spawn limit",
            ">= 1.2",
            lambda r: r.load.per_second / spawn_limit(r),
            lambda v: v >= 1.2,
        ),
        Target(
            "trivial_p99_over_p50",
            "trivial p99 / p50",
            "<= 3",
            lambda r: p99(r.trivial) / p50(r.trivial),
            lambda v: v <= 3,
        ),
        Target(
            "idle_pss_mib",
            "idle footprint PSS MiB",
            "<= 512",
            lambda r: r.idle.pss_mib,
            lambda v: v <= 512,
            digits=1,
        ),
    ]


def measurements(result: ModeResult) -> list[tuple[str, str]]:
    load, idle = result.load, result.idle
    cold = p50(result.cold_pass)
    return [
        (f"cold python -c p50 ms (n={len(result.cold_pass)})", f"{cold * 1000:.1f}"),
        ("  cold-spawn limit req/s", f"{CORES / cold:.0f}"),
        (f"trivial p50 ms (n={len(result.trivial)})", f"{p50(result.trivial) * 1000:.1f}"),
        ("trivial p99 ms", f"{p99(result.trivial) * 1000:.1f}"),
        (f"pandas p50 ms (n={len(result.pandas)})", f"{p50(result.pandas) * 1000:.1f}"),
        (f"{load.clients} clients req/s (trivial)", f"{load.per_second:.1f}"),
        ("  ok / planned, errors", f"{load.ok}/{load.planned}, {len(load.errors)}"),
        ("idle PSS MiB (processes)", f"{idle.pss_mib:.1f} ({idle.processes})"),
    ]


def table_row(label: str, bound: str, cells: Sequence[str]) -> str:
    return f"{label:40s} {bound:>7s}" + "".join(f"{cell:>16s}" for cell in cells)


def report_table(base: Baselines, results: Mapping[str, ModeResult | str], cores: int) -> list[str]:
    modes = list(results)
    done = {m: r for m, r in results.items() if isinstance(r, ModeResult)}
    lines = [table_row("", "target", modes)]
    if done:
        labels = [label for label, _ in measurements(next(iter(done.values())))]
        columns = {m: [cell for _, cell in measurements(done[m])] for m in done}
        for row, label in enumerate(labels):
            lines.append(
                table_row(label, "", [columns[m][row] if m in done else "-" for m in modes])
            )
    for target in targets(base, cores):
        cells = []
        for mode in modes:
            if mode in done:
                value = target.value(done[mode])
                verdict = "PASS" if target.passes(value) else "MISS"
                cells.append(f"{value:.{target.digits}f} {verdict}")
            else:
                cells.append("failed")
        lines.append(table_row(target.label, target.bound, cells))
    return lines


def baseline_lines(base: Baselines) -> list[str]:
    rows = [
        ("python -I -S -c pass", base.isolated_pass, "  (measured again around each mode)"),
        ("python -c pass", base.plain_pass, ""),
        ("python -I -S -c 'import numpy, pandas'", base.import_numpy_pandas, ""),
    ]
    return [f"cold starts, no sandbox, no HTTP ({base.python}, site {base.site}):"] + [
        f"  {label:40s} p50 {p50(samples) * 1000:7.1f} ms  (n={len(samples)}){note}"
        for label, samples, note in rows
    ]


def report(
    command: str, info: Mapping[str, Any], base: Baselines, results: Mapping[str, ModeResult | str]
) -> str:
    lines = [
        f"$ {command}",
        f"{info['date']}  nproc {info['nproc']}  {info['cpu']}  Linux {info['kernel']}  "
        f"Python {info['python']}",
        "",
        *baseline_lines(base),
        "",
        *report_table(base, results, info["nproc"]),
        "",
    ]
    for mode, result in results.items():
        if isinstance(result, ModeResult):
            lines.append(f"{mode} isolation: {', '.join(result.isolation)}")
            lines.extend(f"{mode} error: {e}" for e in sorted(set(result.load.errors)))
        else:
            lines.append(f"{mode} FAILED: {result}")
    return "\n".join(lines)


def raw_numbers(
    command: str, info: Mapping[str, Any], base: Baselines, results: Mapping[str, ModeResult | str]
) -> dict[str, Any]:
    def samples_ms(samples: Sequence[float]) -> list[float]:
        return [ms(s) for s in samples]

    modes: dict[str, Any] = {}
    for mode, result in results.items():
        if not isinstance(result, ModeResult):
            modes[mode] = {"error": result}
            continue
        modes[mode] = {
            "isolation": result.isolation,
            "trivial_ms": samples_ms(result.trivial),
            "pandas_ms": samples_ms(result.pandas),
            "throughput": {**asdict(result.load), "per_second": result.load.per_second},
            "idle": asdict(result.idle),
            "ratios": {t.key: t.value(result) for t in targets(base, info["nproc"])},
        }
    return {
        "command": command,
        "machine": dict(info),
        "baselines": {
            "python": base.python,
            "site": base.site,
            "python_I_S_c_pass_ms": samples_ms(base.isolated_pass),
            "python_c_pass_ms": samples_ms(base.plain_pass),
            "import_numpy_pandas_ms": samples_ms(base.import_numpy_pandas),
        },
        "modes": modes,
    }


# --- main ---------------------------------------------------------------------------------


def command_line() -> str:
    python = Path(sys.executable)
    with contextlib.suppress(ValueError):
        python = python.relative_to(Path.cwd())
    return shlex.join([str(python), *sys.argv])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=200, help="sequential trivial requests")
    parser.add_argument("--modes", default=DEFAULT_MODES, help="comma-separated SANDBOX values")
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = parser.parse_args(argv)
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    return args


def note(what: str) -> None:
    print(f"... {what}", file=sys.stderr, flush=True)


def main() -> int:
    args = parse_args()
    command, info = command_line(), machine()
    note("cold-start baselines")
    base = measure_baselines(args.requests)
    results: dict[str, ModeResult | str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
            note(f"mode {mode}")
            try:
                results[mode] = run_mode(mode, args.requests, Path(tmp), base.python)
            except (RuntimeError, OSError, http.client.HTTPException) as exc:
                results[mode] = f"{type(exc).__name__}: {tail(str(exc))}"
    print(report(command, info, base, results))
    if args.json:
        args.json.write_text(json.dumps(raw_numbers(command, info, base, results), indent=2))
    failed = any(not isinstance(r, ModeResult) or r.load.errors for r in results.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
