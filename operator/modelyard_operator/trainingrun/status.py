"""Pure derivation of TrainingRun status from its Jobs and their pods (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from modelyard_operator.conditions import set_condition
from modelyard_operator.kube import owned_by, pod_termination_message
from modelyard_operator.trainingrun.builders import CONTAINER
from modelyard_operator.trainingrun.models import MODE_LABEL, TrainingResult, TrainingRun, parse_result
from modelyard_operator.trainingrun.promotion import mlflow_links, promotion_status, promotion_summary

JobState = Literal["active", "complete", "failed"]
MESSAGE_LIMIT = 1024


@dataclass(frozen=True)
class JobView:
    """What a Job says about itself: its state, and for a failure the Job's reason."""

    state: JobState
    reason: str = ""
    message: str = ""
    finished_at: str | None = None


def job_view(job: dict[str, Any]) -> JobView:
    """Reduce a Job to active/complete/failed from its terminal conditions."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return JobView("complete", finished_at=(job.get("status") or {}).get("completionTime")
                           or condition.get("lastTransitionTime"))
        if condition.get("type") == "Failed":
            return JobView("failed", condition.get("reason", "JobFailed"),
                           condition.get("message", ""), condition.get("lastTransitionTime"))
    return JobView("active")


def owned_pods(pods: list[dict[str, Any]], job: dict[str, Any]) -> list[dict[str, Any]]:
    """Pods whose controller is exactly this Job (a same-named predecessor's pods excluded)."""
    uid = str((job.get("metadata") or {}).get("uid"))
    return [pod for pod in pods if owned_by(pod, uid)]


def _finished_at(pod: dict[str, Any]) -> str:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated") or {}
        if terminated.get("finishedAt"):
            return str(terminated["finishedAt"])
    return str((pod.get("metadata") or {}).get("creationTimestamp") or "")


def latest_result(pods: list[dict[str, Any]], phase: str) -> tuple[TrainingResult | None, str]:
    """The parsed result and raw message of the most recently finished pod in ``phase``."""
    finished = sorted((p for p in pods if (p.get("status") or {}).get("phase") == phase),
                      key=_finished_at)
    if not finished:
        return None, ""
    raw = pod_termination_message(finished[-1], CONTAINER) or ""
    return parse_result(raw), raw


def trial_run_ids(pods: list[dict[str, Any]]) -> list[str]:
    """MLflow run ids of the successful sweep trials, ordered by completion index."""
    by_index: dict[int, str] = {}
    for pod in pods:
        if (pod.get("status") or {}).get("phase") != "Succeeded":
            continue
        result = parse_result(pod_termination_message(pod, CONTAINER))
        if result is not None and result.ok and result.run_id:
            by_index[result.trial if result.trial is not None else len(by_index)] = result.run_id
    return [by_index[index] for index in sorted(by_index)]


def waiting_message(pods: list[dict[str, Any]]) -> str:
    """Why pods are not running yet (unschedulable, image pull, missing config), if known."""
    for pod in pods:
        status = pod.get("status") or {}
        for condition in status.get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                return f"{condition.get('reason', 'Unschedulable')}: {condition.get('message', '')}"
        for container in status.get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") not in (None, "ContainerCreating", "PodInitializing"):
                return f"{waiting['reason']}: {waiting.get('message', '')}".rstrip(": ")
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if node and (pod.get("status") or {}).get("phase") == "Pending":
            return f"pod {pod['metadata']['name']} scheduled on node {node}, waiting for it to start"
    return ""


def _base(run: TrainingRun, job: dict[str, Any], now: str) -> dict[str, Any]:
    job_start = (job.get("status") or {}).get("startTime")
    return {
        "observedGeneration": run.generation,
        "jobName": job["metadata"]["name"],
        "objectiveMetric": run.objective_metric,
        "startTime": run.status.get("startTime") or job_start or now,
    }


def _conditions(run: TrainingRun, succeeded: str, failed: str, reason: str, message: str,
                now: str) -> list[dict[str, Any]]:
    conditions = set_condition(run.status.get("conditions"), "Succeeded", succeeded, reason,
                               message, run.generation, now)
    return set_condition(conditions, "Failed", failed, reason, message, run.generation, now)


def in_progress_status(run: TrainingRun, job: dict[str, Any], pods: list[dict[str, Any]],
                       now: str, stage: str = "") -> dict[str, Any]:
    """Pending until a pod runs, then Running; the message says what is being waited for."""
    running = any((p.get("status") or {}).get("phase") == "Running" for p in pods)
    phase = "Running" if running or run.status.get("phase") == "Running" else "Pending"
    message = waiting_message(pods) if not running else ""
    if not message:
        message = stage or ("training" if running else "waiting for the training pod")
    message = message[:MESSAGE_LIMIT]
    return {
        **_base(run, job, now), "phase": phase, "message": message,
        "conditions": _conditions(run, "Unknown", "False", phase, message, now),
    }


def succeeded_status(run: TrainingRun, job: dict[str, Any], result: TrainingResult | None,
                     now: str, trial_ids: list[str] | None = None,
                     ui_base: str | None = None, finished_at: str | None = None) -> dict[str, Any]:
    """Succeeded, with the outcome the training pod reported."""
    status = {**_base(run, job, now), "phase": "Succeeded",
              "completionTime": finished_at or job_view(job).finished_at or now}
    if trial_ids is not None:
        status["trialRunIds"] = trial_ids
    if result is None:
        message = "training Job completed but reported no result"
    else:
        metric = result.metrics.get(run.objective_metric)
        status.update({
            "experimentId": result.experiment_id, "runId": result.run_id,
            # Rounded for the printer column; the metrics map keeps full precision.
            "metrics": result.metrics,
            "objectiveValue": round(metric, 4) if metric is not None else None,
            "modelVersion": result.version, "promoted": result.promoted,
            "alias": result.alias if result.promoted else None,
            "stage": result.stage if result.promoted else None,
            "promotion": promotion_status(run, result),
            "mlflow": mlflow_links(ui_base, result, run.spec.model.name) or None,
        })
        message = f"registered {result.model_name or run.spec.model.name} version {result.version}"
        if metric is not None:
            message += f"; {run.objective_metric}={metric:.4g}"
        message += promotion_summary(run, status)
    status["message"] = message
    status["conditions"] = _conditions(run, "True", "False", "Succeeded", message, now)
    return status


def failed_status(run: TrainingRun, job: dict[str, Any], pods: list[dict[str, Any]],
                  now: str) -> dict[str, Any]:
    """Failed, with the training's own reason (e.g. InvalidHyperparameters) when it gave one,
    else the Job's reason (BackoffLimitExceeded, DeadlineExceeded) and the log tail."""
    view = job_view(job)
    result, raw = latest_result(pods, "Failed")
    attempts = int((job.get("status") or {}).get("failed") or 0)
    if result is not None and not result.ok:
        reason = result.reason or view.reason
        message = result.message or view.message
    else:
        reason = view.reason or "JobFailed"
        message = raw.strip()[-MESSAGE_LIMIT:] or view.message
    if attempts:
        message = f"{message} (after {attempts} attempt{'s' if attempts != 1 else ''})"
    message = message[:MESSAGE_LIMIT]
    return {
        **_base(run, job, now), "phase": "Failed", "message": message,
        "completionTime": view.finished_at or now,
        "conditions": _conditions(run, "False", "True", reason, message, now),
    }


def job_status(run: TrainingRun, job: dict[str, Any], pods: list[dict[str, Any]], now: str,
               stage: str = "", trial_ids: list[str] | None = None,
               ui_base: str | None = None) -> dict[str, Any]:
    """Status mirroring ``job`` (the run's current Job) and its pods."""
    pods = owned_pods(pods, job)
    view = job_view(job)
    if view.state == "failed":
        return failed_status(run, job, pods, now)
    if view.state == "complete":
        result, _ = latest_result(pods, "Succeeded")
        return succeeded_status(run, job, result, now, trial_ids, ui_base)
    if _one_pod_finishes_it(job):
        # The training container's clean exit already is the outcome: the kubelet takes about
        # a second more to mark the pod Succeeded (it tears the sandbox down first), and the Job
        # controller another second or two to count it and set Complete; the run need not wait
        # for that bookkeeping.
        exited = max((p for p in pods if _exited_cleanly(p)), key=_finished_at, default=None)
        result = parse_result(pod_termination_message(exited, CONTAINER)) if exited else None
        if exited is not None and result is not None and result.ok:
            return succeeded_status(run, job, result, now, trial_ids, ui_base, finished_at=_finished_at(exited))
    return in_progress_status(run, job, pods, now, stage)


def _exited_cleanly(pod: dict[str, Any]) -> bool:
    """The training container has terminated with exit code 0 (training pods never restart)."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated") or {}
        if status.get("name") == CONTAINER and terminated.get("exitCode") == 0:
            return True
    return False


def _one_pod_finishes_it(job: dict[str, Any]) -> bool:
    """A single-training or select Job: one succeeded pod completes it (a sweep's trial Job
    needs all of its indexes)."""
    labels = (job.get("metadata") or {}).get("labels") or {}
    completions = (job.get("spec") or {}).get("completions")
    return labels.get(MODE_LABEL) in ("single", "select") and completions in (None, 1)
