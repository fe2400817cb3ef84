"""Pure computation of a ModelDeployment's status, conditions and transition Events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelyard_operator.conditions import get_condition, set_condition, utc_now
from modelyard_operator.events import Event
from modelyard_operator.modeldeployment.builders import service_url
from modelyard_operator.modeldeployment.models import ModelDeployment
from modelyard_operator.modeldeployment.rollout import RolloutState
from modelyard_operator.registry import RegistryError, ResolvedVersion

READY, RESOLVED, PROGRESSING, DEGRADED, RETRAINING = (
    "Ready", "ModelResolved", "Progressing", "Degraded", "Retraining",
)
# Conditions whose transitions become Events, and which status value is bad news.
_EVENT_CONDITIONS = {READY: "False", RESOLVED: "False", DEGRADED: "True", RETRAINING: None}


@dataclass(frozen=True)
class Resolution:
    """What reconcile decided to serve: ``target`` may be the last good version on error."""

    target: ResolvedVersion | None
    error: RegistryError | None


def _ready_condition(rollout: RolloutState, resolution: Resolution) -> tuple[str, str, str]:
    if rollout.phase == "Missing":
        reason = resolution.error.reason if resolution.error else "Pending"
        message = str(resolution.error) if resolution.error else rollout.message
        return "False", reason, message
    if rollout.available >= rollout.desired:
        serving = ",".join(rollout.serving_versions) or "none"
        return "True", "Serving", (
            f"{rollout.available}/{rollout.desired} replicas available, serving version {serving}"
        )
    if rollout.phase == "LoadFailed":
        return "False", "ModelLoadFailed", rollout.message
    if rollout.phase == "Stalled":
        return "False", "RolloutStalled", rollout.message
    return "False", "Loading", f"{rollout.available}/{rollout.desired} replicas available"


def _progressing_condition(rollout: RolloutState) -> tuple[str, str, str]:
    return {
        "Missing": ("False", "NoDeployment", rollout.message),
        "Progressing": ("True", "RollingOut", rollout.message),
        "Complete": ("False", "RolloutComplete", rollout.message),
        "LoadFailed": ("False", "ModelLoadFailed", rollout.message),
        "Stalled": ("False", "RolloutStalled", rollout.message),
    }[rollout.phase]


def _degraded_condition(rollout: RolloutState, resolution: Resolution) -> tuple[str, str, str]:
    if rollout.phase == "LoadFailed":
        return "True", "ModelLoadFailed", _still_serving(rollout.message, rollout)
    if rollout.phase == "Stalled":
        return "True", "RolloutStalled", _still_serving(rollout.message, rollout)
    if resolution.error is not None:
        message = str(resolution.error)
        if resolution.target is not None:
            message += f"; keeping version {resolution.target.version}"
        return "True", resolution.error.reason, message
    return "False", "AsExpected", "serving the resolved version"


def _still_serving(message: str, rollout: RolloutState) -> str:
    if rollout.serving_versions:
        return f"{message}; still serving version {','.join(rollout.serving_versions)}"
    return message


def retraining_condition(
    last_retrain: dict[str, Any] | None, run: dict[str, Any] | None
) -> tuple[str, str, str] | None:
    """Retraining is True from the trigger until the TrainingRun succeeds or fails."""
    if not last_retrain:
        return None
    name = last_retrain.get("trainingRun", "?")
    if run is None:
        return "False", "TrainingRunGone", f"TrainingRun {name} no longer exists"
    conditions = (run.get("status") or {}).get("conditions")
    for type_ in ("Succeeded", "Failed"):
        found = get_condition(conditions, type_)
        if found is not None and found.get("status") == "True":
            return "False", f"TrainingRun{type_}", f"TrainingRun {name}: {found.get('message', '')}"
    return "True", "TrainingRunInProgress", f"TrainingRun {name} is running"


def compute_status(
    md: ModelDeployment,
    resolution: Resolution,
    rollout: RolloutState,
    retraining: tuple[str, str, str] | None = None,
    now: str | None = None,
) -> dict[str, Any]:
    """The status subresource fields this controller owns (lastRetrain is the drift loop's)."""
    now = now or utc_now()
    old = md.status
    target = resolution.target
    status: dict[str, Any] = {
        "observedGeneration": md.generation,
        "selector": md.spec.model.selector,
        "replicas": rollout.replicas,
        "readyReplicas": rollout.ready,
        "updatedReplicas": rollout.updated,
        "readyText": f"{rollout.ready}/{rollout.desired}",
        "servingVersion": ",".join(rollout.serving_versions) or None,
        "url": service_url(md) if rollout.phase != "Missing" else old.get("url"),
    }
    for key in ("resolvedVersion", "previousVersion", "modelUri", "lastPromotionTime"):
        status[key] = old.get(key)
    if target is not None:
        if old.get("resolvedVersion") not in (None, target.version):
            status["previousVersion"] = old["resolvedVersion"]
            status["lastPromotionTime"] = now
        status["resolvedVersion"] = target.version
        status["modelUri"] = target.model_uri
    conditions: list[dict[str, Any]] = list(old.get("conditions") or [])
    gen = md.generation
    resolved_msg = (
        (RESOLVED, "False", resolution.error.reason, str(resolution.error))
        if resolution.error is not None
        else (RESOLVED, "True", "Resolved",
              f"{md.spec.model.selector} -> version {target.version if target else '?'}")
    )
    for type_, *rest in (
        resolved_msg,
        (READY, *_ready_condition(rollout, resolution)),
        (PROGRESSING, *_progressing_condition(rollout)),
        (DEGRADED, *_degraded_condition(rollout, resolution)),
    ):
        conditions = set_condition(conditions, type_, rest[0], rest[1], rest[2], gen, now)
    if retraining is not None:
        conditions = set_condition(conditions, RETRAINING, *retraining, gen, now)
    status["conditions"] = conditions
    # None values stay: in the merge patch they delete a field that no longer applies.
    return status


_ROLLOUT_REASONS = {"Progressing": "CandidateInAnalysis", "Paused": "RolloutPaused",
                    "Promoting": "Promoting"}


def with_candidate(
    status: dict[str, Any], candidate: dict[str, Any] | None, wanted: str,
    generation: int, now: str | None = None,
) -> dict[str, Any]:
    """Fold a Canary/Shadow rollout into status: its record, Progressing and Degraded.

    Degraded/CandidateRejected holds while the registry still selects the rejected version;
    once it selects another one, there is nothing left to be degraded about.
    """
    if candidate is None:
        return status
    status = {**status, "candidate": candidate}
    conditions = status.get("conditions") or []
    phase, message = candidate.get("phase"), str(candidate.get("message") or "")
    version, stable = candidate.get("version"), status.get("resolvedVersion")
    if phase in _ROLLOUT_REASONS:
        text = f"{candidate.get('strategy')} of version {version} ({candidate.get('stepText')}): {message}"
        conditions = set_condition(conditions, PROGRESSING, "True", _ROLLOUT_REASONS[str(phase)],
                                   text, generation, now)
    elif phase in ("Rejected", "Aborted") and version == wanted:
        reason = "CandidateRejected" if phase == "Rejected" else "RolloutAborted"
        conditions = set_condition(conditions, DEGRADED, "True", reason,
                                   f"version {version}: {message}; still serving version {stable}",
                                   generation, now)
    status["conditions"] = conditions
    return status


def transition_events(old: dict[str, Any], new: dict[str, Any]) -> list[Event]:
    """Events for what changed between two statuses (version moves and condition flips)."""
    events: list[Event] = []
    before, after = old.get("resolvedVersion"), new.get("resolvedVersion")
    if after is not None and before != after:
        reason, verb = ("Promoted", f"from version {before} to") if before else ("Resolved", "to")
        events.append(Event("Normal", reason, f"rolling out {verb} version {after}"))
    for type_, bad in _EVENT_CONDITIONS.items():
        prev = get_condition(old.get("conditions"), type_)
        cur = get_condition(new.get("conditions"), type_)
        if cur is None:
            continue
        key = (cur.get("status"), cur.get("reason"))
        if prev is not None and (prev.get("status"), prev.get("reason")) == key:
            continue
        if prev is None and cur.get("status") != bad:
            continue  # first good state: nothing worth telling
        kind = "Warning" if cur.get("status") == bad or "Failed" in str(key[1]) else "Normal"
        events.append(Event(kind, str(cur.get("reason")), str(cur.get("message", ""))))
    return events
