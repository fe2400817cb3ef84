"""Drift readings from serving pods and the (pure) retrain trigger decision.

Each serving pod keeps its own sliding window and exports it as gauges on ``/metrics``
(score, window size, each labelled with the model version). ``/metrics`` stays open when the
server has an API key, which the operator does not hold (it cannot read Secrets), whereas
``/drift`` does not. The operator finds the pods the way the Service routes to them (its
EndpointSlices, ready endpoints only) and combines their gauges, weighting each pod's score by
its window size.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from modelyard_operator import kube
from modelyard_operator.modeldeployment.analysis import PREFIX
from modelyard_operator.modeldeployment.pods import get_text

logger = logging.getLogger(__name__)

DRIFT_TIMEOUT = 2.0
_SCORE = f"{PREFIX}_drift_score"
_WINDOW = f"{PREFIX}_drift_window_size"


@dataclass(frozen=True)
class PodDrift:
    """One pod's drift gauges."""

    score: float
    samples: int
    version: str | None


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


def parse_drift(text: str) -> PodDrift | None:
    """The drift gauges in one pod's /metrics text; None when it has none (no reference profile,
    drift tracking off, model not loaded yet) or the text is not Prometheus exposition."""
    found: dict[str, tuple[float, str | None]] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in (_SCORE, _WINDOW):
                    found[sample.name] = (sample.value, sample.labels.get("model_version"))
    except ValueError as exc:
        logger.debug("unparsable /metrics: %s", exc)
        return None
    if _SCORE not in found or _WINDOW not in found:
        return None
    (score, version), (window, _) = found[_SCORE], found[_WINDOW]
    if not math.isfinite(score) or not math.isfinite(window) or window < 0:
        return None
    return PodDrift(score, int(window), version)


def aggregate(pods: list[PodDrift | None], version: str | None) -> DriftReading | None:
    """Window-weighted score over pods serving ``version`` (others are mid-rollout noise)."""
    usable = [p for p in pods if p is not None and (version is None or p.version == version)]
    if not usable:
        return None
    samples = sum(p.samples for p in usable)
    if samples == 0:
        return DriftReading(0.0, 0, len(usable), version)
    score = sum(p.score * p.samples for p in usable) / samples
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
    """Combined drift of the Service's ready pods; None when no pod has usable gauges."""
    pods: list[PodDrift | None] = []
    for ip in endpoint_ips(namespace, service):
        text = get_text(ip, "/metrics", timeout=DRIFT_TIMEOUT)
        if text is None:
            logger.debug("no /metrics from %s for %s/%s", ip, namespace, service)
            continue
        pods.append(parse_drift(text))
    return aggregate(pods, version)
