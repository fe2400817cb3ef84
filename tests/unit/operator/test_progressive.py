"""plan_rollout against in-memory stand-ins for kube.py, the registry and the pods' /metrics
(unit level only; tests/integration/test_rollout.py runs it against a real cluster)."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest
from modelyard_operator import kube
from modelyard_operator.modeldeployment import progressive, sides
from modelyard_operator.modeldeployment.analysis import MetricSnapshot
from modelyard_operator.modeldeployment.models import parse_md
from modelyard_operator.modeldeployment.resolver import Resolver
from modelyard_operator.modeldeployment.shadow import Tally
from modelyard_operator.registry import ModelSnapshot, ResolvedVersion
from modelyard_operator.settings import Settings

T0 = dt.datetime(2025, 5, 1, 12, 0, tzinfo=dt.UTC)
V3, V4 = ResolvedVersion("iris", "3"), ResolvedVersion("iris", "4")
LATENCY = {0.001: 150.0, 0.005: 200.0, float("inf"): 200.0}
GOOD = MetricSnapshot(200, 0, LATENCY, {"0": 70, "1": 70, "2": 60}, 1)
SHIFTED = MetricSnapshot(200, 0, LATENCY, {"0": 190, "1": 5, "2": 5}, 1)


class FakeCluster:
    """Deployments that are instantly complete, with ready pods; a log of every call."""

    def __init__(self) -> None:
        self.deployments: dict[str, dict[str, Any]] = {}
        self.md: dict[str, Any] = {}
        self.log: list[str] = []

    def apply(self, obj: dict[str, Any], owner: dict[str, Any] | None = None) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        name = obj["metadata"]["name"]
        self.log.append(f"apply {name}")
        obj["metadata"].update(generation=1, ownerReferences=[{"uid": "u-1"}])
        n = obj["spec"].get("replicas", 1)
        obj["status"] = {"observedGeneration": 1, "replicas": n, "updatedReplicas": n,
                         "readyReplicas": n, "availableReplicas": n}
        self.deployments[name] = obj
        return copy.deepcopy(obj)

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.deployments.get(name)
        return copy.deepcopy(found) if found else None

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        self.log.append(f"delete {name}")
        self.deployments.pop(name, None)

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        pods = []
        for dep in self.deployments.values():
            if dep.get("kind") == "Service":
                continue
            labels = dep["spec"]["template"]["metadata"]["labels"]
            for i in range(dep["spec"].get("replicas", 1)):
                pods.append({"metadata": {"name": f"{dep['metadata']['name']}-{i}", "labels": labels},
                             "status": {"phase": "Running", "podIP": f"10.0.{len(pods)}.1",
                                        "conditions": [{"type": "Ready", "status": "True"}]}})
        return [p for p in pods if _matches(p["metadata"]["labels"], selector)]

    def patch_status(self, api_version: str, kind: str, namespace: str, name: str,
                     status: dict[str, Any]) -> dict[str, Any]:
        self.log.append(f"status {status['candidate']['phase']} {status['candidate'].get('step')}")
        self.md.setdefault("status", {}).update(copy.deepcopy(status))
        return self.md

    def merge_patch(self, api_version: str, kind: str, namespace: str, name: str,
                    patch: dict[str, Any]) -> dict[str, Any]:
        self.log.append("annotation consumed")
        self.md["metadata"].get("annotations", {}).clear()
        return self.md


def _matches(labels: dict[str, str], selector: str) -> bool:
    for part in selector.split(","):
        if part.startswith("!"):
            if part[1:] in labels:
                return False
        elif labels.get(part.split("=")[0]) != part.split("=")[1]:
            return False
    return True


class FakeRegistry:
    def __init__(self) -> None:
        self.tags: dict[tuple[str, str], dict[str, str]] = {}
        self.aliases: dict[str, str] = {}

    def version_tags(self, name: str, version: str) -> dict[str, str]:
        return dict(self.tags.get((name, version), {}))

    def tag_version(self, name: str, version: str, key: str, value: str) -> None:
        self.tags.setdefault((name, version), {})[key] = value

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.aliases[alias] = version

    def snapshot(self, name: str) -> ModelSnapshot:
        return ModelSnapshot(name, aliases=dict(self.aliases))


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    fake = FakeCluster()
    for name in ("apply", "get", "delete", "list_pods", "patch_status", "merge_patch"):
        monkeypatch.setattr(kube, name, getattr(fake, name))
    fake.md = {
        "apiVersion": "modelyard.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "iris", "namespace": "ml", "uid": "u-1", "generation": 1,
                     "annotations": {}},
        "spec": {"model": {"name": "iris", "alias": "champion"}, "replicas": 4,
                 "rollout": {"strategy": "Canary", "steps": [25, 100],
                             "analysis": {"interval": "30s", "minRequests": 50,
                                          "trafficDeadline": "1m"},
                             "rollback": {"revertAlias": True}}},
        "status": {"resolvedVersion": "3", "modelUri": "models:/iris/3"},
    }
    fake.apply({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "iris", "namespace": "ml"},
                "spec": {"replicas": 4, "template": {"metadata": {"labels": {
                    "modelyard.io/modeldeployment": "iris", "modelyard.io/model-version": "3"}}}}})
    return fake


def metrics(monkeypatch: pytest.MonkeyPatch, candidate: MetricSnapshot) -> list[MetricSnapshot]:
    """What candidate pods answer (replace ``[0]`` to change it); stable answers GOOD."""
    answer = [candidate]

    def read(ips: list[str]) -> list[str]:
        return [("candidate" if ip in _candidate_ips else "stable") for ip in ips]

    def snapshot(texts: list[str]) -> MetricSnapshot | None:
        if not texts:
            return None
        return answer[0] if texts[0] == "candidate" else GOOD
    _candidate_ips: set[str] = set()

    original = sides.candidate_pods

    def candidate_pods(md: Any, deployment: dict[str, Any]) -> list[dict[str, Any]]:
        pods = original(md, deployment)
        _candidate_ips.update(p["status"]["podIP"] for p in pods)
        return pods
    monkeypatch.setattr(sides, "read_metrics", read)
    monkeypatch.setattr(sides, "snapshot", snapshot)
    monkeypatch.setattr(sides, "candidate_pods", candidate_pods)
    return answer


def run(cluster: FakeCluster, registry: FakeRegistry, now: dt.datetime,
        stable: ResolvedVersion = V3) -> progressive.Plan:
    md = parse_md(copy.deepcopy(cluster.md))
    resolver = Resolver(registry, max_age=0.0)  # type: ignore[arg-type]
    plan = progressive.plan_rollout(md, V4, stable, Settings(), resolver, now)
    assert plan is not None
    if plan.delete_candidate:
        sides.delete_candidate(md)
    return plan


def test_a_good_canary_walks_its_steps_and_promotes(cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    candidate = metrics(monkeypatch, GOOD)
    registry = FakeRegistry()
    plan = run(cluster, registry, T0)
    # Recorded before the candidate exists; 25 % of 4 replicas is one candidate pod.
    assert cluster.log[1:3] == ["status Progressing 0", "apply iris-candidate"]
    assert plan.serve == V3 and plan.stable_replicas == 3
    assert cluster.deployments["iris-candidate"]["spec"]["replicas"] == 1
    plan = run(cluster, registry, T0 + dt.timedelta(seconds=10))  # interval not over: hold
    assert plan.candidate is not None and plan.candidate["step"] == 0
    plan = run(cluster, registry, T0 + dt.timedelta(seconds=31))
    assert plan.candidate is not None and plan.candidate["step"] == 1
    assert cluster.deployments["iris-candidate"]["spec"]["replicas"] == 4
    assert {g["name"]: g["result"] for g in plan.candidate["gates"]}["divergence"] == "Pass"
    plan = run(cluster, registry, T0 + dt.timedelta(seconds=62))
    assert plan.candidate is not None and plan.candidate["phase"] == "Progressing"  # no new traffic
    candidate[0] = GOOD + GOOD  # 200 more requests in this step
    plan = run(cluster, registry, T0 + dt.timedelta(seconds=63))
    assert plan.candidate is not None and plan.candidate["phase"] == "Promoting"
    assert plan.serve == V4 and plan.stable_replicas is None
    cluster.apply({**cluster.deployments["iris"], "spec": {**cluster.deployments["iris"]["spec"],
                   "template": {"metadata": {"labels": {"modelyard.io/modeldeployment": "iris",
                                                        "modelyard.io/model-version": "4"}}}}})
    # Stable now pins the approved version, so the controller reports it as stable: that is
    # the promotion finishing, not the registry moving back.
    plan = run(cluster, registry, T0 + dt.timedelta(seconds=70), stable=V4)
    assert plan.candidate is not None and plan.candidate["phase"] == "Promoted"
    assert "iris-candidate" not in cluster.deployments
    assert registry.tags == {} and registry.aliases == {}  # a good rollout never writes MLflow


def test_a_shifted_candidate_is_rejected_tagged_and_not_retried(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch,
) -> None:
    metrics(monkeypatch, SHIFTED)
    registry = FakeRegistry()
    run(cluster, registry, T0)
    plan = run(cluster, registry, T0 + dt.timedelta(seconds=31))
    assert plan.candidate is not None and plan.candidate["phase"] == "Rejected"
    assert "divergence" in plan.candidate["message"]
    # The decision was recorded before the candidate was deleted.
    assert cluster.log.index("status Rejected 0") < cluster.log.index("delete iris-candidate")
    assert registry.tags[("iris", "4")]["modelyard.rejected"].startswith("divergence=")
    assert registry.aliases == {"champion": "3"}  # revertAlias
    assert plan.serve == V3 and plan.stable_replicas is None
    assert [e.reason for e in plan.events] == ["CandidateRejected", "AliasReverted"]
    applies = cluster.log.count("apply iris-candidate")
    run(cluster, registry, T0 + dt.timedelta(minutes=5))
    assert cluster.log.count("apply iris-candidate") == applies
    registry.tags.clear()  # the user clears the tag: the version may be tried again
    plan = run(cluster, registry, T0 + dt.timedelta(minutes=6))
    assert plan.candidate is not None and plan.candidate["phase"] == "Progressing"


def test_a_restarted_operator_resumes_the_step(cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    metrics(monkeypatch, GOOD)
    run(cluster, FakeRegistry(), T0)
    run(cluster, FakeRegistry(), T0 + dt.timedelta(seconds=31))
    # A new process: fresh resolver and registry client, only the object's status survives.
    plan = run(cluster, FakeRegistry(), T0 + dt.timedelta(seconds=40))
    assert plan.candidate is not None and plan.candidate["step"] == 1
    assert [d for d in cluster.deployments] == ["iris", "iris-candidate"]


def test_insufficient_traffic_pauses_and_resume_restarts_the_clock(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch,
) -> None:
    metrics(monkeypatch, MetricSnapshot(10, 0, LATENCY, {"0": 10}, 1))
    run(cluster, FakeRegistry(), T0)
    plan = run(cluster, FakeRegistry(), T0 + dt.timedelta(seconds=40))
    assert plan.candidate is not None and plan.candidate["phase"] == "Progressing"
    plan = run(cluster, FakeRegistry(), T0 + dt.timedelta(seconds=95))
    assert plan.candidate is not None and plan.candidate["phase"] == "Paused"
    assert plan.candidate["reason"] == "InsufficientTraffic"
    cluster.md["metadata"]["annotations"]["modelyard.io/rollout"] = "resume"
    plan = run(cluster, FakeRegistry(), T0 + dt.timedelta(seconds=100))
    assert plan.candidate is not None and plan.candidate["phase"] == "Progressing"
    assert "annotation consumed" in cluster.log


def test_registry_moving_mid_rollout_aborts_and_starts_over(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch,
) -> None:
    metrics(monkeypatch, GOOD)
    run(cluster, FakeRegistry(), T0)
    md = parse_md(copy.deepcopy(cluster.md))
    plan = progressive.plan_rollout(md, ResolvedVersion("iris", "5"), V3, Settings(),
                                    Resolver(FakeRegistry(), 0.0), T0)  # type: ignore[arg-type]
    assert plan is not None and plan.candidate is not None
    assert plan.candidate["version"] == "5" and plan.candidate["step"] == 0
    assert [e.reason for e in plan.events] == ["RolloutAborted", "RolloutStarted"]
    labels = cluster.deployments["iris-candidate"]["spec"]["template"]["metadata"]["labels"]
    assert labels["modelyard.io/model-version"] == "5"


def shadow(cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch, first: Tally) -> list[Tally]:
    """A Shadow ModelDeployment; stable pods' agreement counters answer ``[0]``."""
    cluster.md["spec"]["rollout"] = {
        "strategy": "Shadow", "shadow": {"percent": 25, "minSamples": 100, "minAgreement": 0.9},
        "analysis": {"interval": "30s"}, "rollback": {"revertAlias": False}}
    metrics(monkeypatch, GOOD)
    counts = [first]
    monkeypatch.setattr(sides, "tally", lambda texts, version: counts[0])
    return counts


