"""Progressive delivery on real pods: a Canary is analysed step by step, then promoted or
rolled back, and a restarted operator resumes it.

Real API server, local node running the serving image, real MLflow. Load is sent by the test
to the Service's ready endpoints (pod IPs, round-robin as kube-proxy would spread it), so the
candidate's share of traffic follows its share of pods. Intervals are short and minRequests
small to keep the tests lean; the gates are the real ones.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from tests.helpers import condition, event_reasons, kubectl_apply, mlflow_client, wait_for

from .test_modeldeployment import (
    READY_TIMEOUT,
    PredictLoop,
    get_md,
    log_iris_estimator,
    log_iris_version,
    md_manifest,
    unique,
    wait_condition,
    wait_serving,
)

pytestmark = pytest.mark.integration

CANDIDATE_SELECTOR = "modelyard.io/track=candidate"
# Short steps: two of them, 10 s each, decided on 30 requests per side. The latency ratio is
# loose because a fresh candidate pod's first requests are slower than a warm stable's; the
# divergence and error gates are the ones these tests are about.
CANARY = {
    "strategy": "Canary",
    "steps": [50, 100],
    "analysis": {"interval": "10s", "minRequests": 30, "trafficDeadline": "3m",
                 "maxLatencyRatio": 10, "maxDivergence": 0.1},
}
ROLLOUT_TIMEOUT = READY_TIMEOUT + 180


def _iris_rows() -> list[list[float]]:
    from sklearn.datasets import load_iris

    return [[float(v) for v in row] for row in load_iris().data]


def log_constant_version(cluster: Any, model: str, constant: int = 2) -> str:
    """A version that loads and answers fine but always predicts one class: a shifted model."""
    from sklearn.dummy import DummyClassifier

    return log_iris_estimator(cluster, model, DummyClassifier(strategy="constant", constant=constant))


def candidate_of(cluster: Any, namespace: str, name: str) -> dict[str, Any]:
    return dict((get_md(cluster, namespace, name).get("status") or {}).get("candidate") or {})


def wait_candidate(cluster: Any, namespace: str, name: str, timeout: float = ROLLOUT_TIMEOUT,
                   **wanted: Any) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        found = candidate_of(cluster, namespace, name)
        return found if all(found.get(k) == v for k, v in wanted.items()) else None
    try:
        return wait_for(check, timeout, interval=0.5, what=f"{name} candidate {wanted}")
    except AssertionError:
        raise AssertionError(f"{name}: {get_md(cluster, namespace, name).get('status')}") from None


def candidate_deployments(cluster: Any, namespace: str) -> list[Any]:
    return list(client.AppsV1Api(cluster.api).list_namespaced_deployment(
        namespace, label_selector=CANDIDATE_SELECTOR).items)


def event_messages(cluster: Any, namespace: str, name: str, reason: str) -> list[str]:
    events = client.CoreV1Api(cluster.api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}").items
    return [str(e.message) for e in events if e.reason == reason]


def start_rollout(cluster: Any, namespace: str, name: str, rollout: dict[str, Any]) -> tuple[str, str, Any]:
    """An MD of 2 replicas serving v1 of a fresh model under ``rollout``; returns (model, v1, mc)."""
    model = unique("iris")
    v1 = log_iris_version(cluster, model)
    mc = mlflow_client(cluster)
    mc.set_registered_model_alias(model, "champion", v1)
    kubectl_apply(cluster, namespace, md_manifest(
        name, {"name": model, "alias": "champion"}, replicas=2, rollout=rollout))
    wait_serving(cluster, namespace, name, v1)
    return model, v1, mc


def start_canary(cluster: Any, namespace: str, name: str, **rollout: Any) -> tuple[str, str, Any]:
    return start_rollout(cluster, namespace, name, {**CANARY, **rollout})


def test_good_canary_passes_every_step_and_becomes_stable(
    cluster: Any, namespace: str, operator: Any,
) -> None:
    name = "canary-good"
    model, v1, mc = start_canary(cluster, namespace, name)
    v2 = log_iris_version(cluster, model)  # same data, same answers: a healthy candidate
    steps_seen: set[int] = set()
    with PredictLoop(cluster, namespace, name, rows=_iris_rows(), pause=0.01) as load:
        mc.set_registered_model_alias(model, "champion", v2)
        first = wait_candidate(cluster, namespace, name, version=v2, phase="Progressing")
        assert first["stableVersion"] == v1 and first["weight"] == 50
        assert get_md(cluster, namespace, name)["status"]["resolvedVersion"] == v1

        def promoted() -> dict[str, Any] | None:
            found = candidate_of(cluster, namespace, name)
            if found.get("step") is not None:
                steps_seen.add(int(found["step"]))
            return found if found.get("phase") == "Promoted" else None
        record = wait_for(promoted, ROLLOUT_TIMEOUT, interval=0.5, what=f"{name} promoted")
        md = wait_serving(cluster, namespace, name, v2)
        time.sleep(2)  # requests in flight while the old pods drain
    assert load.failures == [], load.failures[:5]
    assert load.ok[v1] > 0 and load.ok[v2] > 0  # both sides served during the canary
    assert steps_seen >= {0, 1}
    assert {g["name"]: g["result"] for g in record["gates"]} == {
        "minRequests": "Pass", "errorRate": "Pass", "errorRateVsStable": "Pass",
        "latency": "Pass", "divergence": "Pass"}
    assert md["status"]["resolvedVersion"] == v2 and md["status"]["previousVersion"] == v1
    wait_for(lambda: candidate_deployments(cluster, namespace) == [], 60, what="candidate Deployment deleted")
    reasons = event_reasons(cluster, namespace, name, "ModelDeployment")
    assert {"RolloutStarted", "StepPassed", "CandidatePromoted"} <= reasons
    assert "modelyard.rejected" not in (mc.get_model_version(model, v2).tags or {})


def test_shifted_candidate_is_rolled_back_and_stable_keeps_serving(
    cluster: Any, namespace: str, operator: Any,
) -> None:
    name = "canary-bad"
    model, v1, mc = start_canary(cluster, namespace, name)
    bad = log_constant_version(cluster, model)
    with PredictLoop(cluster, namespace, name, rows=_iris_rows(), pause=0.01) as load:
        mc.set_registered_model_alias(model, "champion", bad)
        record = wait_candidate(cluster, namespace, name, version=bad, phase="Rejected")
        md = wait_condition(cluster, namespace, name, "Degraded", "True", "CandidateRejected")
        time.sleep(5)  # stable keeps answering after the rollback
    # Shifted answers are still answers: no client saw an error, stable served throughout.
    assert load.failures == [], load.failures[:5]
    assert load.ok[v1] > 0
    failed = [g for g in record["gates"] if g["result"] == "Fail"]
    assert [g["name"] for g in failed] == ["divergence"]
    assert failed[0]["value"] > failed[0]["threshold"] == 0.1
    degraded = condition(md, "Degraded")["message"]
    assert "divergence" in degraded and f"still serving version {v1}" in degraded
    assert md["status"]["resolvedVersion"] == v1 and md["status"]["servingVersion"] == v1
    assert any("divergence" in m for m in event_messages(cluster, namespace, name, "CandidateRejected"))
    wait_for(lambda: candidate_deployments(cluster, namespace) == [], 60,
             what="candidate Deployment deleted")
    tags = mc.get_model_version(model, bad).tags or {}
    assert tags.get("modelyard.rejected", "").startswith("divergence=")
    # Not retried while the registry still points at it: no candidate comes back.
    time.sleep(15)
    assert candidate_deployments(cluster, namespace) == []
    assert candidate_of(cluster, namespace, name)["phase"] == "Rejected"
    # Pointing the alias back to stable clears Degraded; the operator never moved it itself.
    assert mc.get_registered_model(model).aliases["champion"] == bad
    mc.set_registered_model_alias(model, "champion", v1)
    wait_condition(cluster, namespace, name, "Degraded", "False", timeout=120)


def test_operator_restart_mid_rollout_resumes(cluster: Any, namespace: str, operator: Any) -> None:
    name = "canary-restart"
    # A longer first step, so the restart lands inside it.
    model, _, mc = start_canary(cluster, namespace, name,
                                analysis={**CANARY["analysis"], "interval": "30s"})
    v2 = log_iris_version(cluster, model)
    with PredictLoop(cluster, namespace, name, rows=_iris_rows(), pause=0.01) as load:
        mc.set_registered_model_alias(model, "champion", v2)
        wait_for(lambda: len(candidate_deployments(cluster, namespace)) == 1
                 and candidate_deployments(cluster, namespace)[0].status.ready_replicas == 1,
                 READY_TIMEOUT, interval=0.5, what="candidate pod ready")
        before = candidate_of(cluster, namespace, name)
        uid = candidate_deployments(cluster, namespace)[0].metadata.uid
        operator.restart()
        after = candidate_of(cluster, namespace, name)
        # The step and its clock survived; the candidate Deployment was neither recreated
        # nor duplicated.
        assert after["version"] == v2 and after["step"] >= before["step"]
        assert after["stepStartTime"] == before["stepStartTime"] or after["step"] > before["step"]
        assert [d.metadata.uid for d in candidate_deployments(cluster, namespace)] == [uid]
        wait_candidate(cluster, namespace, name, version=v2, phase="Promoted")
        wait_serving(cluster, namespace, name, v2)
    assert load.failures == [], load.failures[:5]
    started = event_messages(cluster, namespace, name, "RolloutStarted")
    assert len([m for m in started if f"version {v2}" in m]) == 1  # not started twice


# Shadow: half of the live requests are mirrored; 40 compared rows decide.
SHADOW = {
    "strategy": "Shadow",
    "shadow": {"percent": 50, "minSamples": 40, "minAgreement": 0.9},
    "analysis": {"interval": "10s", "trafficDeadline": "3m"},
}


def shadow_services(cluster: Any, namespace: str) -> list[str]:
    services = client.CoreV1Api(cluster.api).list_namespaced_service(
        namespace, label_selector=CANDIDATE_SELECTOR).items
    return [str(s.metadata.name) for s in services]


def test_agreeing_shadow_candidate_is_promoted_and_served_no_client_before(
    cluster: Any, namespace: str, operator: Any,
) -> None:
    name = "shadow-good"
    model, v1, mc = start_rollout(cluster, namespace, name, SHADOW)
    v2 = log_iris_version(cluster, model)
    with PredictLoop(cluster, namespace, name, rows=_iris_rows(), pause=0.01) as load:
        mc.set_registered_model_alias(model, "champion", v2)
        wait_candidate(cluster, namespace, name, version=v2, phase="Progressing", strategy="Shadow")
        wait_for(lambda: shadow_services(cluster, namespace) == [f"{name}-shadow"], 60,
                 what="shadow Service")
        record = wait_candidate(cluster, namespace, name, version=v2, phase="Promoting")
        # Until promotion every client answer came from stable: the candidate only shadowed.
        assert set(load.ok) == {v1}, load.ok
        wait_candidate(cluster, namespace, name, version=v2, phase="Promoted")
        wait_serving(cluster, namespace, name, v2)
        time.sleep(2)  # requests in flight while the old pods drain
    assert load.failures == [], load.failures[:5]
    gates = {g["name"]: g for g in record["gates"]}
    assert {n: g["result"] for n, g in gates.items()} == {
        "minSamples": "Pass", "agreement": "Pass", "errorRate": "Pass"}
    assert gates["agreement"]["value"] >= 0.9 and gates["minSamples"]["value"] >= 40
    wait_for(lambda: candidate_deployments(cluster, namespace) == [], 60, what="candidate deleted")
    wait_for(lambda: shadow_services(cluster, namespace) == [], 60, what="shadow Service deleted")


def test_disagreeing_shadow_candidate_is_rejected_without_a_client_error(
    cluster: Any, namespace: str, operator: Any,
) -> None:
    name = "shadow-bad"
    model, v1, mc = start_rollout(cluster, namespace, name, SHADOW)
    bad = log_constant_version(cluster, model)
    with PredictLoop(cluster, namespace, name, rows=_iris_rows(), pause=0.01) as load:
        mc.set_registered_model_alias(model, "champion", bad)
        record = wait_candidate(cluster, namespace, name, version=bad, phase="Rejected")
        md = wait_condition(cluster, namespace, name, "Degraded", "True", "CandidateRejected")
        time.sleep(3)
    assert load.failures == [], load.failures[:5]
    assert set(load.ok) == {v1}, load.ok  # the shadow never answered a client
    failed = [g for g in record["gates"] if g["result"] == "Fail"]
    assert [g["name"] for g in failed] == ["agreement"]
    # The constant model agrees only on the rows of its one class: about a third of iris.
    assert failed[0]["value"] < 0.9 == failed[0]["threshold"]
    assert "agreement" in condition(md, "Degraded")["message"]
    assert any("agreement" in m for m in event_messages(cluster, namespace, name, "CandidateRejected"))
    assert (mc.get_model_version(model, bad).tags or {}).get("modelyard.rejected", "").startswith("agreement=")
    wait_for(lambda: candidate_deployments(cluster, namespace) == [] and shadow_services(cluster, namespace) == [],
             60, what="candidate and shadow Service deleted")
