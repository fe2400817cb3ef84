"""Canary analysis: table-driven gates over (stable, candidate) snapshots; /metrics parsing."""

from __future__ import annotations

import math

import pytest
from modelyard_operator.modeldeployment.analysis import (
    Gates,
    MetricSnapshot,
    evaluate,
    js_divergence,
    merge,
    parse_metrics,
    quantile,
)

# Cumulative latency histograms: fast (p99 ~ 5 ms) and slow (p99 ~ 50 ms).
FAST = {0.001: 50.0, 0.005: 199.0, 0.05: 200.0, math.inf: 200.0}
SLOW = {0.001: 0.0, 0.005: 20.0, 0.05: 199.0, 0.1: 200.0, math.inf: 200.0}
EVEN = {"0": 70.0, "1": 70.0, "2": 60.0}
SHIFTED = {"0": 190.0, "1": 5.0, "2": 5.0}
GATES = Gates(max_error_rate=0.02, error_rate_margin=0.01, max_latency_ratio=2.0,
              max_divergence=0.1, min_requests=100)


def snap(requests: float = 200, errors: float = 0, latency: dict[float, float] | None = None,
         predictions: dict[str, float] | None = None) -> MetricSnapshot:
    return MetricSnapshot(requests, errors, FAST if latency is None else latency,
                          EVEN if predictions is None else predictions, pods=1)


@pytest.mark.parametrize(("stable", "candidate", "step", "decision", "failing"), [
    (snap(), snap(), None, "pass", []),
    (snap(), snap(errors=10), None, "fail", ["errorRate", "errorRateVsStable"]),
    # Stable is itself at 1.5 %: a candidate at 1.8 % is within max and within the margin.
    (snap(errors=3), snap(errors=3.6), None, "pass", []),
    # 1.5 % is under maxErrorRate but more than 1 % worse than a clean stable.
    (snap(errors=0), snap(errors=3), None, "fail", ["errorRateVsStable"]),
    (snap(), snap(latency=SLOW), None, "fail", ["latency"]),
    (snap(latency=SLOW), snap(), None, "pass", []),
    (snap(), snap(predictions=SHIFTED), None, "fail", ["divergence"]),
    (snap(requests=50), snap(errors=100), None, "wait", []),  # never decide on too little
    (snap(), snap(errors=100), 20, "wait", []),  # the step's own traffic counts
    (snap(), snap(latency={}), None, "wait", []),
])
def test_gates(stable: MetricSnapshot, candidate: MetricSnapshot, step: float | None,
               decision: str, failing: list[str]) -> None:
    verdict = evaluate(stable, candidate, GATES, step)
    assert verdict.decision == decision, verdict.summary
    assert [g.name for g in verdict.failed] == failing
    assert {g.name for g in verdict.gates} == {
        "minRequests", "errorRate", "errorRateVsStable", "latency", "divergence"}


def test_failure_summary_names_the_gate_and_its_numbers() -> None:
    verdict = evaluate(snap(), snap(predictions=SHIFTED), GATES)
    assert verdict.summary.startswith("divergence: prediction divergence 0.")
    assert "vs max 0.1" in verdict.summary and "0: 0.95/0.35" in verdict.summary
    entry = verdict.failed[0].as_status()
    assert entry["result"] == "Fail" and entry["threshold"] == 0.1
    assert isinstance(entry["value"], float) and entry["value"] > 0.1


def test_waiting_explains_what_is_missing() -> None:
    verdict = evaluate(snap(requests=30), snap(), GATES)
    assert "need 100 each" in verdict.summary
    assert all(g.result in ("Wait",) or g.name == "minRequests" for g in verdict.gates)


@pytest.mark.parametrize(("p", "q", "expected"), [
    ({"a": 1.0}, {"a": 5.0}, 0.0),
    ({"a": 1.0}, {"b": 1.0}, 1.0),
    ({"a": 1.0, "b": 1.0}, {"a": 1.0}, 0.311278),
    ({}, {"a": 1.0}, 0.0),
])
def test_js_divergence(p: dict[str, float], q: dict[str, float], expected: float) -> None:
    assert js_divergence(p, q) == pytest.approx(expected, abs=1e-6)
    assert js_divergence(q, p) == pytest.approx(expected, abs=1e-6)


