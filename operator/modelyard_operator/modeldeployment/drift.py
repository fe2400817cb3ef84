"""Drift readings from serving pods and the (pure) retrain trigger decision.

Each serving pod keeps its own sliding window and answers ``GET /drift``. The operator finds
the pods the way the Service routes to them (its EndpointSlices, ready endpoints only) and
combines their answers, weighting each pod's score by its window size.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from modelyard_operator import kube
from modelyard_operator.modeldeployment.pods import get_json

logger = logging.getLogger(__name__)

DRIFT_TIMEOUT = 2.0


@dataclass(frozen=True)
class DriftReading:
    score: float
    samples: int
    pods: int
    version: str | None


@dataclass(frozen=True)
class Decision:
    trigger: bool
    reason: str


def aggregate(answers: list[Any], version: str | None) -> DriftReading | None:
    """Window-weighted score over pods serving ``version`` (others are mid-rollout noise)."""
    usable = []
    for answer in answers:
        if not isinstance(answer, dict) or not answer.get("available"):
            continue
        if version is not None and str(answer.get("referenceVersion")) != version:
            continue
        score, size = answer.get("score"), answer.get("windowSize")
        if isinstance(score, int | float) and isinstance(size, int) and size >= 0:
            usable.append((float(score), size))
    if not usable:
        return None
    samples = sum(size for _, size in usable)
    if samples == 0:
        return DriftReading(0.0, 0, len(usable), version)
    score = sum(s * size for s, size in usable) / samples
    return DriftReading(round(score, 6), samples, len(usable), version)


def decide(
    reading: DriftReading | None,
    threshold: float,
    min_samples: int,
    cooldown_seconds: float,
    last_retrain_time: dt.datetime | None,
    retrain_running: bool,
    now: dt.datetime,
) -> Decision:
    """Retrain only on enough evidence, once per cooldown, never while a retrain runs."""
    if reading is None:
        return Decision(False, "no drift reading available")
    if retrain_running:
        return Decision(False, "a retraining run is still in progress")
    if reading.samples < min_samples:
        return Decision(False, f"{reading.samples} samples < minSamples {min_samples}")
    if reading.score < threshold:
        return Decision(False, f"drift score {reading.score:.4f} < threshold {threshold}")
    if last_retrain_time is not None:
        elapsed = (now - last_retrain_time).total_seconds()
        if elapsed < cooldown_seconds:
            return Decision(
                False, f"cooldown: last retrain {elapsed:.0f}s ago < {cooldown_seconds:.0f}s"
            )
    return Decision(
        True, f"drift score {reading.score:.4f} >= {threshold} over {reading.samples} samples"
    )


def endpoint_ips(namespace: str, service: str) -> list[str]:
    """Ready endpoint addresses of ``service`` from its EndpointSlices."""
    slices = kube.list_("discovery.k8s.io/v1", "EndpointSlice", namespace,
                        f"kubernetes.io/service-name={service}")
    ips: list[str] = []
    for item in slices:
        for endpoint in item.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            ips.extend(str(a) for a in endpoint.get("addresses") or [])
    return sorted(set(ips))


def read_drift(namespace: str, service: str, version: str | None) -> DriftReading | None:
    """Combined drift of the Service's ready pods; None when no pod has a usable answer."""
    answers = []
    for ip in endpoint_ips(namespace, service):
        status, body = get_json(ip, "/drift", timeout=DRIFT_TIMEOUT)
        if status == 200:
            answers.append(body)
        else:
            logger.debug("drift read from %s for %s/%s: HTTP %s", ip, namespace, service, status)
    return aggregate(answers, version)
