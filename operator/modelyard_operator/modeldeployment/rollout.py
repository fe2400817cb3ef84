"""Pure analysis of a serving rollout from the Deployment and its pods.

The question answered: is the target version serving at full capacity, still coming up, or
stuck — and if stuck, is it the model (ModelLoadFailed) or the cluster (RolloutStalled)?
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from modelyard_operator.modeldeployment.models import VERSION_LABEL

Phase = Literal["Missing", "Progressing", "Complete", "LoadFailed", "Stalled"]

# Waiting reasons that are the cluster's or the image's fault, not the model's.
_STALL_REASONS = frozenset({
    "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError",
    "CreateContainerError", "RunContainerError",
})


@dataclass(frozen=True)
class RolloutState:
    phase: Phase
    message: str
    desired: int = 0
    replicas: int = 0
    ready: int = 0
    available: int = 0
    updated: int = 0
    serving_versions: list[str] = field(default_factory=list)


def _int(value: Any) -> int:
    return int(value or 0)


def pod_version(pod: dict[str, Any]) -> str | None:
    return ((pod.get("metadata") or {}).get("labels") or {}).get(VERSION_LABEL)


def pod_ready(pod: dict[str, Any]) -> bool:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


def _live(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]


def serving_versions(pods: list[dict[str, Any]]) -> list[str]:
    """Versions that ready pods serve right now, oldest first."""
    versions = {v for p in _live(pods) if pod_ready(p) and (v := pod_version(p))}
    return sorted(versions, key=lambda v: int(v) if v.isdigit() else -1)


def _container_failure(pod: dict[str, Any]) -> tuple[Phase, str] | None:
    """A failure visible in the pod's container statuses, classified."""
    name = (pod.get("metadata") or {}).get("name", "?")
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        state = status.get("state") or {}
        waiting = state.get("waiting") or {}
        if waiting.get("reason") in _STALL_REASONS:
            return "Stalled", f"pod {name}: {waiting.get('reason')}: {waiting.get('message', '')}"
        last = (status.get("lastState") or {}).get("terminated") or {}
        terminated = state.get("terminated") or last
        if (terminated or _int(status.get("restartCount")) > 0) and not status.get("ready"):
            detail = terminated.get("message") or terminated.get("reason") or "restarting"
            return "LoadFailed", f"pod {name} exited (code {terminated.get('exitCode')}): {detail}"
    return None


def _unschedulable(pod: dict[str, Any]) -> str | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return str(condition.get("message") or condition.get("reason") or "unschedulable")
    return None


def _deadline_exceeded(deployment: dict[str, Any]) -> bool:
    for condition in (deployment.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Progressing":
            return bool(condition.get("reason") == "ProgressDeadlineExceeded")
    return False


def analyse(
    deployment: dict[str, Any] | None,
    pods: list[dict[str, Any]],
    version: str | None,
    load_errors: dict[str, str] | None = None,
) -> RolloutState:
    """Classify the rollout of ``version`` (the version the pod template should pin)."""
    if deployment is None:
        return RolloutState("Missing", "no serving Deployment yet")
    spec, st = deployment.get("spec") or {}, deployment.get("status") or {}
    base = RolloutState(
        "Progressing", "", desired=_int(spec.get("replicas", 1)),
        replicas=_int(st.get("replicas")), ready=_int(st.get("readyReplicas")),
        available=_int(st.get("availableReplicas")), updated=_int(st.get("updatedReplicas")),
        serving_versions=serving_versions(pods),
    )
    phase, message = _classify(deployment, base, pods, version, load_errors or {})
    return replace(base, phase=phase, message=message)


def _classify(
    deployment: dict[str, Any], counts: RolloutState, pods: list[dict[str, Any]],
    version: str | None, load_errors: dict[str, str],
) -> tuple[Phase, str]:
    new_pods = [p for p in _live(pods) if pod_version(p) == version]
    failures = [f for p in new_pods if not pod_ready(p) and (f := _container_failure(p))]
    if load_errors:
        pod, error = sorted(load_errors.items())[0]
        return "LoadFailed", f"pod {pod}: {error}"
    if failures:
        return failures[0]
    if _deadline_exceeded(deployment):
        pending = [m for p in new_pods if (m := _unschedulable(p))]
        if pending or not new_pods:
            reason = pending[0] if pending else "no pods created"
            return "Stalled", f"version {version} pods cannot be scheduled: {reason}"
        deadline = (deployment.get("spec") or {}).get("progressDeadlineSeconds")
        return "LoadFailed", (
            f"version {version} did not become ready within progressDeadlineSeconds ({deadline}s)"
        )
    generation_seen = _int((deployment.get("status") or {}).get("observedGeneration")) >= _int(
        (deployment.get("metadata") or {}).get("generation")
    )
    if (
        generation_seen and counts.updated >= counts.desired
        and counts.replicas <= counts.updated and counts.available >= counts.updated
    ):
        return "Complete", f"version {version} serving"
    return "Progressing", (
        f"rolling out version {version}: {counts.updated}/{counts.desired} updated, "
        f"{counts.available} available"
    )
