"""Children and API: GPU placement, HPA/PDB, ServiceMonitor, CEL validation, explain, GC."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.helpers import kubectl_apply, mlflow_client, wait_for

from .test_modeldeployment import (
    MD_LABEL,
    log_iris_version,
    md_manifest,
    pods,
    unique,
    wait_condition,
    wait_serving,
)

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
GPU_NODES = {"modelyard-gpu-1", "modelyard-gpu-2"}


def _alias_model(cluster: Any) -> str:
    model = unique("iris")
    mlflow_client(cluster).set_registered_model_alias(model, "champion",
                                                      log_iris_version(cluster, model))
    return model


def test_gpu_pods_bind_to_gpu_nodes(cluster: Any, namespace: str, operator: Any) -> None:
    model = _alias_model(cluster)
    kubectl_apply(cluster, namespace, md_manifest("iris-gpu", {"name": model, "alias": "champion"},
                                                  replicas=2, resources={"gpu": 1}))

    def bound() -> list[str] | None:
        nodes = [p.spec.node_name for p in pods(cluster, namespace, "iris-gpu")]
        return nodes if len(nodes) == 2 and all(nodes) else None

    assert set(wait_for(bound, 120, what="GPU pods scheduled")) <= GPU_NODES
    pod = pods(cluster, namespace, "iris-gpu")[0]
    assert pod.spec.node_selector == {"nvidia.com/gpu.present": "true"}
    assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == "1"
    assert any(t.key == "nvidia.com/gpu" for t in pod.spec.tolerations)


def test_hpa_and_pdb_are_accepted_and_pruned(cluster: Any, namespace: str, operator: Any) -> None:
    model = _alias_model(cluster)
    name = "iris-scaled"
    spec = {"autoscaling": {"minReplicas": 2, "maxReplicas": 4,
                            "targetCPUUtilizationPercentage": 60}}
    kubectl_apply(cluster, namespace, md_manifest(name, {"name": model, "alias": "champion"}, **spec))
    hpa_api = client.AutoscalingV2Api(cluster.api)
    pdb_api = client.PolicyV1Api(cluster.api)
    hpa: Any = wait_for(lambda: hpa_api.read_namespaced_horizontal_pod_autoscaler(name, namespace), 60,
                   what="HPA")
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (2, 4)
    assert hpa.spec.metrics[0].resource.target.average_utilization == 60
    pdb: Any = wait_for(lambda: pdb_api.read_namespaced_pod_disruption_budget(name, namespace), 60,
                   what="PDB")
    assert pdb.spec.max_unavailable == 1
    # The HPA controller raises the Deployment to minReplicas even without a metrics API.
    apps = client.AppsV1Api(cluster.api)
    wait_for(lambda: apps.read_namespaced_deployment(name, namespace).spec.replicas == 2, 120,
             what="HPA scaled the Deployment to minReplicas")
    # Dropping autoscaling removes both (they are ours) and the operator owns replicas again.
    kubectl_apply(cluster, namespace, md_manifest(name, {"name": model, "alias": "champion"}))

    def gone() -> bool:
        for read in (lambda: hpa_api.read_namespaced_horizontal_pod_autoscaler(name, namespace),
                     lambda: pdb_api.read_namespaced_pod_disruption_budget(name, namespace)):
            try:
                read()
                return False
            except client.ApiException as error:
                if error.status != 404:
                    raise
        return True

    wait_for(gone, 60, what="HPA and PDB pruned")
    wait_for(lambda: apps.read_namespaced_deployment(name, namespace).spec.replicas == 1, 60,
             what="replicas back to spec.replicas")


def _service_monitor_crd() -> Path:
    sys.path.insert(0, str(REPO / "k8s" / "local"))
    import prometheus_crds

    return next(p for p in prometheus_crds.crd_paths() if "servicemonitors" in p.name)


def test_service_monitor_only_when_its_crd_is_installed(cluster: Any, namespace: str,
                                                        operator: Any) -> None:
    ext = client.ApiextensionsV1Api(cluster.api)
    crd_name = "servicemonitors.monitoring.coreos.com"
    crds: Any = ext.list_custom_resource_definition().items
    preinstalled = any(c.metadata.name == crd_name for c in crds)
    if preinstalled:
        pytest.skip("the ServiceMonitor CRD is already installed in this cluster")
    model, name = _alias_model(cluster), "iris-mon"
    kubectl_apply(cluster, namespace, md_manifest(
        name, {"name": model, "alias": "champion"},
        monitoring={"labels": {"release": "kube-prometheus-stack"}, "interval": "15s"}))
    wait_condition(cluster, namespace, name, "Ready", "True")  # absence is not an error
    crd_file = _service_monitor_crd()
    cluster.kubectl("apply", "--server-side", "-f", str(crd_file))
    try:
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{crd_name}")
        objects = client.CustomObjectsApi(cluster.api)

        def monitor() -> Any:
            return objects.get_namespaced_custom_object(
                "monitoring.coreos.com", "v1", namespace, "servicemonitors", name)

        # Noticed by the periodic resync (CRD presence is re-checked every 30 s).
        sm = wait_for(monitor, 150, interval=1, what="ServiceMonitor created")
        assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert sm["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]
        assert sm["spec"]["selector"] == {"matchLabels": {MD_LABEL: name}}
    finally:
        cluster.kubectl("delete", "-f", str(crd_file), "--wait=false", check=False)


@pytest.mark.parametrize(("spec", "message"), [
    ({"model": {"name": "m"}}, "exactly one of alias, stage or version"),
    ({"model": {"name": "m", "alias": "a", "version": "1"}}, "exactly one of alias, stage or version"),
    ({"model": {"name": "m", "stage": "Archived"}}, "Unsupported value"),
    ({"model": {"name": "m", "version": "v1"}}, "spec.model.version"),
    ({"model": {"name": "m", "alias": "latest"}}, "reserved by MLflow"),
    ({"model": {"name": "m", "alias": "a"}, "rollout": {"maxSurge": 0, "maxUnavailable": "0%"}},
     "cannot both be 0"),
    ({"model": {"name": "m", "alias": "a"}, "autoscaling": {"minReplicas": 5, "maxReplicas": 2}},
     "minReplicas must not exceed maxReplicas"),
    ({"model": {"name": "m", "alias": "a"}, "env": [{"name": "MODELYARD_MODEL_URI", "value": "x"}]},
     "set by the operator"),
    ({"model": {"name": "m", "alias": "a"}, "replicas": -1}, "spec.replicas"),
    ({"model": {"name": "m", "alias": "a"}, "batching": {"maxBatchSize": 0}}, "spec.batching.maxBatchSize"),
    ({"model": {"name": "m", "alias": "a"}, "batching": {"maxDelayMilliseconds": 5000}},
     "spec.batching.maxDelayMilliseconds"),
    ({"model": {"name": "m", "alias": "a"},
      "retrain": {"driftThreshold": 0.2, "cooldown": "1 hour",
                  "trainingRunTemplate": {"model": {"name": "m"},
                                          "estimator": {"type": "logistic_regression"},
                                          "dataset": {"builtin": "iris"}}}},
     "spec.retrain.cooldown"),
    ({"model": {"name": "m", "alias": "a"},
      "retrain": {"driftThreshold": 0.2,
                  "trainingRunTemplate": {"model": {"name": "m"}, "estimator": {"type": "svc"},
                                          "dataset": {"builtin": "iris"},
                                          "promotion": {"alias": "c", "metric": "rmse",
                                                        "minValue": 1}}}},
     "must be a metric of the estimator's task"),
])
def test_invalid_specs_are_rejected_by_the_api_server(cluster: Any, namespace: str, crds: Any,
                                                      spec: dict[str, Any], message: str) -> None:
    manifest = {"apiVersion": "modelyard.io/v1alpha1", "kind": "ModelDeployment",
                "metadata": {"name": "bad"}, "spec": spec}
    result = kubectl_apply(cluster, namespace, manifest, check=False)
    assert result.returncode != 0
    assert message in result.stderr


def test_defaults_and_explain(cluster: Any, namespace: str, crds: Any) -> None:
    kubectl_apply(cluster, namespace, md_manifest("defaults", {"name": "m", "alias": "a"}))
    obj: Any = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
        "modelyard.io", "v1alpha1", namespace, "modeldeployments", "defaults")
    spec = obj["spec"]
    assert spec["replicas"] == 1
    assert spec["rollout"] == {
        "strategy": "Rolling", "maxSurge": 1, "maxUnavailable": 0, "progressDeadlineSeconds": 600,
        "steps": [10, 50, 100],
        "analysis": {"interval": "1m", "maxErrorRate": 0.01, "errorRateMargin": 0.005, "maxLatencyRatio": 1.5,
                     "maxDivergence": 0.1, "minRequests": 100, "trafficDeadline": "10m"},
        "shadow": {"percent": 10, "minAgreement": 0.95, "minSamples": 200, "tolerance": 0.01},
        "rollback": {"revertAlias": False},
    }
    assert spec["monitoring"] == {"serviceMonitor": "auto", "interval": "30s"}
    explained = cluster.kubectl("explain", "modeldeployment.spec.model.alias").stdout
    assert "Follow this MLflow alias" in explained
    assert "RolloutStalled" in cluster.kubectl("explain", "md.status.conditions").stdout


def test_examples_are_accepted_by_the_api_server(cluster: Any, namespace: str, crds: Any) -> None:
    for path in sorted((REPO / "k8s" / "examples").glob("modeldeployment-*.yaml")):
        result = cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(path),
                                 check=False)
        assert result.returncode == 0, f"{path.name}: {result.stderr}"


def test_deleting_the_md_removes_its_children(cluster: Any, namespace: str, operator: Any) -> None:
    model, name = _alias_model(cluster), "iris-gc"
    kubectl_apply(cluster, namespace, md_manifest(name, {"name": model, "alias": "champion"},
                                                  replicas=2))
    version = mlflow_client(cluster).get_model_version_by_alias(model, "champion").version
    wait_serving(cluster, namespace, name, str(version))
    cluster.kubectl("delete", "md", name, "-n", namespace, "--wait=true", "--timeout=60s")
    apps, core = client.AppsV1Api(cluster.api), client.CoreV1Api(cluster.api)

    def gone() -> bool:
        deps = apps.list_namespaced_deployment(namespace, label_selector=f"{MD_LABEL}={name}")
        svcs = core.list_namespaced_service(namespace, label_selector=f"{MD_LABEL}={name}")
        return not deps.items and not svcs.items

    wait_for(gone, 90, what="children garbage-collected")
    time.sleep(1)
