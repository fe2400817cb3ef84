"""Pure builders for a ModelDeployment's children: no I/O, unit-tested with golden dicts."""

from __future__ import annotations

from typing import Any

from modelyard_operator.modeldeployment.models import (
    MD_LABEL,
    SHADOW_LABEL,
    TRACK_LABEL,
    VERSION_LABEL,
    ModelDeployment,
)
from modelyard_operator.placement import GPU_RESOURCE, placement
from modelyard_operator.podsecurity import container_security_context, pod_security_context, with_tmp
from modelyard_operator.registry import ResolvedVersion
from modelyard_operator.settings import Settings

CONTAINER_NAME = "server"
CONTAINER_PORT = 8080
SERVICE_PORT = 80
# The model URI/name/version define what this Deployment serves; letting spec.env override
# them would make status lie about the served version (the CRD rejects them too).
RESERVED_ENV = ("MODELYARD_MODEL_URI", "MODELYARD_MODEL_NAME", "MODELYARD_MODEL_VERSION")
DEFAULT_CPU = "250m"
DEFAULT_MEMORY = "512Mi"
PRESTOP_SECONDS = 3


def common_labels(md: ModelDeployment) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": "modelyard",
        "app.kubernetes.io/part-of": "modelyard",
        "app.kubernetes.io/component": "serving",
        "app.kubernetes.io/instance": md.name,
        MD_LABEL: md.name,
    }


def selector_labels(md: ModelDeployment) -> dict[str, str]:
    return {MD_LABEL: md.name}


def service_url(md: ModelDeployment) -> str:
    return f"http://{md.name}.{md.namespace}.svc.cluster.local:{SERVICE_PORT}"


def _metadata(md: ModelDeployment, extra_labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "name": md.name,
        "namespace": md.namespace,
        "labels": {**common_labels(md), **(extra_labels or {})},
    }


def _env(md: ModelDeployment, version: ResolvedVersion, settings: Settings) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "MODELYARD_MODEL_URI", "value": version.model_uri},
        {"name": "MODELYARD_MODEL_NAME", "value": version.name},
        {"name": "MODELYARD_MODEL_VERSION", "value": version.version},
        {"name": "MLFLOW_TRACKING_URI", "value": settings.pod_tracking_uri},
        # MLflow caches downloads under $HOME; the root filesystem is read-only.
        {"name": "HOME", "value": "/tmp"},
    ]
    if md.spec.auth is not None:
        ref = md.spec.auth.api_key_secret_ref
        env.append({
            "name": "MODELYARD_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}},
        })
    env.extend(_shadow_env(md))
    env.extend(_batching_env(md))
    user = [e for e in md.spec.env if e.get("name") not in RESERVED_ENV]
    user_names = {e.get("name") for e in user}
    # User entries replace ours by name: SSA keys env by name and rejects duplicates.
    return [e for e in env if e["name"] not in user_names] + user


def _batching_env(md: ModelDeployment) -> list[dict[str, Any]]:
    """Only what spec.batching sets: unset fields leave the pod template (and the server's
    defaults) as they were, so adding the field to the schema rolled no existing pod."""
    batching = md.spec.batching
    env = []
    if batching.max_batch_size is not None:
        env.append({"name": "MODELYARD_MAX_BATCH_SIZE", "value": str(batching.max_batch_size)})
    if batching.max_delay_milliseconds is not None:
        env.append({"name": "MODELYARD_MAX_BATCH_DELAY_MS", "value": str(batching.max_delay_milliseconds)})
    return env


def shadow_name(md: ModelDeployment) -> str:
    return f"{md.name}-shadow"


