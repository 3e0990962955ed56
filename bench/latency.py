"""Latency and throughput of /execute per sandbox mode, against a baseline from the same run.

Run: make bench   (or: .venv/bin/python bench/latency.py [--requests N] [--modes nsjail,rlimit])

Baseline: the bare interpreter started the same way the harness is (`python -I -S -c ...`),
with no sandbox and no HTTP, i.e. the floor any design pays for a fresh process per run."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.server import running_server

from adapters.sandbox.runtime import default_interpreter

SCRIPTS = {
    "trivial": "def main():\n    return 1\n",
    "print+json": "def main():\n    print('x' * 100)\n    return {'k': list(range(100))}\n",
    "numpy+pandas": (
        "import numpy as np, pandas as pd\n"
        "def main():\n    return int(pd.Series(np.arange(1000)).sum())\n"
    ),
}


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"p50 {statistics.median(ordered) * 1000:7.1f} ms  p95 {p95 * 1000:7.1f} ms"


def baseline(n: int) -> list[float]:
    python = default_interpreter()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        subprocess.run([python, "-I", "-S", "-c", "pass"], check=True)
        samples.append(time.perf_counter() - started)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--modes", default="nsjail,rlimit")
    args = parser.parse_args()
    print(f"$ {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"baseline bare interpreter start      {percentiles(baseline(args.requests))}")
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes.split(","):
            with running_server(mode, Path(tmp), {"MAX_CONCURRENCY": "2"}) as server:
                for name, script in SCRIPTS.items():
                    samples = []
                    for _ in range(args.requests):
                        started = time.perf_counter()
                        answer = server.execute(script)
                        samples.append(time.perf_counter() - started)
                        assert answer.status == 200, answer.body
                    print(f"{mode:7s} {name:14s} sequential      {percentiles(samples)}")
                total = args.requests * 2
                started = time.perf_counter()
                with ThreadPoolExecutor(4) as pool:
                    answers = list(
                        pool.map(lambda _: server.execute(SCRIPTS["trivial"]), range(total))
                    )
                elapsed = time.perf_counter() - started
                ok = sum(a.status == 200 for a in answers)
                print(
                    f"{mode:7s} trivial        4 clients       "
                    f"{total / elapsed:6.1f} req/s ({ok}/{total} ok)"
                )
                health = json.loads(server.health().body)
                print(f"{mode:7s} isolation: {', '.join(health['isolation'])}")


if __name__ == "__main__":
    main()
