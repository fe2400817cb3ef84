"""Shared operator modules the TrainingRun controller relies on: settings, kube's pure helpers,
metrics names and the entrypoint's handler loading."""

from __future__ import annotations

import pytest
from modelyard_operator import kube, metrics
from modelyard_operator.settings import Settings
from prometheus_client import generate_latest


def test_settings_defaults_match_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("MODELYARD_NAMESPACES", "MODELYARD_POD_MLFLOW_TRACKING_URI", "MODELYARD_MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    s = Settings()
    assert s.mlflow_tracking_uri == "http://mlflow:5000" == s.pod_tracking_uri
    assert (s.training_image, s.serving_image) == ("modelyard-training:0.1.0", "modelyard-serving:0.1.0")
    assert s.gpu_node_selector == {"nvidia.com/gpu.present": "true"}
    assert s.gpu_tolerations == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert (s.default_cpu, s.default_memory) == ("500m", "1Gi")
    assert (s.poll_interval, s.drift_interval) == (30.0, 30.0)
    assert (s.webhook_port, s.metrics_port, s.health_port) == (8081, 9090, 8080)
    assert (s.webhook_secret, s.webhook_url, s.webhook_register) == (None, None, False)
    assert s.namespaces == []


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_NAMESPACES", "ml, team-a ,,")
    monkeypatch.setenv("MODELYARD_POD_MLFLOW_TRACKING_URI", "http://10.88.0.1:5000")
    monkeypatch.setenv("MODELYARD_GPU_NODE_SELECTOR", '{"accelerator": "t4"}')
    monkeypatch.setenv("MODELYARD_GPU_TOLERATIONS", "[]")
    monkeypatch.setenv("MODELYARD_WEBHOOK_SECRET", "s3cret")
    monkeypatch.setenv("MODELYARD_MLFLOW_CREDENTIALS_SECRET", "")
    s = Settings()
    assert s.namespaces == ["ml", "team-a"]
    assert s.pod_tracking_uri == "http://10.88.0.1:5000"
    assert (s.gpu_node_selector, s.gpu_tolerations) == ({"accelerator": "t4"}, [])
    assert s.webhook_secret is not None and s.webhook_secret.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)
    assert s.mlflow_credentials_secret is None  # Helm renders unset values as ""


OWNER = {"apiVersion": "modelyard.io/v1alpha1", "kind": "TrainingRun",
         "metadata": {"name": "iris", "namespace": "ml", "uid": "u-1", "labels": {"x": "y"}}}


def test_with_owner_adds_a_controller_reference_without_mutating() -> None:
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "iris-train"}}
    owned = kube.with_owner(job, OWNER)
    assert owned["metadata"]["ownerReferences"] == [{
        "apiVersion": "modelyard.io/v1alpha1", "kind": "TrainingRun", "name": "iris", "uid": "u-1",
        "controller": True, "blockOwnerDeletion": True}]
    assert "ownerReferences" not in job["metadata"]
    assert kube.with_owner(job, None) == job


def test_pod_termination_message_picks_the_named_container() -> None:
    pod = {"status": {"containerStatuses": [
        {"name": "sidecar", "state": {"terminated": {"message": "other"}}},
        {"name": "train", "state": {"terminated": {"message": '{"ok": true}'}}},
    ]}}
    assert kube.pod_termination_message(pod, "train") == '{"ok": true}'
    assert kube.pod_termination_message(pod) == "other"
    assert kube.pod_termination_message({"status": {}}) is None


def test_metrics_are_registered_under_the_contract_names() -> None:
    metrics.RECONCILES.labels(kind="TrainingRun", result="ok").inc()
    metrics.TRAININGRUNS.labels(phase="Succeeded").inc()
    metrics.PROMOTIONS.labels(model="iris", from_version="1", to_version="2").inc()
    metrics.WEBHOOK_EVENTS.labels(event="model_version_alias.created", verified="true").inc()
    metrics.RETRAINS.labels(modeldeployment="iris").inc()
    metrics.RECONCILE_DURATION.labels(kind="TrainingRun").observe(0.01)
    metrics.REGISTRY_POLL_DURATION.observe(0.1)
    metrics.REGISTRY_ERRORS.inc()
    text = generate_latest(metrics.REGISTRY).decode()
    for name in ("modelyard_operator_reconciles_total", "modelyard_operator_reconcile_duration_seconds_bucket",
                 "modelyard_operator_promotions_total", "modelyard_operator_registry_poll_duration_seconds",
                 "modelyard_operator_registry_errors_total", "modelyard_operator_webhook_events_total",
                 "modelyard_operator_retrains_total", "modelyard_operator_trainingruns_total"):
        assert name in text, name


def test_entrypoint_loads_both_controllers() -> None:
    from modelyard_operator.__main__ import import_handlers

    assert import_handlers() == ["modelyard_operator.trainingrun.handlers",
                                 "modelyard_operator.modeldeployment.handlers"]
