"""Operator Prometheus metrics, shared by every controller (served on settings.metrics_port)."""

from __future__ import annotations

import logging

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

logger = logging.getLogger(__name__)

# A private registry: /metrics shows exactly the operator's series (plus process stats),
# whatever imported libraries register on the global default registry.
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

RECONCILES = Counter(
    "modelyard_operator_reconciles_total",
    "Reconcile passes by resource kind and result (ok, waiting, error, invalid; not run: "
    "coalesced with a waiting pass, seen: nothing new since the last pass).",
    ["kind", "result"],
    registry=REGISTRY,
)
RECONCILE_DURATION = Histogram(
    "modelyard_operator_reconcile_duration_seconds",
    "Wall time of one reconcile pass.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
PROMOTIONS = Counter(
    "modelyard_operator_promotions_total",
    "Serving rollouts to a new model version, by model and version transition.",
    ["model", "from_version", "to_version"],
    registry=REGISTRY,
)
REGISTRY_POLL_DURATION = Histogram(
    "modelyard_operator_registry_poll_duration_seconds",
    "Wall time of one MLflow registry poll over all watched models.",
    registry=REGISTRY,
)
REGISTRY_ERRORS = Counter(
    "modelyard_operator_registry_errors_total",
    "Failed MLflow registry requests.",
    registry=REGISTRY,
)
# Every request kube.py sends (kopf's own watches and patches are not included): at steady
# state the write verbs (apply, create, patch, delete) should not move.
KUBE_REQUESTS = Counter(
    "modelyard_operator_kube_requests_total",
    "Kubernetes API requests sent by the controllers, by verb and resource.",
    ["verb", "resource"],
    registry=REGISTRY,
)
APPLIES_SKIPPED = Counter(
    "modelyard_operator_applies_skipped_total",
    "Server-side applies not sent because the live object already matched, by kind.",
    ["kind"],
    registry=REGISTRY,
)
# After a restart this climbs to the number of ModelDeployments as each is first reconciled:
# how long that takes is the operator's full-resync time.
MODELDEPLOYMENTS_TRACKED = Gauge(
    "modelyard_operator_modeldeployments_tracked",
    "ModelDeployments reconciled at least once by this process and not deleted since.",
    registry=REGISTRY,
)
REGISTRY_REQUESTS = Counter(
    "modelyard_operator_registry_requests_total",
    "MLflow registry requests, by call (one snapshot per distinct model per poll).",
    ["call"],
    registry=REGISTRY,
)
WEBHOOK_EVENTS = Counter(
    "modelyard_operator_webhook_events_total",
    "MLflow webhook deliveries by event type and signature verification result.",
    ["event", "verified"],
    registry=REGISTRY,
)
RETRAINS = Counter(
    "modelyard_operator_retrains_total",
    "TrainingRuns created by drift-triggered retraining, per ModelDeployment.",
    ["modeldeployment"],
    registry=REGISTRY,
)
# A counter of terminal transitions (not a gauge of current phases): it survives runs being
# deleted and operator restarts aggregate cleanly with rate()/increase().
TRAININGRUNS = Counter(
    "modelyard_operator_trainingruns_total",
    "TrainingRun phase transitions observed by the operator (Running, Succeeded, Failed).",
    ["phase"],
    registry=REGISTRY,
)

# The outcome of each succeeded run, so dashboards can chart model quality across versions.
TRAININGRUN_METRIC = Gauge(
    "modelyard_operator_trainingrun_metric",
    "Metrics of a succeeded TrainingRun's registered model (from its termination message).",
    ["namespace", "trainingrun", "model", "version", "metric"],
    registry=REGISTRY,
)

# kube-state-metrics does not see custom resources' conditions; the operator exports them.
# One series per current condition (value 1); stale series are removed on change.
MD_CONDITION = Gauge(
    "modelyard_operator_modeldeployment_condition",
    "Current conditions of each ModelDeployment (1 per type/status/reason).",
    ["namespace", "name", "type", "status", "reason"],
    registry=REGISTRY,
)
_md_condition_labels: dict[tuple[str, str], list[tuple[str, str, str, str, str]]] = {}


def export_md_conditions(namespace: str, name: str, conditions: list[dict[str, object]]) -> None:
    """Replace the condition series of one ModelDeployment (empty list: it was deleted)."""
    for labels in _md_condition_labels.pop((namespace, name), []):
        MD_CONDITION.remove(*labels)
    current = [(namespace, name, str(c.get("type", "")), str(c.get("status", "")), str(c.get("reason", "")))
               for c in conditions]
    for labels in current:
        MD_CONDITION.labels(*labels).set(1)
    if current:
        _md_condition_labels[(namespace, name)] = current


def start_metrics_server(port: int, addr: str = "0.0.0.0") -> None:
    """Serve ``/metrics`` for REGISTRY on ``port`` in a daemon thread."""
    start_http_server(port, addr=addr, registry=REGISTRY)
    logger.info("metrics server listening on %s:%d", addr, port)
