"""In-process counters for operators, rendered in the Prometheus text format at /metrics."""

from __future__ import annotations

import threading
from collections import Counter

from domain.outcome import Failure, Outcome


class InMemoryMetrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._outcomes: Counter[str] = Counter()
        self._rejections: Counter[str] = Counter()
        self._wall_s = 0.0
        self._cpu_s = 0.0
        self._queued_s = 0.0

    def observe_execution(self, outcome: Outcome, queued_s: float) -> None:
        label = outcome.code.code if isinstance(outcome, Failure) else "OK"
        with self._lock:
            self._outcomes[label] += 1
            self._queued_s += queued_s
            if outcome.usage is not None:
                self._wall_s += outcome.usage.wall_time_s
                self._cpu_s += outcome.usage.cpu_time_s

    def observe_rejection(self, code: str) -> None:
        with self._lock:
            self._rejections[code] += 1

    def render(self) -> str:
        with self._lock:
            lines = ["# TYPE safe_exec_executions_total counter"]
            lines += [
                f'safe_exec_executions_total{{outcome="{k}"}} {v}'
                for k, v in sorted(self._outcomes.items())
            ]
            lines.append("# TYPE safe_exec_rejections_total counter")
            lines += [
                f'safe_exec_rejections_total{{code="{k}"}} {v}'
                for k, v in sorted(self._rejections.items())
            ]
            lines += [
                "# TYPE safe_exec_wall_seconds_total counter",
                f"safe_exec_wall_seconds_total {self._wall_s:.6f}",
                "# TYPE safe_exec_cpu_seconds_total counter",
                f"safe_exec_cpu_seconds_total {self._cpu_s:.6f}",
                "# TYPE safe_exec_queued_seconds_total counter",
                f"safe_exec_queued_seconds_total {self._queued_s:.6f}",
            ]
        return "\n".join(lines) + "\n"
