"""The two sides of a progressive rollout in the cluster: their pods, their /metrics, and the
verdict of one analysis step.

Pods are read directly by IP (as the drift and load-error readers do), so no Prometheus is
needed. Stable pods are the ModelDeployment's pods without the track label; candidate pods are
the candidate Deployment's. A Shadow candidate also has a Service of its own, which stable pods
mirror to; it lives exactly as long as the candidate.
"""

from __future__ import annotations

import logging
from typing import Any

from modelyard_operator import kube
from modelyard_operator.modeldeployment import shadow
from modelyard_operator.modeldeployment.analysis import (
    Gates,
    MetricSnapshot,
    Verdict,
    evaluate,
    merge,
    parse_metrics,
)
from modelyard_operator.modeldeployment.builders import candidate_name, shadow_name
from modelyard_operator.modeldeployment.models import MD_LABEL, TRACK_LABEL, ModelDeployment
from modelyard_operator.modeldeployment.pods import get_text
from modelyard_operator.modeldeployment.rollout import pod_ready, pod_version

logger = logging.getLogger(__name__)

METRICS_TIMEOUT = 2.0


def stable_selector(md: ModelDeployment) -> str:
    return f"{MD_LABEL}={md.name},!{TRACK_LABEL}"


def candidate_selector(deployment: dict[str, Any]) -> str:
    labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def ready_ips(pods: list[dict[str, Any]], version: str) -> list[str]:
    """IPs of live, ready pods serving ``version`` (pure)."""
    ips = []
    for pod in pods:
        if (pod.get("metadata") or {}).get("deletionTimestamp") or not pod_ready(pod):
            continue
        ip = (pod.get("status") or {}).get("podIP")
        if ip and pod_version(pod) == version:
            ips.append(str(ip))
    return sorted(ips)


def read_metrics(ips: list[str]) -> list[str]:
    """The /metrics texts of the pods at ``ips`` that answered."""
    texts = []
    for ip in ips:
        text = get_text(ip, "/metrics", timeout=METRICS_TIMEOUT)
        if text is None:
            logger.debug("no /metrics from %s", ip)
            continue
        texts.append(text)
    return texts


def snapshot(texts: list[str]) -> MetricSnapshot | None:
    """Summed prediction traffic of some pods' /metrics; None when there are none."""
    return merge(parse_metrics(t) for t in texts) if texts else None


def tally(texts: list[str], version: str) -> shadow.Tally:
    total = shadow.Tally()
    for text in texts:
        total = total + shadow.parse_tally(text, version)
    return total


def measure(md: ModelDeployment, stable_version: str, candidate: dict[str, Any], version: str,
            record: dict[str, Any]) -> Verdict | None:
    """One analysis step's verdict from both sides' pods; None when a side has no readings."""
    stable_texts = read_metrics(ready_ips(stable_pods(md), stable_version))
    stable = snapshot(stable_texts)
    cand = snapshot(read_metrics(ready_ips(candidate_pods(md, candidate), version)))
    if stable is None or cand is None:
        return None
    a = md.spec.rollout.analysis
    if md.spec.rollout.strategy == "Shadow":
        s = md.spec.rollout.shadow
        compared = tally(stable_texts, version).since(shadow.Tally.from_status(record.get("shadowBaseline")))
        return shadow.evaluate(cand, compared, shadow.ShadowGates(
            s.min_agreement, s.min_samples, a.max_error_rate))
    gates = Gates(a.max_error_rate, a.error_rate_margin, a.max_latency_ratio,
                  a.max_divergence, a.min_requests)
    start = float(record.get("stepStartRequests") or 0)
    step_requests = cand.requests - start if cand.requests >= start else cand.requests
    return evaluate(stable, cand, gates, step_requests)


def shadow_baseline(md: ModelDeployment, stable_version: str, version: str) -> dict[str, int]:
    """What stable pods already counted against ``version`` (a retried rollout starts at zero)."""
    texts = read_metrics(ready_ips(stable_pods(md), stable_version))
    return tally(texts, version).as_status()


def stable_pods(md: ModelDeployment) -> list[dict[str, Any]]:
    return kube.list_pods(md.namespace, stable_selector(md))


def candidate_pods(md: ModelDeployment, deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return kube.list_pods(md.namespace, candidate_selector(deployment))


def live_candidate(md: ModelDeployment) -> dict[str, Any] | None:
    found = kube.get("apps/v1", "Deployment", md.namespace, candidate_name(md))
    return found if kube.owned_by(found, md.uid) else None


def delete_candidate(md: ModelDeployment) -> None:
    """Delete the candidate Deployment and the shadow Service, but only ones this
    ModelDeployment owns."""
    if live_candidate(md) is not None:
        kube.delete("apps/v1", "Deployment", md.namespace, candidate_name(md))
    service = kube.get("v1", "Service", md.namespace, shadow_name(md))
    if kube.owned_by(service, md.uid):
        kube.delete("v1", "Service", md.namespace, shadow_name(md))
