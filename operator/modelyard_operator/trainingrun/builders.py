"""Pure builders for the training Jobs of a TrainingRun (no I/O; golden-dict tested)."""

from __future__ import annotations

import json
from typing import Any

from modelyard_operator.placement import GPU_RESOURCE, placement
from modelyard_operator.podsecurity import container_security_context, pod_security_context, with_tmp
from modelyard_operator.settings import Settings
from modelyard_operator.trainingrun.models import COMMON_LABELS, MODE_LABEL, RUN_LABEL, Mode, TrainingRun

CONTAINER = "train"
# contracts.md: 2 = invalid config/hyperparameters, 3 = dataset unavailable. Retrying either
# cannot succeed, so they fail the Job at once instead of burning backoffLimit.
NON_RETRYABLE_EXIT_CODES = [2, 3]
_JOB_SUFFIX: dict[Mode, str] = {"single": "train", "trial": "sweep", "select": "select"}


def job_name(run: TrainingRun, mode: Mode) -> str:
    """Deterministic Job name, so a restarted operator finds the Job instead of duplicating it.

    The CRD caps TrainingRun names at 56 characters, leaving room for the suffix and for the
    pod-name suffixes the Job controller appends within the 63-character label limit.
    """
    return f"{run.name}-{_JOB_SUFFIX[mode]}"


def primary_mode(run: TrainingRun) -> Mode:
    """The first Job a run needs: a single training Job, or the sweep's trial Job."""
    return "trial" if run.is_sweep else "single"


def job_labels(run: TrainingRun, mode: Mode) -> dict[str, str]:
    return {**COMMON_LABELS, RUN_LABEL: run.name, MODE_LABEL: mode}


def training_config(run: TrainingRun, mode: Mode) -> str:
    """MODELYARD_TRAINING_CONFIG: the contract's {mode, run, spec} JSON, keys sorted so the
    Job body is byte-stable across operator restarts."""
    config = {
        "mode": mode,
        "run": {"namespace": run.namespace, "name": run.name, "uid": run.uid},
        "spec": run.raw_spec,
    }
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


def _env(run: TrainingRun, mode: Mode, settings: Settings) -> list[dict[str, Any]]:
    ours = [
        {"name": "MODELYARD_TRAINING_CONFIG", "value": training_config(run, mode)},
        {"name": "MLFLOW_TRACKING_URI", "value": settings.pod_tracking_uri},
    ]
    reserved = {item["name"] for item in ours}
    # User env comes first; names we inject win, and duplicates would be rejected by
    # server-side apply (env is a map keyed by name).
    user = [item for item in run.spec.env if item.get("name") not in reserved]
    return user + ours


def _resources(run: TrainingRun, settings: Settings) -> dict[str, Any]:
    wanted = run.spec.resources
    requests = {
        "cpu": str(wanted.cpu if wanted.cpu is not None else settings.default_cpu),
        "memory": str(wanted.memory if wanted.memory is not None else settings.default_memory),
    }
    # Memory limit = request: an over-committed training pod is OOM-killed mid-fit, which is
    # worse than not being scheduled. CPU stays unlimited to avoid throttling.
    limits: dict[str, Any] = {"memory": requests["memory"]}
    if wanted.gpu > 0:
        limits[GPU_RESOURCE] = wanted.gpu
    return {"requests": requests, "limits": limits}


def _container(run: TrainingRun, mode: Mode, settings: Settings) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": run.spec.image or settings.training_image,
        "imagePullPolicy": "IfNotPresent",
        "env": _env(run, mode, settings),
        "resources": _resources(run, settings),
        # Training writes its JSON result to the termination log; if it dies before that
        # (OOM, import error) the log tail still explains the failure.
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": container_security_context(),
    }
    env_from = []
    if settings.mlflow_credentials_secret:
        # Credentials stay in the Secret; optional so a missing Secret fails in MLflow with a
        # clear auth error rather than leaving the pod stuck in CreateContainerConfigError.
        env_from.append({"secretRef": {"name": settings.mlflow_credentials_secret, "optional": True}})
    if run.spec.dataset.credentials_secret:
        # The dataset's object-store keys (AWS_*), for this container alone: training reads the
        # data, while MLflow artifacts go through the server's proxy with no keys at all. Listed
        # last, so its keys win a clash. Optional for the same reason: without the Secret the
        # store refuses the read and the run fails with DatasetUnavailable, naming the object.
        env_from.append({"secretRef": {"name": run.spec.dataset.credentials_secret, "optional": True}})
    if env_from:
        container["envFrom"] = env_from
    container["volumeMounts"] = with_tmp(run.spec.volumes, run.spec.volume_mounts)[1]
    return container


def _pod_spec(run: TrainingRun, mode: Mode, settings: Settings) -> dict[str, Any]:
    pod: dict[str, Any] = {
        # podFailurePolicy requires Never; retries happen as new pods under backoffLimit.
        "restartPolicy": "Never",
        # Training never calls the Kubernetes API.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(settings),
        "containers": [_container(run, mode, settings)],
        "volumes": with_tmp(run.spec.volumes, run.spec.volume_mounts)[0],
        **placement(run.spec.node_selector, run.spec.tolerations, run.spec.resources.gpu, settings),
    }
    return pod


def _failure_policy() -> dict[str, Any]:
    return {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": CONTAINER,
                    "operator": "In",
                    "values": NON_RETRYABLE_EXIT_CODES,
                },
            },
            # Evictions, preemption and node drains are not the training's fault.
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        ]
    }


def build_job(run: TrainingRun, settings: Settings, mode: Mode | None = None) -> dict[str, Any]:
    """The batch/v1 Job for ``mode`` (default: the run's primary Job).

    ``trial`` is one Indexed Job with completions = trials; each pod picks its parameters from
    JOB_COMPLETION_INDEX. ``select`` runs once after the sweep and registers the best trial.
    The ownerReference is added by kube.create, keeping this function free of API state.
    """
    mode = mode or primary_mode(run)
    labels = job_labels(run, mode)
    spec: dict[str, Any] = {
        "backoffLimit": run.spec.backoff_limit,
        "podFailurePolicy": _failure_policy(),
        "template": {"metadata": {"labels": labels}, "spec": _pod_spec(run, mode, settings)},
    }
    if mode == "trial" and run.spec.sweep is not None:
        spec["completionMode"] = "Indexed"
        spec["completions"] = run.spec.sweep.trials
        spec["parallelism"] = min(run.spec.sweep.parallelism, run.spec.sweep.trials)
    if run.spec.active_deadline_seconds is not None:
        spec["activeDeadlineSeconds"] = run.spec.active_deadline_seconds
    # The sweep Job is kept until the run is deleted: its completion is how a restarted
    # operator knows the trials are done, so only the run's final Job gets the TTL.
    if run.spec.ttl_seconds_after_finished is not None and mode != "trial":
        spec["ttlSecondsAfterFinished"] = run.spec.ttl_seconds_after_finished
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name(run, mode), "namespace": run.namespace, "labels": labels},
        "spec": spec,
    }