def test_a_shadow_candidate_gets_its_own_service_and_promotes_on_agreement(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch,
) -> None:
    counts = shadow(cluster, monkeypatch, Tally(5, 0))  # left over from an earlier rollout
    registry = FakeRegistry()
    plan = run(cluster, registry, T0)
    assert plan.candidate is not None and plan.candidate["shadowBaseline"] == {"agree": 5, "disagree": 0}
    assert plan.stable_replicas is None  # stable keeps serving every client
    candidate = cluster.deployments["iris-candidate"]
    labels = candidate["spec"]["template"]["metadata"]["labels"]
    assert "modelyard.io/modeldeployment" not in labels  # outside the ModelDeployment's Service
    assert candidate["spec"]["replicas"] == 1  # 25 % of 4
    env = {e["name"] for e in candidate["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert not {n for n in env if n.startswith("MODELYARD_SHADOW_")}  # a candidate never mirrors
    service = cluster.deployments["iris-shadow"]
    assert service["spec"]["selector"] == {"modelyard.io/shadow-of": "iris", "modelyard.io/track": "candidate"}
    counts[0] = Tally(65, 0)  # 60 rows since the baseline: not enough to decide
    plan = run(cluster, registry, T0 + dt.timedelta(seconds=31))
    assert plan.candidate is not None and plan.candidate["phase"] == "Progressing"
    assert {g["name"]: g["result"] for g in plan.candidate["gates"]}["minSamples"] == "Wait"
    counts[0] = Tally(150, 5)
    plan = run(cluster, registry, T0 + dt.timedelta(seconds=40))
    assert plan.candidate is not None and plan.candidate["phase"] == "Promoting"
    assert plan.serve == V4


def test_a_disagreeing_shadow_candidate_is_rejected_and_its_service_goes(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch,
) -> None:
    counts = shadow(cluster, monkeypatch, Tally(0, 0))
    registry = FakeRegistry()
    run(cluster, registry, T0)
    counts[0] = Tally(120, 80)
    plan = run(cluster, registry, T0 + dt.timedelta(seconds=31))
    assert plan.candidate is not None and plan.candidate["phase"] == "Rejected"
    assert "agreement" in plan.candidate["message"] and "120 of 200" in plan.candidate["message"]
    assert registry.tags[("iris", "4")]["modelyard.rejected"] == "agreement=0.6<0.9"
    assert "iris-candidate" not in cluster.deployments and "iris-shadow" not in cluster.deployments
    assert plan.serve == V3 and registry.aliases == {}
