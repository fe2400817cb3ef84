"""The two sides of a progressive rollout in the cluster: their pods and their /metrics.

Pods are read directly by IP (as the drift and load-error readers do), so no Prometheus is
needed. Stable pods are the ModelDeployment's pods without the track label; candidate pods are
the candidate Deployment's.
"""

from __future__ import annotations

import logging
from typing import Any

from modelyard_operator import kube
from modelyard_operator.modeldeployment.analysis import MetricSnapshot, merge, parse_metrics
from modelyard_operator.modeldeployment.builders import candidate_name
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


def read_snapshot(ips: list[str]) -> MetricSnapshot | None:
    """Summed /metrics of the pods at ``ips``; None when none of them answered."""
    snapshots = []
    for ip in ips:
        text = get_text(ip, "/metrics", timeout=METRICS_TIMEOUT)
        if text is None:
            logger.debug("no /metrics from %s", ip)
            continue
        snapshots.append(parse_metrics(text))
    return merge(snapshots) if snapshots else None


def stable_pods(md: ModelDeployment) -> list[dict[str, Any]]:
    return kube.list_pods(md.namespace, stable_selector(md))


def candidate_pods(md: ModelDeployment, deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return kube.list_pods(md.namespace, candidate_selector(deployment))


def live_candidate(md: ModelDeployment) -> dict[str, Any] | None:
    found = kube.get("apps/v1", "Deployment", md.namespace, candidate_name(md))
    return found if kube.owned_by(found, md.uid) else None


def delete_candidate(md: ModelDeployment) -> None:
    """Delete the candidate Deployment, but only one this ModelDeployment owns."""
    if live_candidate(md) is not None:
        kube.delete("apps/v1", "Deployment", md.namespace, candidate_name(md))
