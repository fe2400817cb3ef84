"""TrainingRun status derived from Job + pod fixtures shaped like the API server's."""

from __future__ import annotations

import json
from typing import Any

from modelyard_operator.trainingrun.models import TrainingRun, parse_run
from modelyard_operator.trainingrun.status import job_status, job_view, trial_run_ids, waiting_message

NOW = "2025-01-01T00:10:00Z"
JOB_UID = "job-uid-1"
SPEC: dict[str, Any] = {
    "model": {"name": "iris"},
    "estimator": {"type": "logistic_regression"},
    "dataset": {"builtin": "iris"},
    "promotion": {"alias": "champion", "metric": "f1_macro", "minValue": 0.9},
}


def run(status: dict[str, Any] | None = None, spec: dict[str, Any] | None = None) -> TrainingRun:
    return parse_run({"apiVersion": "modelyard.io/v1alpha1", "kind": "TrainingRun",
                      "metadata": {"name": "iris-1", "namespace": "ml", "uid": "u", "generation": 1},
                      "spec": spec or SPEC, "status": status or {}})


def job(conditions: list[dict[str, Any]] | None = None, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "iris-1-train", "uid": JOB_UID},
            "status": {"startTime": "2025-01-01T00:00:00Z", "conditions": conditions or [], **status}}


def pod(phase: str, message: dict[str, Any] | str | None = None, finished: str = "2025-01-01T00:05:00Z",
        owner: str = JOB_UID, **status: Any) -> dict[str, Any]:
    state: dict[str, Any] = {}
    if phase in ("Succeeded", "Failed"):
        text = json.dumps(message) if isinstance(message, dict) else message
        state = {"terminated": {"exitCode": 0 if phase == "Succeeded" else 1, "finishedAt": finished,
                                **({"message": text} if text else {})}}
    elif phase == "Running":
        state = {"running": {}}
    return {"metadata": {"name": f"p-{finished}", "ownerReferences": [{"uid": owner}]},
            "status": {"phase": phase, "containerStatuses": [{"name": "train", "state": state}], **status}}


OK = {"ok": True, "runId": "r1", "experimentId": "e1", "modelName": "iris", "version": "1",
      "metrics": {"accuracy": 0.97, "f1_macro": 0.965}, "promoted": True, "alias": "champion",
      "trial": None}
COMPLETE = [{"type": "Complete", "status": "True", "lastTransitionTime": "2025-01-01T00:05:01Z"}]


def failed(reason: str, message: str = "") -> list[dict[str, Any]]:
    return [{"type": "Failed", "status": "True", "reason": reason, "message": message,
             "lastTransitionTime": "2025-01-01T00:06:00Z"}]


def cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


def test_pending_while_no_pod_runs() -> None:
    status = job_status(run(), job(active=1), [pod("Pending")], NOW)
    assert status["phase"] == "Pending"
    assert status["jobName"] == "iris-1-train"
    assert status["startTime"] == "2025-01-01T00:00:00Z"
    assert cond(status, "Succeeded")["status"] == "Unknown"
    assert cond(status, "Failed")["status"] == "False"


def test_unschedulable_reason_is_surfaced() -> None:
    stuck = pod("Pending", conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                        "message": "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."}])
    status = job_status(run(), job(active=1), [stuck], NOW)
    assert status["message"] == "Unschedulable: 0/2 nodes are available: 2 Insufficient nvidia.com/gpu."


def test_running_when_a_pod_runs() -> None:
    status = job_status(run(), job(active=1), [pod("Running")], NOW)
    assert (status["phase"], status["message"]) == ("Running", "training")


def test_running_stays_running_during_a_retry() -> None:
    status = job_status(run({"phase": "Running"}), job(active=1, failed=1), [pod("Pending")], NOW)
    assert status["phase"] == "Running"


def test_succeeded_mirrors_the_termination_message() -> None:
    status = job_status(run(), job(COMPLETE, completionTime="2025-01-01T00:05:01Z"), [pod("Succeeded", OK)], NOW)
    assert status["phase"] == "Succeeded"
    assert status["modelVersion"] == "1"
    assert status["metrics"] == {"accuracy": 0.97, "f1_macro": 0.965}
    assert (status["objectiveMetric"], status["objectiveValue"]) == ("f1_macro", 0.965)


def test_objective_value_is_rounded_for_display() -> None:
    result = {**OK, "metrics": {"f1_macro": 0.9555555555555556}}
    status = job_status(run(), job(COMPLETE), [pod("Succeeded", result)], NOW)
    assert status["objectiveValue"] == 0.9556
    assert status["metrics"]["f1_macro"] == 0.9555555555555556
    assert (status["runId"], status["experimentId"]) == ("r1", "e1")
    assert (status["promoted"], status["alias"]) == (True, "champion")
    assert status["completionTime"] == "2025-01-01T00:05:01Z"
    assert cond(status, "Succeeded")["status"] == "True"
    assert cond(status, "Failed")["status"] == "False"
    assert "promoted to alias 'champion'" in status["message"]


def test_not_promoted_when_rule_fails() -> None:
    result = {**OK, "promoted": False, "alias": None, "metrics": {"f1_macro": 0.5}}
    status = job_status(run(), job(COMPLETE), [pod("Succeeded", result)], NOW)
    assert status["promoted"] is False and status["alias"] is None
    assert "promotion rule for alias 'champion' not met" in status["message"]


