"""Pure pieces of progressive delivery: replica weights, the status.candidate record, the
candidate Deployment builder and how a rollout folds into the MD's conditions."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from modelyard_operator.conditions import get_condition
from modelyard_operator.modeldeployment import canary
from modelyard_operator.modeldeployment.analysis import GateResult, Verdict
from modelyard_operator.modeldeployment.builders import build_candidate_deployment, build_deployment
from modelyard_operator.modeldeployment.models import ModelDeployment, parse_md
from modelyard_operator.modeldeployment.status import with_candidate
from modelyard_operator.registry import ResolvedVersion
from modelyard_operator.settings import Settings

V3 = ResolvedVersion(name="iris", version="3")


def settings() -> Settings:
    return Settings(mlflow_tracking_uri="http://mlflow:5000")


def md(spec: dict[str, Any]) -> ModelDeployment:
    return parse_md({"apiVersion": "modelyard.io/v1alpha1", "kind": "ModelDeployment",
                     "metadata": {"name": "iris", "namespace": "ml", "uid": "u-1", "generation": 1},
                     "spec": spec})


NOW = dt.datetime(2025, 5, 1, 12, 0, 0, tzinfo=dt.UTC)
STEPS = [10, 50, 100]


@pytest.mark.parametrize(("total", "weight", "expected"), [
    (10, 10, (9, 1)),
    (10, 50, (5, 5)),
    (10, 100, (1, 10)),  # stable keeps one pod until the last analysis passed
    (1, 10, (1, 1)),  # at least one candidate pod: 50 % in practice
    (4, 10, (3, 1)),
    (0, 50, (1, 1)),
])
def test_split(total: int, weight: int, expected: tuple[int, int]) -> None:
    assert canary.split(total, weight) == expected


def test_a_record_walks_the_steps_then_promotes() -> None:
    record = canary.start("4", "3", "Canary", STEPS, NOW)
    assert record["phase"] == "Progressing" and record["weight"] == 10
    assert record["stepText"] == "1/3 (10%)" and record["stepStartTime"] == "2025-05-01T12:00:00Z"
    later = NOW + dt.timedelta(seconds=90)
    assert canary.elapsed(record, later) == 90
    record = canary.advance(record, STEPS, later, 120)
    assert (record["step"], record["weight"], record["stepStartRequests"]) == (1, 50, 120)
    assert record["stepText"] == "2/3 (50%)" and canary.elapsed(record, later) == 0
    record = canary.advance(canary.advance(record, STEPS, later, 300), STEPS, later, 900)
    assert record["phase"] == "Promoting" and record["step"] == 2
    assert canary.is_active(record)
    assert not canary.is_active(canary.finish(record, "Promoted", "CandidatePromoted", ""))


def test_shadow_has_one_analysis_then_promotes() -> None:
    record = canary.start("4", "3", "Shadow", STEPS, NOW)
    assert record["weight"] == 0 and record["stepText"] == "shadow"
    assert canary.advance(record, STEPS, NOW, 10)["phase"] == "Promoting"


def test_pause_and_resume_restart_the_step_clock() -> None:
    record = canary.pause(canary.start("4", "3", "Canary", STEPS, NOW), "InsufficientTraffic", "x")
    assert record["phase"] == "Paused" and canary.is_active(record)
    resumed = canary.resume(record, NOW + dt.timedelta(hours=1))
    assert resumed["phase"] == "Progressing"
    assert canary.elapsed(resumed, NOW + dt.timedelta(hours=1)) == 0


def test_rejection_tag_names_failing_gates_and_numbers() -> None:
    verdict = Verdict("fail", (
        GateResult("minRequests", "Pass", 200, 100, ""),
        GateResult("divergence", "Fail", 0.4213, 0.1, ""),
        GateResult("errorRate", "Fail", 0.25, 0.01, ""),
    ))
    assert canary.rejection_tag(verdict) == "divergence=0.4213>0.1,errorRate=0.25>0.01"
    record = canary.finish(canary.start("4", "3", "Canary", STEPS, NOW), "Rejected", "r", "m")
    assert canary.rejected_here(record, "4") and not canary.rejected_here(record, "5")


def test_candidate_deployment_sits_behind_the_service_but_apart_from_stable() -> None:
    canary_md = md({"model": {"name": "iris", "alias": "champion"}, "replicas": 4,
                    "rollout": {"strategy": "Canary"}})
    stable = build_deployment(canary_md, V3, settings(), replicas=3)
    candidate = build_candidate_deployment(canary_md, V3, settings(), replicas=1)
    assert stable["spec"]["replicas"] == 3
    assert candidate["metadata"]["name"] == "iris-candidate"
    assert candidate["spec"]["replicas"] == 1
    labels = candidate["spec"]["template"]["metadata"]["labels"]
    # The Service selects modelyard.io/modeldeployment=iris: candidate pods receive traffic.
    assert labels["modelyard.io/modeldeployment"] == "iris"
    assert labels["modelyard.io/track"] == "candidate"
    assert candidate["spec"]["selector"]["matchLabels"] == {
        "modelyard.io/modeldeployment": "iris", "modelyard.io/track": "candidate"}
    # Same pod spec as stable: the candidate differs in version only.
    assert candidate["spec"]["template"]["spec"] == stable["spec"]["template"]["spec"]
    assert "modelyard.io/track" not in stable["spec"]["template"]["metadata"]["labels"]


def test_a_shadow_candidate_is_not_behind_the_service() -> None:
    shadow_md = md({"model": {"name": "iris", "alias": "champion"}, "rollout": {"strategy": "Shadow"}})
    candidate = build_candidate_deployment(shadow_md, V3, settings(), 1, behind_service=False)
    labels = candidate["spec"]["template"]["metadata"]["labels"]
    assert "modelyard.io/modeldeployment" not in labels
    assert candidate["spec"]["selector"]["matchLabels"] == {
        "modelyard.io/shadow-of": "iris", "modelyard.io/track": "candidate"}


def status_with(candidate: dict[str, Any] | None, wanted: str) -> dict[str, Any]:
    base = {"resolvedVersion": "3", "conditions": [
        {"type": "Progressing", "status": "False", "reason": "RolloutComplete", "message": "",
         "lastTransitionTime": "2025-01-01T00:00:00Z"},
        {"type": "Degraded", "status": "False", "reason": "AsExpected", "message": "",
         "lastTransitionTime": "2025-01-01T00:00:00Z"},
    ]}
    return with_candidate(base, candidate, wanted, 2, now="2025-05-01T12:00:00Z")


def test_an_active_rollout_is_progressing() -> None:
    status = status_with(canary.start("4", "3", "Canary", STEPS, NOW), "4")
    progressing = get_condition(status["conditions"], "Progressing")
    assert progressing is not None and progressing["status"] == "True"
    assert progressing["reason"] == "CandidateInAnalysis" and "1/3 (10%)" in progressing["message"]
    assert status["candidate"]["version"] == "4"


def test_a_rejection_degrades_while_the_registry_still_wants_it() -> None:
    record = canary.finish(canary.start("4", "3", "Canary", STEPS, NOW), "Rejected",
                           "CandidateRejected", "gate divergence: 0.42 > 0.1")
    degraded = get_condition(status_with(record, "4")["conditions"], "Degraded")
    assert degraded is not None and degraded["status"] == "True"
    assert degraded["reason"] == "CandidateRejected"
    assert "divergence" in degraded["message"] and "still serving version 3" in degraded["message"]
    moved_on = get_condition(status_with(record, "3")["conditions"], "Degraded")
    assert moved_on is not None and moved_on["status"] == "False"


def test_every_strategy_drains_pods_before_they_stop() -> None:
    rolling = build_deployment(md({"model": {"name": "iris", "alias": "champion"}}), V3, settings())
    canary_md = md({"model": {"name": "iris", "alias": "champion"}, "rollout": {"strategy": "Canary"}})
    for built in (rolling, build_deployment(canary_md, V3, settings()),
                  build_candidate_deployment(canary_md, V3, settings(), 1)):
        container = built["spec"]["template"]["spec"]["containers"][0]
        assert container["lifecycle"] == {"preStop": {"sleep": {"seconds": 3}}}