def test_quantile_interpolates_like_histogram_quantile() -> None:
    assert quantile(0.5, {0.001: 0.0, 0.002: 100.0, math.inf: 100.0}) == pytest.approx(0.0015)
    assert quantile(0.99, FAST) == pytest.approx(0.001 + 0.004 * (198 - 50) / 149)
    assert quantile(0.99, {0.01: 0.0, math.inf: 10.0}) == 0.01  # beyond the last bound
    assert quantile(0.99, {}) is None and quantile(0.99, {0.1: 0.0}) is None


METRICS = """\
# TYPE modelyard_serving_requests counter
modelyard_serving_requests_total{method="POST",route="/predict",status="200"} 90.0
modelyard_serving_requests_total{method="POST",route="/predict",status="422"} 6.0
modelyard_serving_requests_total{method="POST",route="/predict",status="500"} 1.0
modelyard_serving_requests_total{method="POST",route="/v2/models/{model_name}/infer",status="200"} 3.0
modelyard_serving_requests_total{method="POST",route="/invocations",status="200"} 4.0
modelyard_serving_requests_total{method="GET",route="/metrics",status="200"} 50.0
# TYPE modelyard_serving_request_duration_seconds histogram
modelyard_serving_request_duration_seconds_bucket{le="0.001",route="/predict"} 80.0
modelyard_serving_request_duration_seconds_bucket{le="+Inf",route="/predict"} 97.0
modelyard_serving_request_duration_seconds_count{route="/predict"} 97.0
modelyard_serving_request_duration_seconds_sum{route="/predict"} 0.2
modelyard_serving_request_duration_seconds_bucket{le="0.001",route="/invocations"} 4.0
modelyard_serving_request_duration_seconds_bucket{le="+Inf",route="/invocations"} 4.0
modelyard_serving_request_duration_seconds_bucket{le="0.001",route="/metrics"} 50.0
modelyard_serving_request_duration_seconds_bucket{le="+Inf",route="/metrics"} 50.0
# TYPE modelyard_serving_predictions counter
modelyard_serving_predictions_total{class="0",model_name="iris",model_version="2"} 60.0
modelyard_serving_predictions_total{class="1",model_name="iris",model_version="2"} 33.0
# TYPE modelyard_serving_model_errors counter
modelyard_serving_model_errors_total{model_name="iris",model_version="2"} 2.0
"""

REGRESSOR = """\
# TYPE modelyard_serving_prediction_value histogram
modelyard_serving_prediction_value_bucket{le="0.0",model_name="d",model_version="1"} 2.0
modelyard_serving_prediction_value_bucket{le="100.0",model_name="d",model_version="1"} 2.0
modelyard_serving_prediction_value_bucket{le="250.0",model_name="d",model_version="1"} 7.0
modelyard_serving_prediction_value_bucket{le="+Inf",model_name="d",model_version="1"} 8.0
modelyard_serving_prediction_value_count{model_name="d",model_version="1"} 8.0
# TYPE modelyard_serving_predictions counter
modelyard_serving_predictions_total{class="",model_name="d",model_version="1"} 8.0
"""


def test_parse_counts_prediction_routes_errors_latency_and_classes() -> None:
    parsed = parse_metrics(METRICS)
    assert parsed.requests == 104  # /metrics scrapes are not traffic; MLflow's /invocations is
    assert parsed.errors == 3  # one 500 and two model errors (422 for bad input is not one)
    assert parsed.latency == {0.001: 84.0, math.inf: 101.0}
    assert parsed.predictions == {"0": 60.0, "1": 33.0}
    both = merge([parsed, parsed])
    assert both.requests == 208 and both.pods == 2 and both.predictions["1"] == 66.0


def test_parse_bins_regressor_outputs() -> None:
    parsed = parse_metrics(REGRESSOR)
    assert parsed.predictions == {"le=0": 2.0, "le=250": 5.0, "le=inf": 1.0}
