"""Safety: a bad version never replaces serving pods; registry trouble changes nothing."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.helpers import condition, kubectl_apply, mlflow_client, wait_for

from .test_modeldeployment import (
    VERSION_LABEL,
    PredictLoop,
    deployment,
    deployment_version,
    get_md,
    log_iris_version,
    md_manifest,
    pods,
    register_broken_version,
    served_versions,
    unique,
    wait_condition,
    wait_serving,
)

pytestmark = pytest.mark.integration


def test_bad_version_never_replaces_serving(cluster: Any, namespace: str, operator: Any) -> None:
    model, name = unique("iris"), "iris-safe"
    v1 = log_iris_version(cluster, model)
    mc = mlflow_client(cluster)
    mc.set_registered_model_alias(model, "champion", v1)
    kubectl_apply(cluster, namespace, md_manifest(name, {"name": model, "alias": "champion"},
                                                  replicas=2))
    wait_serving(cluster, namespace, name, v1)
    bad = register_broken_version(cluster, model)
    with PredictLoop(cluster, namespace, name) as loop:
        time.sleep(1)
        mc.set_registered_model_alias(model, "champion", bad)
        md = wait_condition(cluster, namespace, name, "Degraded", "True", "ModelLoadFailed",
                            timeout=180)
        time.sleep(5)  # keep predicting while the broken pod keeps failing
    assert loop.failures == []
    assert set(loop.ok) == {v1} and sum(loop.ok.values()) > 50
    st = md["status"]
    assert st["resolvedVersion"] == bad and st["servingVersion"] == v1
    assert condition(md, "Ready")["status"] == "True"
    assert "still serving version" in condition(md, "Degraded")["message"]
    assert deployment(cluster, namespace, name).status.ready_replicas == 2
    # Recovery: pointing the alias back heals the rollout and clears Degraded.
    mc.set_registered_model_alias(model, "champion", v1)
    wait_condition(cluster, namespace, name, "Degraded", "False", timeout=120)
    wait_serving(cluster, namespace, name, v1)


def test_rolling_promotion_loses_no_request(cluster: Any, namespace: str, operator: Any) -> None:
    """A Rolling update replaces serving pods one by one; each old pod keeps answering (preStop)
    until clients have dropped its endpoint, so a client following the Service's ready
    endpoints sees every request answered, by the old version and then the new."""
    model, name = unique("iris"), "iris-rolling"
    v1 = log_iris_version(cluster, model)
    mc = mlflow_client(cluster)
    mc.set_registered_model_alias(model, "champion", v1)
    kubectl_apply(cluster, namespace, md_manifest(name, {"name": model, "alias": "champion"}, replicas=2))
    wait_serving(cluster, namespace, name, v1)
    v2 = log_iris_version(cluster, model)
    with PredictLoop(cluster, namespace, name, pause=0.01) as loop:
        mc.set_registered_model_alias(model, "champion", v2)
        wait_serving(cluster, namespace, name, v2)
        # Until the last old pod is gone: its drain is what this test is about.
        def only_new_pods() -> bool:
            return all(p.metadata.labels.get(VERSION_LABEL) == v2 for p in pods(cluster, namespace, name))

        wait_for(only_new_pods, 120, what=f"{name}: only v{v2} pods left")
    assert loop.failures == [], loop.failures[:5]
    assert loop.ok[v1] > 0 and loop.ok[v2] > 0


def _children_fingerprint(cluster: Any, namespace: str, name: str) -> tuple[Any, ...]:
    dep = deployment(cluster, namespace, name)
    from kubernetes import client

    svc: Any = client.CoreV1Api(cluster.api).read_namespaced_service(name, namespace)
    pod_names = sorted(p.metadata.name for p in pods(cluster, namespace, name))
    return (dep.metadata.generation, dep.metadata.uid, svc.metadata.resource_version,
            svc.metadata.uid, tuple(pod_names))


def test_mlflow_outage_changes_nothing_and_recovers(cluster: Any, namespace: str,
                                                    operator: Any) -> None:
    model, name = unique("iris"), "iris-outage"
    v1 = log_iris_version(cluster, model)
    mlflow_client(cluster).set_registered_model_alias(model, "champion", v1)
    kubectl_apply(cluster, namespace, md_manifest(name, {"name": model, "alias": "champion"}))
    wait_serving(cluster, namespace, name, v1)
    before = _children_fingerprint(cluster, namespace, name)
    cluster.mlflow_stop()
    try:
        md = wait_condition(cluster, namespace, name, "ModelResolved", "False",
                            "RegistryUnavailable", timeout=60)
        assert condition(md, "Degraded")["reason"] == "RegistryUnavailable"
        assert condition(md, "Ready")["status"] == "True"  # still serving v1
        # A spec change during the outage must not be applied either (nothing is resolved).
        kubectl_apply(cluster, namespace, md_manifest(
            name, {"name": model, "alias": "champion"}, env=[{"name": "X", "value": "1"}]))
        time.sleep(3 * 3)
        assert _children_fingerprint(cluster, namespace, name) == before
        assert served_versions(cluster, namespace, name) == {v1}
    finally:
        cluster.mlflow_start()
    wait_condition(cluster, namespace, name, "ModelResolved", "True", timeout=120)
    wait_condition(cluster, namespace, name, "Degraded", "False", timeout=120)
    wait_serving(cluster, namespace, name, v1)


def test_alias_deleted_keeps_last_version(cluster: Any, namespace: str, operator: Any) -> None:
    model, name = unique("iris"), "iris-noalias"
    v1 = log_iris_version(cluster, model)
    mc = mlflow_client(cluster)
    mc.set_registered_model_alias(model, "champion", v1)
    kubectl_apply(cluster, namespace, md_manifest(name, {"name": model, "alias": "champion"}))
    wait_serving(cluster, namespace, name, v1)
    mc.delete_registered_model_alias(model, "champion")
    md = wait_condition(cluster, namespace, name, "Degraded", "True", "AliasNotSet", timeout=30)
    assert md["status"]["resolvedVersion"] == v1
    assert condition(md, "Ready")["status"] == "True"
    assert deployment_version(cluster, namespace, name) == v1
    assert served_versions(cluster, namespace, name) == {v1}


def test_missing_model_then_registered(cluster: Any, namespace: str, operator: Any) -> None:
    model, name = unique("iris"), "iris-later"
    kubectl_apply(cluster, namespace, md_manifest(name, {"name": model, "alias": "champion"}))
    md = wait_condition(cluster, namespace, name, "Ready", "False", "ModelNotFound", timeout=60)
    assert condition(md, "ModelResolved")["reason"] == "ModelNotFound"
    from kubernetes import client

    with pytest.raises(client.ApiException):
        deployment(cluster, namespace, name)
    v1 = log_iris_version(cluster, model)
    mlflow_client(cluster).set_registered_model_alias(model, "champion", v1)
    wait_serving(cluster, namespace, name, v1)
    wait_for(lambda: get_md(cluster, namespace, name)["status"].get("resolvedVersion") == v1,
             30, what="resolvedVersion")
