"""Rollout classification, status/conditions and transition Events (pure)."""

from __future__ import annotations

from typing import Any

from modelyard_operator.conditions import get_condition
from modelyard_operator.modeldeployment.models import ModelDeployment, parse_md
from modelyard_operator.modeldeployment.pods import load_error_from_readyz
from modelyard_operator.modeldeployment.rollout import RolloutState, analyse
from modelyard_operator.modeldeployment.status import (
    Resolution,
    compute_status,
    retraining_condition,
    transition_events,
)
from modelyard_operator.registry import (
    ModelNotFound,
    RegistryUnavailable,
    ResolvedVersion,
    SelectorNotSet,
)

NOW = "2026-01-01T00:00:00Z"
LATER = "2026-01-01T00:05:00Z"


def deployment(version: str, replicas: int = 2, ready: int = 2, updated: int = 2,
               total: int | None = None, available: int | None = None,
               deadline: bool = False) -> dict[str, Any]:
    conditions = [{"type": "Progressing", "status": "False" if deadline else "True",
                   "reason": "ProgressDeadlineExceeded" if deadline else "NewReplicaSetAvailable"}]
    return {
        "metadata": {"generation": 4},
        "spec": {"replicas": replicas, "progressDeadlineSeconds": 600,
                 "template": {"metadata": {"labels": {"modelyard.io/model-version": version}}}},
        "status": {"observedGeneration": 4, "replicas": total if total is not None else replicas,
                   "readyReplicas": ready, "updatedReplicas": updated,
                   "availableReplicas": available if available is not None else ready,
                   "conditions": conditions},
    }


def pod(name: str, version: str, ready: bool, phase: str = "Running",
        container: dict[str, Any] | None = None, scheduled: bool = True) -> dict[str, Any]:
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    if not scheduled:
        conditions.append({"type": "PodScheduled", "status": "False",
                           "message": "0/3 nodes are available: Insufficient nvidia.com/gpu."})
    return {
        "metadata": {"name": name, "labels": {"modelyard.io/model-version": version}},
        "status": {"phase": phase, "podIP": "10.88.0.9", "conditions": conditions,
                   "containerStatuses": [container or {"ready": ready, "restartCount": 0,
                                                       "state": {"running": {}}}]},
    }


def md(status: dict[str, Any] | None = None) -> ModelDeployment:
    return parse_md({"metadata": {"name": "iris", "namespace": "ml", "uid": "u", "generation": 3},
                     "spec": {"model": {"name": "iris", "alias": "champion"}, "replicas": 2},
                     "status": status or {}})


def test_complete_rollout() -> None:
    state = analyse(deployment("2"), [pod("a", "2", True), pod("b", "2", True)], "2")
    assert state.phase == "Complete"
    assert state.serving_versions == ["2"]


def test_rollout_in_progress_keeps_both_versions_visible() -> None:
    pods = [pod("a", "1", True), pod("b", "1", True), pod("c", "2", False)]
    state = analyse(deployment("2", updated=1, total=3), pods, "2")
    assert state.phase == "Progressing"
    assert state.serving_versions == ["1"]


def test_crashing_new_version_is_a_load_failure() -> None:
    crashed = {"ready": False, "restartCount": 3,
               "state": {"waiting": {"reason": "CrashLoopBackOff"}},
               "lastState": {"terminated": {"exitCode": 1, "message": "cannot load model"}}}
    pods = [pod("a", "1", True), pod("b", "1", True), pod("c", "2", False, container=crashed)]
    state = analyse(deployment("2", updated=1, total=3), pods, "2")
    assert state.phase == "LoadFailed"
    assert "cannot load model" in state.message


def test_load_error_reported_by_readyz_is_a_load_failure() -> None:
    pods = [pod("a", "1", True), pod("c", "2", False)]
    state = analyse(deployment("2", updated=1, total=2), pods, "2",
                    {"c": "RESOURCE_DOES_NOT_EXIST: no artifact"})
    assert state.phase == "LoadFailed"
    assert "no artifact" in state.message


