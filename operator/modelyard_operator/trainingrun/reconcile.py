"""Level-based TrainingRun reconcile: observed Jobs and pods against the desired Jobs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from modelyard_operator import API_VERSION, kube
from modelyard_operator.conditions import set_condition, status_changed, utc_now
from modelyard_operator.events import Event, Outcome, post
from modelyard_operator.metrics import RECONCILE_DURATION, RECONCILES, TRAININGRUN_METRIC, TRAININGRUNS
from modelyard_operator.policy import Policy, describe, trainingrun_violations
from modelyard_operator.settings import Settings
from modelyard_operator.trainingrun.builders import build_job, job_name, primary_mode
from modelyard_operator.trainingrun.models import (
    KIND,
    MODE_LABEL,
    RUN_LABEL,
    TERMINAL_PHASES,
    InvalidSpecError,
    Mode,
    TrainingRun,
    parse_run,
)
from modelyard_operator.trainingrun.promotion import promotion_event
from modelyard_operator.trainingrun.status import job_status, job_view, owned_pods, trial_run_ids


class JobConflictError(RuntimeError):
    """A Job with the run's deterministic name exists but is not this run's."""


def _ensure_job(run: TrainingRun, settings: Settings, mode: Mode) -> tuple[dict[str, Any], bool]:
    """The run's Job for ``mode``, creating it when absent; True when created now.

    Create-or-get rather than apply: a Job's pod template is immutable, and the deterministic
    name makes a concurrent or post-restart second attempt return the existing Job (409).
    """
    existing = kube.get("batch/v1", "Job", run.namespace, job_name(run, mode))
    if existing is None:
        existing, created = kube.create(build_job(run, settings, mode), owner=run.body), True
    else:
        created = False
    if not kube.owned_by(existing, run.uid):
        # e.g. a deleted run's Job still being garbage-collected when a same-named run is
        # created: mirroring it would report the old run's outcome as ours.
        raise JobConflictError(f"Job {job_name(run, mode)} belongs to another object; "
                               "waiting for it to be deleted")
    return existing, created


def _pods(run: TrainingRun, mode: Mode) -> list[dict[str, Any]]:
    return kube.list_pods(run.namespace, f"{RUN_LABEL}={run.name},{MODE_LABEL}={mode}")


def phase_events(old: dict[str, Any], new: dict[str, Any], run: TrainingRun) -> list[Event]:
    """Events for phase transitions (pure): success, promotion, failure."""
    if old.get("phase") == new.get("phase"):
        return []
    if new["phase"] == "Succeeded":
        events: list[Event] = [Event("Normal", "Succeeded", new.get("message", ""))]
        promotion = promotion_event(run, new)
        if promotion is not None:
            events.append(promotion)
        return events
    if new["phase"] == "Failed":
        failed = next(c for c in new["conditions"] if c["type"] == "Failed")
        return [Event("Warning", "Failed", f"{failed['reason']}: {failed['message']}")]
    return []


def reconcile(run: TrainingRun, settings: Settings, now: str | None = None) -> Outcome:
    """Bring the run's Jobs to what its spec asks for and mirror them into a status.

    A finished run is left alone even if its Job is gone (TTL): recreating it would retrain.
    """
    if run.status.get("phase") in TERMINAL_PHASES:
        return Outcome(run.status, finished=True, body=run.body)
    now = now or utc_now()
    events: list[Event] = []
    mode = primary_mode(run)
    job, created = _ensure_job(run, settings, mode)
    if created:
        events.append(Event("Normal", "Started", f"created training Job {job_name(run, mode)}"))
    stage, trial_ids = "", None
    if run.spec.sweep is not None:
        trials = run.spec.sweep.trials
        if job_view(job).state == "complete":
            trial_ids = trial_run_ids(owned_pods(_pods(run, "trial"), job))
            trial_ids = trial_ids or list(run.status.get("trialRunIds") or [])
            job, created = _ensure_job(run, settings, "select")
            mode, stage = "select", f"selecting the best of {trials} trials"
            if created:
                events.append(Event("Normal", "SelectingBest", f"{stage} (Job {job_name(run, mode)})"))
        else:
            done = int((job.get("status") or {}).get("succeeded") or 0)
            stage = f"sweep: {done}/{trials} trials completed"
    status = job_status(run, job, _pods(run, mode), now, stage, trial_ids, settings.ui_base_url)
    events += phase_events(run.status, status, run)
    return Outcome(status, events, run.body, finished=status["phase"] in TERMINAL_PHASES)


def invalid_spec_status(body: dict[str, Any], error: InvalidSpecError) -> dict[str, Any]:
    """Failed/InvalidSpec status for a spec the controller cannot run."""
    generation = (body.get("metadata") or {}).get("generation")
    conditions = (body.get("status") or {}).get("conditions")
    for type_, value in (("Succeeded", "False"), ("Failed", "True")):
        conditions = set_condition(conditions, type_, value, error.reason, str(error),
                                   generation)
    return {"phase": "Failed", "observedGeneration": generation, "message": str(error),
            "conditions": conditions}


_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


@contextmanager
def _run_lock(namespace: str, name: str) -> Iterator[None]:
    # The Job watch and the run's own handlers run in different kopf workers; serialising per
    # run keeps one transition from being seen (and announced) twice.
    with _locks_guard:
        lock = _locks.setdefault((namespace, name), threading.Lock())
    with lock:
        yield


def check_policy(run: TrainingRun, settings: Settings) -> None:
    """Refuse a run that breaks the tenant policy (for clusters without the admission policy).

    Checked before the first Job only (no phase yet): a run whose Job already exists keeps
    going after a policy change, since refusing it now would only hide how that Job ends.
    """
    if run.status.get("phase"):
        return
    violations = trainingrun_violations(run.raw_spec, Policy.from_settings(settings))
    if violations:
        raise InvalidSpecError(describe(violations), reason="PolicyViolation")


def _refuse(body: dict[str, Any], error: InvalidSpecError) -> None:
    """Failed condition plus a Warning Event, once per change (kopf stops retrying after)."""
    if _write_status(body, body.get("status") or {}, invalid_spec_status(body, error)):
        post(body, [Event("Warning", error.reason, str(error))])


def _write_status(run_body: dict[str, Any], old: dict[str, Any], new: dict[str, Any]) -> bool:
    changed = status_changed(old, new)
    if changed:
        meta = run_body["metadata"]
        kube.patch_status(API_VERSION, KIND, meta["namespace"], meta["name"], new)
        if old.get("phase") != new.get("phase") and new.get("phase"):
            TRAININGRUNS.labels(phase=new["phase"]).inc()
    if new.get("phase") == "Succeeded":
        _export_metrics(run_body, new)
    return changed


def _export_metrics(run_body: dict[str, Any], status: dict[str, Any]) -> None:
    meta = run_body["metadata"]
    model = ((run_body.get("spec") or {}).get("model") or {}).get("name", "")
    for metric, value in (status.get("metrics") or {}).items():
        if isinstance(value, int | float):
            TRAININGRUN_METRIC.labels(meta["namespace"], meta["name"], model,
                                      str(status.get("modelVersion") or ""), metric).set(value)


def sync_run(namespace: str, name: str, settings: Settings) -> Outcome | None:
    """Read the run fresh, reconcile it and write its status if it changed.

    Returns None when the run is gone or being deleted. Raises InvalidSpecError after
    recording it in status, and lets API errors propagate for the caller to retry.
    """
    started = time.monotonic()
    result = "error"
    try:
        with _run_lock(namespace, name):
            body = kube.get(API_VERSION, KIND, namespace, name)
            if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
                result = "gone"
                return None
            try:
                run = parse_run(body)
                check_policy(run, settings)
            except InvalidSpecError as error:
                result = "invalid"
                _refuse(body, error)
                raise
            outcome = reconcile(run, settings)
            _write_status(run.body, run.status, outcome.status)
            result = "ok" if outcome.finished else "waiting"
            return outcome
    finally:
        if result in ("ok", "gone"):
            # Finished or deleted runs need no serialisation any more; keep the map small.
            with _locks_guard:
                _locks.pop((namespace, name), None)
        RECONCILES.labels(kind=KIND, result=result).inc()
        RECONCILE_DURATION.labels(kind=KIND).observe(time.monotonic() - started)