def _shadow_env(md: ModelDeployment) -> list[dict[str, Any]]:
    """With the Shadow strategy, stable pods always know where a shadow candidate would be.

    The Service behind that name exists only while a shadow candidate runs, so a rollout
    starts and ends without restarting stable pods; the server backs off while it is absent.
    """
    if md.spec.rollout.strategy != "Shadow":
        return []
    shadow = md.spec.rollout.shadow
    return [
        {"name": "MODELYARD_SHADOW_URL",
         "value": f"http://{shadow_name(md)}.{md.namespace}.svc.cluster.local:{SERVICE_PORT}"},
        {"name": "MODELYARD_SHADOW_PERCENT", "value": f"{shadow.percent:g}"},
        {"name": "MODELYARD_SHADOW_TOLERANCE", "value": f"{shadow.tolerance:g}"},
    ]


def _resources(md: ModelDeployment) -> dict[str, Any]:
    res = md.spec.resources
    cpu = str(res.cpu) if res.cpu is not None else DEFAULT_CPU
    memory = res.memory or DEFAULT_MEMORY
    # Memory limit = request: an over-committed model server is OOM-killed mid-request.
    # No CPU limit: throttling inflates tail latency and the HPA scales on requests.
    limits: dict[str, Any] = {"memory": memory}
    if res.gpu > 0:
        limits[GPU_RESOURCE] = res.gpu
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": limits}


def _scheduling(md: ModelDeployment, settings: Settings) -> dict[str, Any]:
    spec = md.spec
    result = placement(spec.node_selector, spec.tolerations, spec.resources.gpu, settings)
    if spec.affinity:
        result["affinity"] = spec.affinity
    return result


def _container(md: ModelDeployment, version: ResolvedVersion, settings: Settings) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": md.spec.image or settings.serving_image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        "env": _env(md, version, settings),
        "resources": _resources(md),
        # Readiness is the safety gate: /readyz is 503 until the model is loaded, so a
        # version that cannot load never receives traffic. Probed every second (/readyz only
        # reads a field), so Ready follows the load within a second; four misses in a row, the
        # same ~4 s as before, take a busy pod out of the Service.
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": 1, "timeoutSeconds": 2, "failureThreshold": 4,
        },
        # Liveness only asks "is the process alive" and is lenient, so a slow model download
        # is never mistaken for a hang and restarted in a loop.
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "initialDelaySeconds": 30, "periodSeconds": 10, "timeoutSeconds": 5,
            "failureThreshold": 6,
        },
        "securityContext": container_security_context(),
        "volumeMounts": with_tmp([], [])[1],
        # A terminating pod keeps answering for a few seconds while its endpoint is withdrawn,
        # so clients (and kube-proxy rules) still holding the old endpoint list see no error:
        # a rolling update replaces pods one by one, Canary/Shadow delete whole sides at once.
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SECONDS}}},
    }
    if settings.mlflow_credentials_secret:
        container["envFrom"] = [{"secretRef": {"name": settings.mlflow_credentials_secret}}]
    return container


def candidate_name(md: ModelDeployment) -> str:
    return f"{md.name}-candidate"


def build_deployment(
    md: ModelDeployment, version: ResolvedVersion, settings: Settings,
    replicas: int | None = None,
) -> dict[str, Any]:
    """The serving Deployment; its pod template pins ``version`` so a promotion is a rollout.

    ``replicas`` overrides spec.replicas while a canary holds part of the traffic.
    """
    spec = md.spec
    pod_labels = {**common_labels(md), VERSION_LABEL: version.version}
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(md)},
        "revisionHistoryLimit": 3,
        "progressDeadlineSeconds": spec.rollout.progress_deadline_seconds,
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {
                "maxSurge": spec.rollout.max_surge,
                "maxUnavailable": spec.rollout.max_unavailable,
            },
        },
        "template": {
            "metadata": {"labels": pod_labels},
            "spec": {
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "securityContext": pod_security_context(settings),
                "containers": [_container(md, version, settings)],
                "volumes": with_tmp([], [])[0],
                **_scheduling(md, settings),
            },
        },
    }
    # With an HPA the replica count belongs to it; setting it here would fight every scale.
    if spec.autoscaling is None:
        deployment_spec["replicas"] = spec.replicas if replicas is None else replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(md),
        "spec": deployment_spec,
    }


