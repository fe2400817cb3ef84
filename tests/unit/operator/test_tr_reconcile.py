"""Reconcile logic against an in-memory stand-in for kube.py (unit level only; the
integration tests run the same code against a real API server)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from modelyard_operator.settings import Settings
from modelyard_operator.trainingrun import reconcile as tr_reconcile
from modelyard_operator.trainingrun.models import InvalidSpecError, parse_run

SETTINGS = Settings(mlflow_tracking_uri="http://mlflow:5000")
SPEC: dict[str, Any] = {
    "model": {"name": "iris"},
    "estimator": {"type": "logistic_regression"},
    "dataset": {"builtin": "iris"},
    "promotion": {"alias": "champion", "metric": "accuracy", "minValue": 0.9},
}
SWEEP = {**SPEC, "sweep": {"trials": 2, "space": {"C": {"values": [0.1, 1.0]}},
                           "objective": {"metric": "accuracy"}}}


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: list[dict[str, Any]] = []
        self.created: list[str] = []
        self.status_patches: list[dict[str, Any]] = []

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self.objects.get((kind, name))
        return copy.deepcopy(obj) if obj else None

    def create(self, obj: dict[str, Any], owner: dict[str, Any] | None = None) -> dict[str, Any]:
        key = (obj["kind"], obj["metadata"]["name"])
        if key not in self.objects:
            self.created.append(obj["metadata"]["name"])
            obj = copy.deepcopy(obj)
            obj["metadata"]["uid"] = f"uid-{obj['metadata']['name']}"
            obj["metadata"]["ownerReferences"] = (
                [{"uid": owner["metadata"]["uid"], "controller": True}] if owner else [])
            obj["status"] = {}
            self.objects[key] = obj
        return copy.deepcopy(self.objects[key])

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        wanted = dict(part.split("=") for part in selector.split(","))
        return [p for p in self.pods if all(p["metadata"]["labels"].get(k) == v for k, v in wanted.items())]

    def patch_status(self, api_version: str, kind: str, namespace: str, name: str,
                     status: dict[str, Any]) -> dict[str, Any]:
        self.status_patches.append(status)
        body = self.objects[("TrainingRun", name)]
        body["status"] = {**body.get("status", {}), **status}
        return body

    # test helpers
    def finish(self, job: str, mode: str, results: list[dict[str, Any]], ok: bool = True) -> None:
        obj = self.objects[("Job", job)]
        kind = "Complete" if ok else "Failed"
        obj["status"] = {"conditions": [{"type": kind, "status": "True", "reason": "X",
                                         "lastTransitionTime": "2025-01-01T00:05:00Z"}],
                         "succeeded": len(results) if ok else 0, "failed": 0 if ok else 1}
        for result in results:
            self.pod_exits(job, mode, result, ok)

    def pod_exits(self, job: str, mode: str, result: dict[str, Any], ok: bool = True,
                  finished: str = "2025-01-01T00:05:00Z", phase: str | None = None) -> None:
        """One of ``job``'s pods has finished (its phase may lag: ``phase``); the Job's own
        status is left as it is."""
        uid = self.objects[("Job", job)]["metadata"]["uid"]
        terminated = {"exitCode": 0 if ok else 1, "message": json.dumps(result), "finishedAt": finished}
        self.pods.append({
            "metadata": {"name": f"{job}-{len(self.pods)}", "ownerReferences": [{"uid": uid}],
                         "labels": {"modelyard.io/trainingrun": "iris-1", "modelyard.io/training-mode": mode}},
            "status": {"phase": phase or ("Succeeded" if ok else "Failed"),
                       "containerStatuses": [{"name": "train", "state": {"terminated": terminated}}]},
        })


@pytest.fixture
def kube(monkeypatch: pytest.MonkeyPatch) -> FakeKube:
    fake = FakeKube()
    for name in ("get", "create", "list_pods", "patch_status"):
        monkeypatch.setattr(tr_reconcile.kube, name, getattr(fake, name))
    return fake


def add_run(kube: FakeKube, spec: dict[str, Any], status: dict[str, Any] | None = None) -> None:
    kube.objects[("TrainingRun", "iris-1")] = {
        "apiVersion": "modelyard.io/v1alpha1", "kind": "TrainingRun",
        "metadata": {"name": "iris-1", "namespace": "ml", "uid": "run-uid", "generation": 1},
        "spec": spec, "status": status or {}}


def sync(kube: FakeKube) -> tr_reconcile.Outcome:
    outcome = tr_reconcile.sync_run("ml", "iris-1", SETTINGS)
    assert outcome is not None
    return outcome


OK = {"ok": True, "runId": "best", "experimentId": "1", "modelName": "iris", "version": "1",
      "metrics": {"accuracy": 0.97}, "promoted": True, "alias": "champion"}


def test_single_run_creates_one_job_and_finishes(kube: FakeKube) -> None:
    add_run(kube, SPEC)
    first = sync(kube)
    assert kube.created == ["iris-1-train"]
    assert first.events == [("Normal", "Started", "created training Job iris-1-train")]
    assert first.status["phase"] == "Pending"
    assert kube.objects[("Job", "iris-1-train")]["metadata"]["ownerReferences"] == [
        {"uid": "run-uid", "controller": True}]

    again = sync(kube)
    assert kube.created == ["iris-1-train"] and again.events == []
    assert len(kube.status_patches) == 1  # unchanged status is not rewritten

    kube.finish("iris-1-train", "single", [OK])
    done = sync(kube)
    assert done.finished and done.status["phase"] == "Succeeded"
    assert [e[1] for e in done.events] == ["Succeeded", "Promoted"]
    assert kube.objects[("TrainingRun", "iris-1")]["status"]["modelVersion"] == "1"


@pytest.mark.parametrize("pod_phase", ["Succeeded", "Running"])
def test_a_single_run_succeeds_from_its_pod_before_the_job_is_complete(kube: FakeKube, pod_phase: str) -> None:
    """The container's clean exit is enough: the kubelet marks the pod Succeeded a moment
    later, the Job controller later still."""
    add_run(kube, SPEC)
    sync(kube)
    kube.pod_exits("iris-1-train", "single", OK, finished="2025-01-01T00:04:58Z", phase=pod_phase)
    done = sync(kube)
    assert not kube.objects[("Job", "iris-1-train")]["status"]  # the Job controller has not caught up
    assert done.finished and done.status["phase"] == "Succeeded"
    assert done.status["completionTime"] == "2025-01-01T00:04:58Z"
    assert (done.status["modelVersion"], done.status["promoted"]) == ("1", True)
    assert [e[1] for e in done.events] == ["Succeeded", "Promoted"]


def test_a_failed_attempt_or_a_trial_does_not_finish_the_run_early(kube: FakeKube) -> None:
    add_run(kube, SPEC)
    sync(kube)
    kube.pod_exits("iris-1-train", "single", {"ok": False, "reason": "MLflowUnavailable"}, ok=False)
    assert sync(kube).status["phase"] != "Succeeded"  # the Job may still retry

    kube.objects.clear()
    kube.pods.clear()
    add_run(kube, SWEEP)
    sync(kube)
    kube.pod_exits("iris-1-sweep", "trial", {**OK, "trial": 0, "version": None, "promoted": False})
    waiting = sync(kube)
    assert waiting.status["phase"] != "Succeeded" and kube.created[-1] == "iris-1-sweep"


def test_restarted_operator_adopts_the_existing_job(kube: FakeKube) -> None:
    add_run(kube, SPEC)
    sync(kube)
    kube.created.clear()
    # a fresh process: status may even be empty if the first write was lost
    kube.objects[("TrainingRun", "iris-1")]["status"] = {}
    outcome = sync(kube)
    assert kube.created == [] and outcome.events == []


def test_a_previous_runs_job_with_the_same_name_is_not_mirrored(kube: FakeKube) -> None:
    add_run(kube, SPEC)
    kube.objects[("Job", "iris-1-train")] = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "iris-1-train", "uid": "old", "deletionTimestamp": "2025-01-01T00:00:00Z",
                     "ownerReferences": [{"uid": "deleted-run-uid", "controller": True}]},
        "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    with pytest.raises(tr_reconcile.JobConflictError, match="belongs to another object"):
        tr_reconcile.sync_run("ml", "iris-1", SETTINGS)
    assert kube.status_patches == []
    del kube.objects[("Job", "iris-1-train")]  # the garbage collector catches up
    assert sync(kube).status["phase"] == "Pending"
    assert kube.created == ["iris-1-train"]


def test_finished_run_never_recreates_a_ttl_deleted_job(kube: FakeKube) -> None:
    add_run(kube, SPEC, {"phase": "Succeeded", "observedGeneration": 1})
    outcome = sync(kube)
    assert outcome.finished and kube.created == [] and kube.status_patches == []


def test_failed_run_emits_a_warning(kube: FakeKube) -> None:
    add_run(kube, SPEC)
    sync(kube)
    kube.finish("iris-1-train", "single",
                [{"ok": False, "reason": "DatasetUnavailable", "message": "404 for http://x/y.csv"}], ok=False)
    outcome = sync(kube)
    assert outcome.status["phase"] == "Failed"
    assert outcome.events == [("Warning", "Failed", "DatasetUnavailable: 404 for http://x/y.csv (after 1 attempt)")]


def test_sweep_runs_trials_then_selects_once(kube: FakeKube) -> None:
    add_run(kube, SWEEP)
    first = sync(kube)
    assert kube.created == ["iris-1-sweep"]
    assert first.status["message"] == "sweep: 0/2 trials completed"
    assert kube.objects[("Job", "iris-1-sweep")]["spec"]["completionMode"] == "Indexed"

    trials = [{**OK, "runId": f"t{i}", "trial": i, "version": None, "promoted": False} for i in (1, 0)]
    kube.finish("iris-1-sweep", "trial", trials)
    selecting = sync(kube)
    assert kube.created == ["iris-1-sweep", "iris-1-select"]
    assert selecting.status["jobName"] == "iris-1-select"
    assert selecting.status["phase"] == "Pending"
    assert [e[1] for e in selecting.events] == ["SelectingBest"]

    sync(kube)
    assert kube.created == ["iris-1-sweep", "iris-1-select"]  # select Job created exactly once

    kube.finish("iris-1-select", "select", [{**OK, "runId": "t1"}])
    done = sync(kube)
    assert done.status["phase"] == "Succeeded"
    assert done.status["trialRunIds"] == ["t0", "t1"]
    assert done.status["runId"] == "t1"


def test_failed_sweep_does_not_select(kube: FakeKube) -> None:
    add_run(kube, SWEEP)
    sync(kube)
    kube.finish("iris-1-sweep", "trial",
                [{"ok": False, "reason": "InvalidHyperparameters", "message": "bad C"}], ok=False)
    outcome = sync(kube)
    assert outcome.status["phase"] == "Failed"
    assert kube.created == ["iris-1-sweep"]


def test_invalid_spec_is_recorded_then_raised(kube: FakeKube) -> None:
    add_run(kube, {**SPEC, "estimator": {"type": "xgboost"}})
    with pytest.raises(InvalidSpecError, match=r"spec\.estimator"):
        tr_reconcile.sync_run("ml", "iris-1", SETTINGS)
    status = kube.objects[("TrainingRun", "iris-1")]["status"]
    assert status["phase"] == "Failed"
    assert {c["reason"] for c in status["conditions"]} == {"InvalidSpec"}
    assert jobs(kube) == []
    assert events(kube) == [("Warning", "InvalidSpec")]


def jobs(kube: FakeKube) -> list[str]:
    return [name for kind, name in kube.objects if kind == "Job"]


def events(kube: FakeKube) -> list[tuple[str, str]]:
    return [(o["type"], o["reason"]) for (kind, _), o in kube.objects.items() if kind == "Event"]


@pytest.mark.parametrize(("extra", "field"), [
    ({"image": "evil.example.com/miner:1"}, r"spec\.image: image 'evil\.example\.com/miner:1'"),
    ({"volumes": [{"name": "root", "hostPath": {"path": "/"}}]},
     r"spec\.volumes\[0\]: volume type 'hostPath'"),
    ({"env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}]},
     r"spec\.env\[0\]\.valueFrom\.secretKeyRef: Secret 'db'"),
])
def test_policy_violation_fails_the_run_with_condition_and_event_and_no_job(
    kube: FakeKube, extra: dict[str, Any], field: str,
) -> None:
    add_run(kube, {**SPEC, **extra})
    with pytest.raises(InvalidSpecError, match=field):
        tr_reconcile.sync_run("ml", "iris-1", SETTINGS)
    status = kube.objects[("TrainingRun", "iris-1")]["status"]
    assert status["phase"] == "Failed"
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert (failed["status"], failed["reason"]) == ("True", "PolicyViolation")
    assert jobs(kube) == []
    assert events(kube) == [("Warning", "PolicyViolation")]
    # A resume (operator restart) sees a finished run: no Job, no second Event.
    again = tr_reconcile.sync_run("ml", "iris-1", SETTINGS)
    assert again is not None and again.finished
    assert jobs(kube) == [] and len(events(kube)) == 1


def test_policy_allows_configured_image_and_prefixes(kube: FakeKube) -> None:
    settings = Settings(mlflow_tracking_uri="http://mlflow:5000",
                        allowed_image_prefixes="registry.example.com/ml/")
    add_run(kube, {**SPEC, "image": "registry.example.com/ml/train:2"})
    assert tr_reconcile.sync_run("ml", "iris-1", settings) is not None
    assert jobs(kube) == ["iris-1-train"]


def test_policy_is_not_applied_to_a_run_that_already_started(kube: FakeKube) -> None:
    # e.g. the operator restarted with a stricter policy: the existing Job's outcome still counts
    add_run(kube, {**SPEC, "image": "evil.example.com/miner:1"}, {"phase": "Running"})
    assert tr_reconcile.sync_run("ml", "iris-1", SETTINGS) is not None


def test_deleted_run_is_ignored(kube: FakeKube) -> None:
    assert tr_reconcile.sync_run("ml", "iris-1", SETTINGS) is None
    add_run(kube, SPEC)
    kube.objects[("TrainingRun", "iris-1")]["metadata"]["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    assert tr_reconcile.sync_run("ml", "iris-1", SETTINGS) is None
    assert kube.created == []


def test_phase_events_are_pure() -> None:
    run = parse_run({"apiVersion": "modelyard.io/v1alpha1", "kind": "TrainingRun",
                     "metadata": {"name": "a", "namespace": "b", "uid": "c"}, "spec": SPEC})
    assert tr_reconcile.phase_events({"phase": "Running"}, {"phase": "Running"}, run) == []