def test_image_pull_errors_are_a_stall_not_a_model_problem() -> None:
    pulling = {"ready": False, "restartCount": 0,
               "state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}}
    state = analyse(deployment("2", updated=1, total=3),
                    [pod("c", "2", False, phase="Pending", container=pulling)], "2")
    assert state.phase == "Stalled"


def test_progress_deadline_classified_by_pod_state() -> None:
    unscheduled = [pod("c", "2", False, phase="Pending", scheduled=False)]
    stalled = analyse(deployment("2", updated=1, total=3, deadline=True), unscheduled, "2")
    assert stalled.phase == "Stalled"
    assert "Insufficient nvidia.com/gpu" in stalled.message
    loading = analyse(deployment("2", updated=1, total=3, deadline=True),
                      [pod("c", "2", False)], "2")
    assert loading.phase == "LoadFailed"


def test_readyz_body_parsing() -> None:
    failed = {"status": "failed", "error": "MlflowException: no MLmodel", "attempts": 2}
    assert load_error_from_readyz(503, failed) == "MlflowException: no MLmodel"
    assert load_error_from_readyz(503, {"status": "loading", "error": None}) is None
    assert load_error_from_readyz(503, {"code": "model_load_failed", "error": "boom"}) == "boom"
    assert load_error_from_readyz(503, {"loadError": "no such file"}) == "no such file"
    assert load_error_from_readyz(503, {"code": "not_ready", "error": "loading"}) is None
    assert load_error_from_readyz(200, {"ready": True}) is None
    assert load_error_from_readyz(0, None) is None


def _conds(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_first_resolution_status() -> None:
    rollout = analyse(deployment("1"), [pod("a", "1", True), pod("b", "1", True)], "1")
    status = compute_status(md(), Resolution(ResolvedVersion("iris", "1"), None), rollout, now=NOW)
    assert status["resolvedVersion"] == "1"
    assert status["modelUri"] == "models:/iris/1"
    assert status["previousVersion"] is None and status["lastPromotionTime"] is None
    assert status["url"] == "http://iris.ml.svc.cluster.local:80"
    assert status["readyText"] == "2/2"
    assert status["selector"] == "alias=champion"
    assert status["observedGeneration"] == 3
    assert _conds(status) == {
        "Ready": ("True", "Serving"), "ModelResolved": ("True", "Resolved"),
        "Progressing": ("False", "RolloutComplete"), "Degraded": ("False", "AsExpected"),
    }


def test_promotion_tracks_previous_version_and_time() -> None:
    old = compute_status(md(), Resolution(ResolvedVersion("iris", "1"), None),
                         analyse(deployment("1"), [], "1"), now=NOW)
    rollout = analyse(deployment("2", updated=1, total=3), [pod("a", "1", True)], "2")
    new = compute_status(md(old), Resolution(ResolvedVersion("iris", "2"), None), rollout,
                         now=LATER)
    assert (new["resolvedVersion"], new["previousVersion"]) == ("2", "1")
    assert new["lastPromotionTime"] == LATER
    assert _conds(new)["Progressing"] == ("True", "RollingOut")
    assert _conds(new)["Ready"] == ("True", "Serving")  # old pods keep full capacity
    events = transition_events(old, new)
    assert [(e.type, e.reason) for e in events] == [("Normal", "Promoted")]
    assert "from version 1 to version 2" in events[0].message


def test_unchanged_reconcile_keeps_transition_times() -> None:
    rollout = analyse(deployment("1"), [pod("a", "1", True)], "1")
    first = compute_status(md(), Resolution(ResolvedVersion("iris", "1"), None), rollout, now=NOW)
    again = compute_status(md(first), Resolution(ResolvedVersion("iris", "1"), None), rollout,
                           now=LATER)
    assert again == first
    assert transition_events(first, again) == []


def test_bad_version_is_degraded_while_old_keeps_serving() -> None:
    old = compute_status(md(), Resolution(ResolvedVersion("iris", "1"), None),
                         analyse(deployment("1"), [pod("a", "1", True)], "1"), now=NOW)
    rollout = analyse(deployment("2", updated=1, total=3),
                      [pod("a", "1", True), pod("b", "1", True), pod("c", "2", False)], "2",
                      {"c": "model failed to load"})
    new = compute_status(md(old), Resolution(ResolvedVersion("iris", "2"), None), rollout,
                         now=LATER)
    conds = _conds(new)
    assert conds["Degraded"] == ("True", "ModelLoadFailed")
    assert conds["Ready"] == ("True", "Serving")
    degraded = get_condition(new["conditions"], "Degraded")
    assert degraded is not None and "still serving version 1" in degraded["message"]
    reasons = [(e.type, e.reason) for e in transition_events(old, new)]
    assert ("Warning", "ModelLoadFailed") in reasons


def test_registry_outage_keeps_last_version() -> None:
    old = compute_status(md(), Resolution(ResolvedVersion("iris", "1"), None),
                         analyse(deployment("1"), [pod("a", "1", True)], "1"), now=NOW)
    outage = Resolution(ResolvedVersion("iris", "1"), RegistryUnavailable("connection refused"))
    new = compute_status(md(old), outage, analyse(deployment("1"), [pod("a", "1", True)], "1"),
                         now=LATER)
    assert new["resolvedVersion"] == "1"
    conds = _conds(new)
    assert conds["ModelResolved"] == ("False", "RegistryUnavailable")
    assert conds["Degraded"] == ("True", "RegistryUnavailable")
    assert conds["Ready"] == ("True", "Serving")
    kinds = {(e.type, e.reason) for e in transition_events(old, new)}
    assert ("Warning", "RegistryUnavailable") in kinds


def test_alias_deleted_keeps_serving_last_version() -> None:
    old = compute_status(md(), Resolution(ResolvedVersion("iris", "1"), None),
                         analyse(deployment("1"), [], "1"), now=NOW)
    gone = Resolution(ResolvedVersion("iris", "1"), SelectorNotSet("alias gone", "alias"))
    new = compute_status(md(old), gone, analyse(deployment("1"), [], "1"), now=LATER)
    assert _conds(new)["Degraded"] == ("True", "AliasNotSet")
    assert new["resolvedVersion"] == "1"


def test_nothing_resolved_nothing_deployed() -> None:
    status = compute_status(md(), Resolution(None, ModelNotFound("no model")),
                            analyse(None, [], None), now=NOW)
    assert _conds(status)["Ready"] == ("False", "ModelNotFound")
    assert status["resolvedVersion"] is None and status["url"] is None


def test_retraining_condition_follows_the_run() -> None:
    last = {"trainingRun": "iris-retrain-1"}
    running = {"status": {"conditions": [
        {"type": "Succeeded", "status": "False", "reason": "Running", "message": ""}]}}
    done = {"status": {"conditions": [
        {"type": "Succeeded", "status": "True", "reason": "Succeeded", "message": "v4"}]}}
    failed = {"status": {"conditions": [
        {"type": "Failed", "status": "True", "reason": "TrainingError", "message": "x"}]}}
    assert retraining_condition(None, None) is None
    assert retraining_condition(last, running) is not None
    assert retraining_condition(last, running)[:2] == ("True", "TrainingRunInProgress")
    assert retraining_condition(last, done)[:2] == ("False", "TrainingRunSucceeded")
    assert retraining_condition(last, failed)[:2] == ("False", "TrainingRunFailed")
    assert retraining_condition(last, None)[:2] == ("False", "TrainingRunGone")


def test_missing_deployment_state() -> None:
    assert analyse(None, [], "1") == RolloutState("Missing", "no serving Deployment yet")
