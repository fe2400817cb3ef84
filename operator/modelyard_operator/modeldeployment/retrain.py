"""Drift-triggered retraining: turn spec.retrain + a drift reading into one TrainingRun.

Idempotence across restarts comes from the name: the n-th trigger of an MD always creates
``<md>-retrain-<n>`` where n follows status.lastRetrain. If the operator dies after creating
the run but before recording it, the next attempt computes the same name, gets the existing
run back (create answers 409) and records that one instead of creating a second.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any

from modelyard_operator import API_VERSION, kube, metrics
from modelyard_operator.conditions import parse_time
from modelyard_operator.events import Event
from modelyard_operator.modeldeployment.drift import DriftReading, decide, read_drift
from modelyard_operator.modeldeployment.models import MD_PLURAL, RETRAIN_LABEL, ModelDeployment
from modelyard_operator.modeldeployment.status import retraining_condition

logger = logging.getLogger(__name__)

TRAININGRUN_KIND = "TrainingRun"
TRIGGER_ANNOTATION = "modelyard.io/retrain-trigger-time"
SCORE_ANNOTATION = "modelyard.io/drift-score"
MAX_NAME = 56  # TrainingRun caps its name so the Job names derived from it fit in 63
_INDEX = re.compile(r"-retrain-(\d+)$")


def retrain_index(last_retrain: dict[str, Any] | None) -> int:
    """Index of the last recorded trigger (0 when none)."""
    match = _INDEX.search(str((last_retrain or {}).get("trainingRun", "")))
    return int(match.group(1)) if match else 0


def retrain_name(md_name: str, index: int) -> str:
    suffix = f"-retrain-{index}"
    return md_name[: MAX_NAME - len(suffix)].rstrip("-.") + suffix


def build_training_run(
    md: ModelDeployment, index: int, reading: DriftReading, now: str
) -> dict[str, Any]:
    """The TrainingRun for trigger ``index`` (pure; the owner reference is added by kube)."""
    assert md.spec.retrain is not None
    return {
        "apiVersion": API_VERSION,
        "kind": TRAININGRUN_KIND,
        "metadata": {
            "name": retrain_name(md.name, index),
            "namespace": md.namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "modelyard",
                "app.kubernetes.io/part-of": "modelyard",
                RETRAIN_LABEL: md.name,
            },
            "annotations": {TRIGGER_ANNOTATION: now, SCORE_ANNOTATION: f"{reading.score:.6f}"},
        },
        "spec": dict(md.spec.retrain.training_run_template),
    }


def _running(md: ModelDeployment) -> bool:
    last = md.status.get("lastRetrain")
    if not last or not last.get("trainingRun"):
        return False
    run = kube.get(API_VERSION, TRAININGRUN_KIND, md.namespace, str(last["trainingRun"]))
    condition = retraining_condition(last, run)
    return condition is not None and condition[0] == "True"


def check_retrain(md: ModelDeployment, now: dt.datetime | None = None) -> Event | None:
    """Read drift and, when the policy says so, create the next retraining TrainingRun.

    Returns the Event to post when a run was triggered (the caller then reconciles, which
    sets the Retraining condition from status.lastRetrain).
    """
    policy = md.spec.retrain
    if policy is None:
        return None
    now = now or dt.datetime.now(dt.UTC).replace(microsecond=0)
    last = md.status.get("lastRetrain")
    reading = read_drift(md.namespace, md.name, md.status.get("resolvedVersion"))
    decision = decide(
        reading, policy.drift_threshold, policy.min_samples, policy.cooldown_seconds,
        parse_time((last or {}).get("time")), _running(md), now,
    )
    logger.debug("retrain decision for %s/%s: %s", *md.key, decision.reason)
    if not decision.trigger or reading is None:
        return None
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    run = build_training_run(md, retrain_index(last) + 1, reading, stamp)
    created = kube.create(run, owner=md.body)
    meta = created.get("metadata") or {}
    # A 409 hands back a run created by an earlier attempt: record it, don't count it twice.
    fresh = (meta.get("annotations") or {}).get(TRIGGER_ANNOTATION) == stamp
    recorded_time = stamp if fresh else (meta.get("annotations") or {}).get(
        TRIGGER_ANNOTATION, stamp)
    record = {"time": recorded_time, "score": reading.score, "samples": reading.samples,
              "trainingRun": meta.get("name", run["metadata"]["name"])}
    kube.patch_status(API_VERSION, MD_PLURAL, md.namespace, md.name, {"lastRetrain": record})
    if fresh:
        metrics.RETRAINS.labels(modeldeployment=f"{md.namespace}/{md.name}").inc()
    logger.info("retraining %s/%s: %s -> TrainingRun %s", *md.key, decision.reason,
                record["trainingRun"])
    return Event("Normal", "RetrainTriggered",
                 f"{decision.reason}: created TrainingRun {record['trainingRun']}")
