"""Golden-dict tests for the ModelDeployment child builders (pure, no cluster)."""

from __future__ import annotations

from typing import Any

from modelyard_operator.modeldeployment.builders import (
    build_deployment,
    build_hpa,
    build_pdb,
    build_service,
    build_service_monitor,
    service_url,
)
from modelyard_operator.modeldeployment.models import ModelDeployment, parse_md
from modelyard_operator.registry import ResolvedVersion
from modelyard_operator.settings import Settings

V3 = ResolvedVersion(name="iris", version="3", run_id="abc", source="mlflow-artifacts:/1/abc")


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "mlflow_tracking_uri": "http://mlflow.ops:5000",
        "pod_mlflow_tracking_uri": "http://mlflow.ops.svc:5000",
        "serving_image": "modelyard-serving:0.1.0",
    }
    return Settings(**{**values, **overrides})


def md(spec: dict[str, Any], name: str = "iris") -> ModelDeployment:
    return parse_md({
        "apiVersion": "modelyard.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": "ml", "uid": "u-1", "generation": 1},
        "spec": spec,
    })


LABELS = {
    "app.kubernetes.io/managed-by": "modelyard",
    "app.kubernetes.io/part-of": "modelyard",
    "app.kubernetes.io/component": "serving",
    "app.kubernetes.io/instance": "iris",
    "modelyard.io/modeldeployment": "iris",
}

GOLDEN_DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "iris", "namespace": "ml", "labels": LABELS},
    "spec": {
        "selector": {"matchLabels": {"modelyard.io/modeldeployment": "iris"}},
        "revisionHistoryLimit": 3,
        "progressDeadlineSeconds": 600,
        "strategy": {"type": "RollingUpdate",
                     "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "template": {
            "metadata": {"labels": {**LABELS, "modelyard.io/model-version": "3"}},
            "spec": {
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "securityContext": {
                    "runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                    "fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [{
                    "name": "server",
                    "image": "modelyard-serving:0.1.0",
                    "imagePullPolicy": "IfNotPresent",
                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                    "env": [
                        {"name": "MODELYARD_MODEL_URI", "value": "models:/iris/3"},
                        {"name": "MODELYARD_MODEL_NAME", "value": "iris"},
                        {"name": "MODELYARD_MODEL_VERSION", "value": "3"},
                        {"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow.ops.svc:5000"},
                        {"name": "HOME", "value": "/tmp"},
                    ],
                    "resources": {"requests": {"cpu": "250m", "memory": "512Mi"},
                                  "limits": {"memory": "512Mi"}},
                    "readinessProbe": {
                        "httpGet": {"path": "/readyz", "port": "http"},
                        "periodSeconds": 1, "timeoutSeconds": 2, "failureThreshold": 4,
                    },
                    "livenessProbe": {
                        "httpGet": {"path": "/healthz", "port": "http"},
                        "initialDelaySeconds": 30, "periodSeconds": 10, "timeoutSeconds": 5,
                        "failureThreshold": 6,
                    },
                    "securityContext": {
                        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                        "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                    "lifecycle": {"preStop": {"sleep": {"seconds": 3}}},
                }],
                "volumes": [{"name": "tmp", "emptyDir": {}}],
            },
        },
        "replicas": 1,
    },
}


def test_minimal_deployment_matches_golden() -> None:
    assert build_deployment(md({"model": {"name": "iris", "alias": "champion"}}), V3,
                            settings()) == GOLDEN_DEPLOYMENT


def test_pod_template_pins_the_version_so_a_promotion_is_a_rollout() -> None:
    v4 = ResolvedVersion(name="iris", version="4")
    spec = {"model": {"name": "iris", "alias": "champion"}}
    a = build_deployment(md(spec), V3, settings())["spec"]["template"]
    b = build_deployment(md(spec), v4, settings())["spec"]["template"]
    assert a != b
    assert b["metadata"]["labels"]["modelyard.io/model-version"] == "4"
    assert {"name": "MODELYARD_MODEL_URI", "value": "models:/iris/4"} in b["spec"]["containers"][0]["env"]


def test_full_spec_gpu_auth_env_credentials_and_rollout() -> None:
    spec = {
        "model": {"name": "iris", "version": "3"},
        "replicas": 3,
        "image": "registry.example/serving:dev",
        "resources": {"cpu": "2", "memory": "4Gi", "gpu": 1},
        "nodeSelector": {"pool": "gpu-a100", "nvidia.com/gpu.present": "yes"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml",
                         "effect": "NoSchedule"}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        "env": [{"name": "MODELYARD_DRIFT_WINDOW", "value": "500"},
                {"name": "MLFLOW_TRACKING_URI", "value": "http://override:5000"},
                {"name": "MODELYARD_MODEL_URI", "value": "models:/evil/1"}],
        "rollout": {"maxSurge": 0, "maxUnavailable": 1, "progressDeadlineSeconds": 120},
        "auth": {"apiKeySecretRef": {"name": "iris-key"}},
    }
    dep = build_deployment(md(spec), V3, settings(mlflow_credentials_secret="mlflow-creds"))
    pod = dep["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert dep["spec"]["replicas"] == 3
    assert dep["spec"]["progressDeadlineSeconds"] == 120
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    assert container["image"] == "registry.example/serving:dev"
    assert container["resources"] == {
        "requests": {"cpu": "2", "memory": "4Gi"},
        "limits": {"memory": "4Gi", "nvidia.com/gpu": 1},
    }
    # User nodeSelector keys win over the operator's GPU selector; tolerations are merged.
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "yes", "pool": "gpu-a100"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
    ]
    assert pod["affinity"] == spec["affinity"]
    assert container["envFrom"] == [{"secretRef": {"name": "mlflow-creds"}}]
    assert container["env"] == [
        {"name": "MODELYARD_MODEL_URI", "value": "models:/iris/3"},
        {"name": "MODELYARD_MODEL_NAME", "value": "iris"},
        {"name": "MODELYARD_MODEL_VERSION", "value": "3"},
        {"name": "HOME", "value": "/tmp"},
        {"name": "MODELYARD_API_KEY",
         "valueFrom": {"secretKeyRef": {"name": "iris-key", "key": "api-key"}}},
        {"name": "MODELYARD_DRIFT_WINDOW", "value": "500"},
        {"name": "MLFLOW_TRACKING_URI", "value": "http://override:5000"},
    ]


def test_batching_settings_reach_the_server_and_spec_env_still_wins() -> None:
    def env_of(spec: dict[str, Any]) -> dict[str, str]:
        container = build_deployment(md(spec), V3, settings())["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e.get("value", "") for e in container["env"]}

    base: dict[str, Any] = {"model": {"name": "iris", "alias": "a"}}
    unset = env_of(base)
    assert not {"MODELYARD_MAX_BATCH_SIZE", "MODELYARD_MAX_BATCH_DELAY_MS"} & unset.keys()
    both = env_of({**base, "batching": {"maxBatchSize": 16, "maxDelayMilliseconds": 2}})
    assert (both["MODELYARD_MAX_BATCH_SIZE"], both["MODELYARD_MAX_BATCH_DELAY_MS"]) == ("16", "2")
    off = env_of({**base, "batching": {"maxBatchSize": 1}})
    assert off["MODELYARD_MAX_BATCH_SIZE"] == "1" and "MODELYARD_MAX_BATCH_DELAY_MS" not in off
    overridden = env_of({**base, "batching": {"maxBatchSize": 16},
                         "env": [{"name": "MODELYARD_MAX_BATCH_SIZE", "value": "8"}]})
    assert overridden["MODELYARD_MAX_BATCH_SIZE"] == "8"


def test_no_gpu_means_no_gpu_scheduling_constraints() -> None:
    pod = build_deployment(md({"model": {"name": "iris", "alias": "a"}}), V3,
                           settings())["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod and "tolerations" not in pod


def test_replicas_are_left_to_the_hpa_when_autoscaling() -> None:
    spec = {"model": {"name": "iris", "alias": "a"}, "replicas": 5,
            "autoscaling": {"minReplicas": 2, "maxReplicas": 6,
                            "targetCPUUtilizationPercentage": 70}}
    assert "replicas" not in build_deployment(md(spec), V3, settings())["spec"]
    assert build_hpa(md(spec)) == {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "iris", "namespace": "ml", "labels": LABELS},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "iris"},
            "minReplicas": 2, "maxReplicas": 6,
            "metrics": [{"type": "Resource", "resource": {
                "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}],
        },
    }
    assert build_pdb(md(spec)) is not None


def test_service_golden_and_url() -> None:
    m = md({"model": {"name": "iris", "alias": "a"}})
    assert build_service(m) == {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "iris", "namespace": "ml", "labels": LABELS},
        "spec": {"type": "ClusterIP", "selector": {"modelyard.io/modeldeployment": "iris"},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]},
    }
    assert service_url(m) == "http://iris.ml.svc.cluster.local:80"


def test_pdb_only_with_more_than_one_replica() -> None:
    assert build_pdb(md({"model": {"name": "iris", "alias": "a"}})) is None
    assert build_pdb(md({"model": {"name": "iris", "alias": "a"},
                         "autoscaling": {"maxReplicas": 4}})) is None
    assert build_pdb(md({"model": {"name": "iris", "alias": "a"}, "replicas": 2})) == {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "iris", "namespace": "ml", "labels": LABELS},
        "spec": {"maxUnavailable": 1,
                 "selector": {"matchLabels": {"modelyard.io/modeldeployment": "iris"}}},
    }