def test_integer_version_is_text() -> None:
    status = job_status(run(), job(COMPLETE), [pod("Succeeded", {**OK, "version": 3})], NOW)
    assert status["modelVersion"] == "3"


def test_failure_reason_comes_from_the_training_result() -> None:
    message = {"ok": False, "reason": "InvalidHyperparameters",
               "message": "The 'C' parameter of LogisticRegression must be a float in the range (0.0, inf]. "
                          "Got -1.0 instead."}
    status = job_status(run(), job(failed("PodFailurePolicy", "Container train exited with 2"), failed=1),
                        [pod("Failed", message)], NOW)
    failed_condition = cond(status, "Failed")
    assert status["phase"] == "Failed"
    assert failed_condition["status"] == "True"
    assert failed_condition["reason"] == "InvalidHyperparameters"
    assert "must be a float in the range" in failed_condition["message"]
    assert status["message"].endswith("(after 1 attempt)")
    assert cond(status, "Succeeded")["status"] == "False"
    assert status["completionTime"] == "2025-01-01T00:06:00Z"


def test_failure_uses_the_latest_attempt() -> None:
    early = pod("Failed", {"ok": False, "reason": "TrainingError", "message": "old"}, finished="2025-01-01T00:01:00Z")
    late = pod("Failed", {"ok": False, "reason": "MLflowUnavailable", "message": "connection refused"},
               finished="2025-01-01T00:04:00Z")
    status = job_status(run(), job(failed("BackoffLimitExceeded", "Job has reached the specified backoff limit"),
                                   failed=3), [late, early], NOW)
    assert cond(status, "Failed")["reason"] == "MLflowUnavailable"
    assert status["message"] == "connection refused (after 3 attempts)"


def test_failure_without_result_falls_back_to_job_reason_and_log_tail() -> None:
    crashed = pod("Failed", "Traceback ...\nMemoryError")
    status = job_status(run(), job(failed("BackoffLimitExceeded", "backoff"), failed=3), [crashed], NOW)
    assert cond(status, "Failed")["reason"] == "BackoffLimitExceeded"
    assert "MemoryError" in status["message"]


def test_deadline_exceeded_without_pods() -> None:
    status = job_status(run(), job(failed("DeadlineExceeded", "Job was active longer than specified deadline")),
                        [], NOW)
    assert cond(status, "Failed")["reason"] == "DeadlineExceeded"
    assert "deadline" in status["message"]


def test_pods_of_a_previous_job_are_ignored() -> None:
    stale = pod("Failed", {"ok": False, "reason": "DatasetUnavailable", "message": "old run"}, owner="other")
    status = job_status(run(), job(active=1), [stale], NOW)
    assert status["phase"] == "Pending"


def test_transition_time_survives_reconciles() -> None:
    first = job_status(run(), job(active=1), [pod("Running")], "2025-01-01T00:01:00Z")
    second = job_status(run(first), job(active=1), [pod("Running")], "2025-01-01T00:02:00Z")
    assert first == second  # nothing changed, so nothing to write


def test_job_view_states() -> None:
    assert job_view(job(active=1)).state == "active"
    assert job_view(job(COMPLETE)).state == "complete"
    assert job_view(job(failed("X"))).state == "failed"
    # a suspended or FailureTarget-only job is still in progress
    assert job_view(job([{"type": "FailureTarget", "status": "True"}])).state == "active"


def test_trial_run_ids_by_index_and_only_successes() -> None:
    pods = [pod("Succeeded", {**OK, "runId": f"t{i}", "trial": i, "version": None}) for i in (2, 0, 1)]
    pods.append(pod("Failed", {"ok": False, "reason": "MLflowUnavailable", "message": ""}))
    assert trial_run_ids(pods) == ["t0", "t1", "t2"]


def test_waiting_message_reports_image_and_config_errors() -> None:
    waiting = pod("Pending")
    waiting["status"]["containerStatuses"][0]["state"] = {
        "waiting": {"reason": "CreateContainerConfigError", "message": 'secret "mlflow" not found'}}
    assert waiting_message([waiting]) == 'CreateContainerConfigError: secret "mlflow" not found'
    creating = pod("Pending")
    creating["status"]["containerStatuses"][0]["state"] = {"waiting": {"reason": "ContainerCreating"}}
    assert waiting_message([creating]) == ""
    bound = pod("Pending")
    bound["spec"] = {"nodeName": "gpu-1"}
    assert waiting_message([bound]) == "pod p-2025-01-01T00:05:00Z scheduled on node gpu-1, waiting for it to start"


def test_regressor_objective_defaults_to_rmse() -> None:
    spec = {**SPEC, "estimator": {"type": "ridge"}, "dataset": {"builtin": "diabetes"}}
    spec.pop("promotion")
    result = {**OK, "metrics": {"rmse": 53.1, "mae": 42.0, "r2": 0.45}, "promoted": False, "alias": None}
    status = job_status(run(spec=spec), job(COMPLETE), [pod("Succeeded", result)], NOW)
    assert (status["objectiveMetric"], status["objectiveValue"]) == ("rmse", 53.1)
