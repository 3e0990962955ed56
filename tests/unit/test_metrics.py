"""The prometheus-client Metrics adapter: what /metrics shows after the use case reports."""

from __future__ import annotations

import attrs
from prometheus_client.parser import text_string_to_metric_families

from adapters.metrics import PrometheusMetrics
from domain.outcome import ErrorCode, Failure, Output, Success, Usage

USAGE = Usage(wall_time_s=0.04, cpu_time_s=0.02)
OK = Success(result_json="1", output=Output(), usage=USAGE)


@attrs.define
class FakeSlots:
    capacity: int = 4
    in_use: int = 0
    waiting: int = 0


def scrape(metrics: PrometheusMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(metrics: PrometheusMetrics, name: str, **labels: str) -> float:
    return scrape(metrics).get((name, tuple(sorted(labels.items()))), 0.0)


def test_executions_are_counted_by_outcome_and_runner() -> None:
    metrics = PrometheusMetrics(runner=lambda: "nsjail")

    metrics.observe_execution(OK, 0.0)
    metrics.observe_execution(OK, 0.0)
    metrics.observe_execution(Failure(code=ErrorCode.TIMEOUT, message="t", usage=USAGE), 0.0)

    assert value(metrics, "safe_exec_executions_total", outcome="OK", runner="nsjail") == 2
    assert value(metrics, "safe_exec_executions_total", outcome="TIMEOUT", runner="nsjail") == 1


def test_duration_and_queue_wait_are_histograms() -> None:
    metrics = PrometheusMetrics(runner=lambda: "rlimit")

    metrics.observe_execution(OK, 0.003)

    assert value(metrics, "safe_exec_execution_duration_seconds_count", runner="rlimit") == 1
    assert value(metrics, "safe_exec_execution_duration_seconds_sum", runner="rlimit") == 0.04
    assert (
        value(metrics, "safe_exec_execution_duration_seconds_bucket", runner="rlimit", le="0.05")
        == 1
    )
    assert (
        value(metrics, "safe_exec_execution_duration_seconds_bucket", runner="rlimit", le="0.025")
        == 0
    )
    assert value(metrics, "safe_exec_queue_wait_seconds_count") == 1
    assert value(metrics, "safe_exec_queue_wait_seconds_bucket", le="0.005") == 1
    assert value(metrics, "safe_exec_execution_cpu_seconds_total", runner="rlimit") == 0.02


def test_an_empty_output_is_a_sandbox_failure() -> None:
    metrics = PrometheusMetrics(runner=lambda: "nsjail")

    metrics.observe_execution(Failure(code=ErrorCode.EMPTY_OUTPUT, message="gone"), 0.0)
    metrics.observe_execution(Failure(code=ErrorCode.RUNTIME_ERROR, message="x"), 0.0)

    assert value(metrics, "safe_exec_sandbox_failures_total", runner="nsjail") == 1
    # no usage (the runner raised): counted, but not in the duration histogram
    assert value(metrics, "safe_exec_execution_duration_seconds_count", runner="nsjail") == 0


def test_rejections_by_code_start_at_zero() -> None:
    metrics = PrometheusMetrics()

    metrics.observe_rejection("BUSY")
    metrics.observe_rejection("BUSY")

    assert value(metrics, "safe_exec_rejections_total", code="BUSY") == 2
    assert ("safe_exec_rejections_total", (("code", "UNAVAILABLE"),)) in scrape(metrics)


def test_no_runner_yet_is_labelled_none() -> None:
    metrics = PrometheusMetrics()

    metrics.observe_execution(OK, 0.0)

    assert value(metrics, "safe_exec_executions_total", outcome="OK", runner="none") == 1


def test_in_flight_and_queue_depth_are_read_at_scrape_time() -> None:
    slots = FakeSlots()
    metrics = PrometheusMetrics(slots=slots)
    slots.in_use, slots.waiting = 3, 5

    assert value(metrics, "safe_exec_executions_in_flight") == 3
    assert value(metrics, "safe_exec_queue_depth") == 5
    assert value(metrics, "safe_exec_slots") == 4


def test_every_metric_has_help_and_process_metrics_are_exported() -> None:
    text = PrometheusMetrics(slots=FakeSlots()).render().decode()
    families = list(text_string_to_metric_families(text))

    assert all(family.documentation for family in families)
    names = {family.name for family in families}
    assert {"process_cpu_seconds", "process_resident_memory_bytes", "python_info"} <= names
    assert "# HELP safe_exec_executions_total " in text
    assert "_created" not in text


def test_two_instances_do_not_share_a_registry() -> None:
    first, second = PrometheusMetrics(), PrometheusMetrics()

    first.observe_rejection("BUSY")

    assert value(second, "safe_exec_rejections_total", code="BUSY") == 0


def test_a_warm_pool_size_can_be_tracked() -> None:
    metrics = PrometheusMetrics()
    pool = [1, 2]

    metrics.track_warm_pool(lambda: len(pool))

    assert value(metrics, "safe_exec_warm_pool_ready") == 2