def build_candidate_deployment(
    md: ModelDeployment, version: ResolvedVersion, settings: Settings, replicas: int,
    behind_service: bool = True,
) -> dict[str, Any]:
    """The candidate of a Canary (behind the Service) or Shadow (not behind it) rollout.

    Its pods carry the track label, which the stable Deployment's pods never do, so each
    side can be selected alone; a shadow's pods lack the Service's selector label entirely.
    """
    deployment = build_deployment(md, version, settings)
    spec = deployment["spec"]
    track = {TRACK_LABEL: "candidate"}
    labels = {**spec["template"]["metadata"]["labels"], **track}
    if not behind_service:
        labels.pop(MD_LABEL)
        labels[SHADOW_LABEL] = md.name
    selector = {k: v for k, v in labels.items() if k in (MD_LABEL, SHADOW_LABEL)}
    spec["template"]["metadata"]["labels"] = labels
    spec["selector"] = {"matchLabels": {**selector, **track}}
    spec["replicas"] = replicas  # the HPA scales stable only; the candidate's size is ours
    container = spec["template"]["spec"]["containers"][0]
    # The candidate never mirrors: only stable pods compare against it.
    container["env"] = [e for e in container["env"] if not e["name"].startswith("MODELYARD_SHADOW_")]
    deployment["metadata"] = {**_metadata(md, track), "name": candidate_name(md)}
    return deployment


def build_shadow_service(md: ModelDeployment) -> dict[str, Any]:
    """The address stable pods mirror to: the shadow candidate's pods, and only them."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {**_metadata(md, {TRACK_LABEL: "candidate"}), "name": shadow_name(md)},
        "spec": {
            "type": "ClusterIP",
            "selector": {SHADOW_LABEL: md.name, TRACK_LABEL: "candidate"},
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http",
                       "protocol": "TCP"}],
        },
    }


def build_service(md: ModelDeployment) -> dict[str, Any]:
    """ClusterIP Service on port 80; status.url points here."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(md),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(md),
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http",
                       "protocol": "TCP"}],
        },
    }


def build_hpa(md: ModelDeployment) -> dict[str, Any] | None:
    """autoscaling/v2 HPA on CPU utilisation, or None without spec.autoscaling."""
    scaling = md.spec.autoscaling
    if scaling is None:
        return None
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(md),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": md.name},
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [{
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {
                        "type": "Utilization",
                        "averageUtilization": scaling.target_cpu_utilization_percentage,
                    },
                },
            }],
        },
    }


def wants_pdb(md: ModelDeployment) -> bool:
    """A PDB only helps with >1 replica; with one it would block every node drain."""
    scaling = md.spec.autoscaling
    return scaling.min_replicas > 1 if scaling is not None else md.spec.replicas > 1


def build_pdb(md: ModelDeployment) -> dict[str, Any] | None:
    """policy/v1 PDB allowing one voluntary disruption at a time, when it makes sense."""
    if not wants_pdb(md):
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(md),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(md)}},
    }


def wants_service_monitor(md: ModelDeployment, crd_installed: bool) -> bool:
    """``auto`` follows the CRD's presence; ``enabled`` still needs the CRD to exist."""
    return md.spec.monitoring.service_monitor != "disabled" and crd_installed


def build_service_monitor(md: ModelDeployment, crd_installed: bool) -> dict[str, Any] | None:
    """Prometheus Operator ServiceMonitor scraping /metrics on the http port."""
    if not wants_service_monitor(md, crd_installed):
        return None
    monitoring = md.spec.monitoring
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _metadata(md, monitoring.labels),
        "spec": {
            "selector": {"matchLabels": selector_labels(md)},
            "endpoints": [{"port": "http", "path": "/metrics", "interval": monitoring.interval}],
        },
    }
