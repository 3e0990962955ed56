"""The Metrics port on prometheus-client: counters, histograms and gauges for /metrics, in a
registry of the service's own (with the standard process, platform and GC collectors)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from adapters import request_record
from domain.outcome import ErrorCode, Failure, Outcome

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
# The `_created` companion series double every counter and histogram for little use.
disable_created_metrics()  # type: ignore[no-untyped-call]
# Warm executions of small scripts take a few milliseconds: the low buckets tell them apart.
EXECUTION_BUCKETS = (
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
REJECTION_CODES = (
    ErrorCode.BUSY,
    ErrorCode.UNAVAILABLE,
    ErrorCode.INVALID_REQUEST,
    ErrorCode.PAYLOAD_TOO_LARGE,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE,
)


class SlotsView(Protocol):
    """What the gauges read from admission control (application.slots.ExecutionSlots)."""

    @property
    def capacity(self) -> int: ...

    @property
    def in_use(self) -> int: ...

    @property
    def waiting(self) -> int: ...


class PrometheusMetrics:
    """Implements application.ports.Metrics. `runner` names the active sandbox (label of the
    execution metrics); `slots`, when given, backs the in-flight and queue-depth gauges."""

    def __init__(
        self,
        *,
        runner: Callable[[], str | None] = lambda: None,
        slots: SlotsView | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._runner = runner
        self.registry = registry or CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        reg = self.registry
        self._executions = Counter(
            "safe_exec_executions",
            "Executions that reached a sandbox, by outcome (an error code, or OK) and runner.",
            ["outcome", "runner"],
            registry=reg,
        )
        self._duration = Histogram(
            "safe_exec_execution_duration_seconds",
            "Wall-clock time of an execution, measured outside the sandbox.",
            ["runner"],
            buckets=EXECUTION_BUCKETS,
            registry=reg,
        )
        self._cpu = Counter(
            "safe_exec_execution_cpu_seconds",
            "User + system CPU time of the sandboxed processes.",
            ["runner"],
            registry=reg,
        )
        self._queue_wait = Histogram(
            "safe_exec_queue_wait_seconds",
            "Time an admitted execution waited for a free slot.",
            buckets=QUEUE_BUCKETS,
            registry=reg,
        )
        self._rejections = Counter(
            "safe_exec_rejections",
            "Requests answered without running anything, by error code.",
            ["code"],
            registry=reg,
        )
        self._sandbox_failures = Counter(
            "safe_exec_sandbox_failures",
            "Executions where the sandbox produced no result at all (EMPTY_OUTPUT), by runner.",
            ["runner"],
            registry=reg,
        )
        for code in REJECTION_CODES:
            self._rejections.labels(code=code.code)
        if slots is not None:
            self.track_slots(slots)

    def track_slots(self, slots: SlotsView) -> None:
        """Gauges read at scrape time from admission control."""
        Gauge(
            "safe_exec_executions_in_flight",
            "Executions running in a sandbox now.",
            registry=self.registry,
        ).set_function(lambda: slots.in_use)
        Gauge(
            "safe_exec_queue_depth",
            "Requests waiting for a free execution slot now.",
            registry=self.registry,
        ).set_function(lambda: slots.waiting)
        Gauge(
            "safe_exec_slots",
            "Execution slots (MAX_CONCURRENCY).",
            registry=self.registry,
        ).set_function(lambda: slots.capacity)

    def track_warm_pool(self, ready: Callable[[], int]) -> None:
        """A gauge of executions forked ahead and waiting (for a runner that keeps a pool)."""
        Gauge(
            "safe_exec_warm_pool_ready",
            "Sandboxed processes started ahead of demand and ready to run a script.",
            registry=self.registry,
        ).set_function(ready)

    def observe_execution(self, outcome: Outcome, queued_s: float) -> None:
        runner = self._runner() or "none"
        code = outcome.code.code if isinstance(outcome, Failure) else "OK"
        self._executions.labels(outcome=code, runner=runner).inc()
        self._queue_wait.observe(queued_s)
        if outcome.usage is not None:
            self._duration.labels(runner=runner).observe(outcome.usage.wall_time_s)
            self._cpu.labels(runner=runner).inc(outcome.usage.cpu_time_s)
        if code == ErrorCode.EMPTY_OUTPUT.code:
            self._sandbox_failures.labels(runner=runner).inc()
        request_record.note(queue_ms=round(queued_s * 1000, 1))

    def observe_rejection(self, code: str) -> None:
        self._rejections.labels(code=code).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition (CONTENT_TYPE)."""
        return generate_latest(self.registry)