def test_service_monitor_follows_mode_and_crd_presence() -> None:
    auto = md({"model": {"name": "iris", "alias": "a"},
               "monitoring": {"labels": {"release": "kube-prometheus-stack"}, "interval": "15s"}})
    assert build_service_monitor(auto, crd_installed=False) is None
    assert build_service_monitor(auto, crd_installed=True) == {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
        "metadata": {"name": "iris", "namespace": "ml",
                     "labels": {**LABELS, "release": "kube-prometheus-stack"}},
        "spec": {"selector": {"matchLabels": {"modelyard.io/modeldeployment": "iris"}},
                 "endpoints": [{"port": "http", "path": "/metrics", "interval": "15s"}]},
    }
    disabled = md({"model": {"name": "iris", "alias": "a"},
                   "monitoring": {"serviceMonitor": "disabled"}})
    assert build_service_monitor(disabled, crd_installed=True) is None
    enabled = md({"model": {"name": "iris", "alias": "a"},
                  "monitoring": {"serviceMonitor": "enabled"}})
    assert build_service_monitor(enabled, crd_installed=False) is None
    assert build_service_monitor(enabled, crd_installed=True) is not None


def test_builders_are_pure() -> None:
    m = md({"model": {"name": "iris", "alias": "a"}, "env": [{"name": "X", "value": "1"}]})
    before = repr(m.body)
    first = build_deployment(m, V3, settings())
    assert build_deployment(m, V3, settings()) == first
    assert repr(m.body) == before
