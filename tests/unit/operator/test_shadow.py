"""Shadow analysis: agreement counters parsed from stable pods and the gates, as tables."""

from __future__ import annotations

import pytest
from modelyard_operator.modeldeployment.analysis import MetricSnapshot
from modelyard_operator.modeldeployment.shadow import ShadowGates, Tally, evaluate, parse_tally

LATENCY = {0.001: 90.0, 0.005: 100.0, float("inf"): 100.0}
SLOW = {0.005: 10.0, 0.05: 100.0, float("inf"): 100.0}
GATES = ShadowGates(min_agreement=0.9, min_samples=100, max_error_rate=0.01)

METRICS = """\
# HELP modelyard_serving_shadow_rows_total mirrored rows
# TYPE modelyard_serving_shadow_rows_total counter
modelyard_serving_shadow_rows_total{candidate_version="4",outcome="agree"} 97.0
modelyard_serving_shadow_rows_total{candidate_version="4",outcome="disagree"} 3.0
modelyard_serving_shadow_rows_total{candidate_version="3",outcome="agree"} 500.0
"""


def test_only_the_candidate_versions_rows_count() -> None:
    assert parse_tally(METRICS, "4") == Tally(97, 3)
    assert parse_tally(METRICS, "5") == Tally()


def test_rows_count_from_the_baseline_unless_a_pod_restarted() -> None:
    assert Tally(150, 10).since(Tally(50, 5)) == Tally(100, 5)
    assert Tally(20, 1).since(Tally(50, 5)) == Tally(20, 1)  # counters were reset
    assert Tally.from_status({"agree": 3, "disagree": 1}) == Tally(3, 1)
    assert Tally.from_status(None) == Tally()


@pytest.mark.parametrize(
    ("tally", "candidate", "decision", "failed"),
    [
        (Tally(50, 0), MetricSnapshot(50, 0, LATENCY, {}, 1), "wait", []),  # too few, even if perfect
        (Tally(10, 80), MetricSnapshot(50, 0, LATENCY, {}, 1), "wait", []),  # too few, even if awful
        (Tally(95, 5), MetricSnapshot(100, 0, LATENCY, {}, 1), "pass", []),
        (Tally(80, 20), MetricSnapshot(100, 0, LATENCY, {}, 1), "fail", ["agreement"]),
        (Tally(100, 0), MetricSnapshot(100, 5, LATENCY, {}, 1), "fail", ["errorRate"]),
        (Tally(100, 0), MetricSnapshot(100, 0, SLOW, {}, 1), "pass", []),  # batched: latency is no gate
    ],
)
def test_gates(tally: Tally, candidate: MetricSnapshot, decision: str, failed: list[str]) -> None:
    verdict = evaluate(candidate, tally, GATES)
    assert verdict.decision == decision, verdict.summary
    assert [g.name for g in verdict.failed] == failed
    assert [g.name for g in verdict.gates] == ["minSamples", "agreement", "errorRate"]
