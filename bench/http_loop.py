"""HTTP overhead of the service itself: a tiny loopback client loop against GET /health and a
rejected POST /execute (parsed and answered without running anything).

Run: .venv/bin/python bench/http_loop.py [--requests N] [--mode nsjail]"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.server import running_server


def loop(port: int, method: str, path: str, body: bytes | None, n: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        conn.request(method, path, body=body, headers=headers)
        conn.getresponse().read()
        samples.append(time.perf_counter() - started)
    conn.close()
    return samples


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    total = sum(samples)
    return (
        f"p50 {statistics.median(ordered) * 1e6:7.0f} us  p99 {p99 * 1e6:7.0f} us  "
        f"{len(samples) / total:7.0f} req/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--mode", default="nsjail")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, running_server(args.mode, Path(tmp)) as server:
        cases = {
            "GET /health": ("GET", "/health", None),
            "POST /execute (rejected)": ("POST", "/execute", b'{"script": ""}'),
        }
        for name, (method, path, body) in cases.items():
            loop(server.port, method, path, body, 200)  # warm up
            print(f"{name:26s} {summary(loop(server.port, method, path, body, args.requests))}")


if __name__ == "__main__":
    main()
