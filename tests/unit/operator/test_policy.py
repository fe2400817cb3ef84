"""Tenant policy (policy.py): tables of specs against settings, and the ModelDeployment path."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from modelyard_operator.modeldeployment import runner as md_runner
from modelyard_operator.modeldeployment.models import InvalidSpec
from modelyard_operator.policy import (
    Policy,
    describe,
    modeldeployment_violations,
    trainingrun_violations,
)
from modelyard_operator.settings import DEFAULT_VOLUME_TYPES, Settings
from pydantic import ValidationError

DEFAULTS = Settings(training_image="modelyard-training:0.1.0", serving_image="modelyard-serving:0.1.0")
POLICY = Policy.from_settings(DEFAULTS)
OPEN = Policy.from_settings(Settings(
    allowed_image_prefixes="registry.example.com/ml/,ghcr.io/acme/train:",
    allowed_volume_types="emptyDir,hostPath,secret", allow_secret_refs=True,
))
SECRET_ENV = {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}
CONFIG_ENV = {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "m"}}}


def fields(violations: list[Any]) -> list[str]:
    return [v.field for v in violations]


@pytest.mark.parametrize(("spec", "policy", "expected"), [
    # images: unset, the configured ones, prefixes (with a boundary), anything else
    ({}, POLICY, []),
    ({"image": "modelyard-training:0.1.0"}, POLICY, []),
    ({"image": "modelyard-serving:0.1.0"}, POLICY, []),
    ({"image": "modelyard-training:0.2.0"}, POLICY, ["spec.image"]),
    ({"image": "docker.io/library/busybox"}, POLICY, ["spec.image"]),
    ({"image": "registry.example.com/ml/train:3"}, OPEN, []),
    ({"image": "registry.example.com/ml-evil/train:3"}, OPEN, ["spec.image"]),
    ({"image": "ghcr.io/acme/train:v2"}, OPEN, []),
    ({"image": "ghcr.io/acme/trainer:v2"}, OPEN, ["spec.image"]),
    # volumes: allowed types, hostPath and inline network volumes, secret volumes
    ({"volumes": [{"name": "d", "emptyDir": {}}, {"name": "c", "configMap": {"name": "x"}}]}, POLICY, []),
    ({"volumes": [{"name": "p", "persistentVolumeClaim": {"claimName": "data"}}]}, POLICY, []),
    ({"volumes": [{"name": "d", "emptyDir": {}}, {"name": "h", "hostPath": {"path": "/"}}]}, POLICY,
     ["spec.volumes[1]"]),
    ({"volumes": [{"name": "n", "nfs": {"server": "x", "path": "/"}}]}, POLICY, ["spec.volumes[0]"]),
    ({"volumes": [{"name": "h", "hostPath": {"path": "/"}}]}, OPEN, []),
    ({"volumes": [{"name": "p", "persistentVolumeClaim": {"claimName": "d"}}]}, OPEN, ["spec.volumes[0]"]),
    ({"volumes": [{"name": "s", "secret": {"secretName": "db"}}]}, POLICY, ["spec.volumes[0]"]),
    ({"volumes": [{"name": "s", "projected": {"sources": [{"configMap": {"name": "a"}},
                                                          {"secret": {"name": "db"}}]}}]},
     POLICY, ["spec.volumes[0]"]),
    ({"volumes": [{"name": "s", "projected": {"sources": [{"configMap": {"name": "a"}}]}}]}, POLICY, []),
    ({"volumes": [{"name": "s", "secret": {"secretName": "db"}}]}, OPEN, []),
    ({"volumes": [{"name": "bare"}]}, POLICY, ["spec.volumes[0]"]),
    # env: plain values and ConfigMaps pass, Secrets only when allowed
    ({"env": [{"name": "A", "value": "1"}, CONFIG_ENV]}, POLICY, []),
    ({"env": [{"name": "A", "value": "1"}, SECRET_ENV]}, POLICY, ["spec.env[1].valueFrom.secretKeyRef"]),
    ({"env": [SECRET_ENV]}, OPEN, []),
    # object-store credentials for the dataset are a Secret reference too
    ({"dataset": {"uri": "s3://d/x.csv", "target": "y", "credentialsSecret": "s3"}}, POLICY,
     ["spec.dataset.credentialsSecret"]),
    ({"dataset": {"uri": "s3://d/x.csv", "target": "y", "credentialsSecret": "s3"}}, OPEN, []),
    ({"dataset": {"uri": "s3://d/x.csv", "target": "y"}}, POLICY, []),
    # several breaches: every field is named
    ({"image": "x/y", "volumes": [{"name": "h", "hostPath": {"path": "/"}}], "env": [SECRET_ENV]},
     POLICY, ["spec.image", "spec.volumes[0]", "spec.env[0].valueFrom.secretKeyRef"]),
])
def test_trainingrun_policy(spec: dict[str, Any], policy: Policy, expected: list[str]) -> None:
    assert fields(trainingrun_violations(spec, policy)) == expected


TEMPLATE = "spec.retrain.trainingRunTemplate"


@pytest.mark.parametrize(("spec", "expected"), [
    ({"model": {"name": "iris", "alias": "champion"}}, []),
    ({"image": "modelyard-serving:0.1.0"}, []),
    ({"image": "evil/server:1"}, ["spec.image"]),
    ({"env": [SECRET_ENV]}, ["spec.env[0].valueFrom.secretKeyRef"]),
    # auth.apiKeySecretRef is the designed way to give the (trusted) server its key
    ({"auth": {"apiKeySecretRef": {"name": "key"}}}, []),
    # the retraining template becomes a TrainingRun created by the operator itself
    ({"retrain": {"driftThreshold": 0.2, "trainingRunTemplate": {"image": "evil/train:1"}}},
     [f"{TEMPLATE}.image"]),
    ({"retrain": {"driftThreshold": 0.2, "trainingRunTemplate": {
        "volumes": [{"name": "h", "hostPath": {"path": "/"}}], "env": [SECRET_ENV]}}},
     [f"{TEMPLATE}.volumes[0]", f"{TEMPLATE}.env[0].valueFrom.secretKeyRef"]),
    ({"retrain": {"driftThreshold": 0.2, "trainingRunTemplate": {"model": {"name": "iris"}}}}, []),
])
def test_modeldeployment_policy(spec: dict[str, Any], expected: list[str]) -> None:
    assert fields(modeldeployment_violations(spec, POLICY)) == expected


def test_messages_name_the_field_and_what_is_allowed() -> None:
    message = describe(trainingrun_violations({"image": "evil/x:1"}, OPEN))
    assert message.startswith("spec.image: image 'evil/x:1' is not allowed")
    assert "registry.example.com/ml/*" in message and "modelyard-training:" in message
    message = describe(trainingrun_violations({"volumes": [{"name": "h", "hostPath": {}}]}, POLICY))
    assert "spec.volumes[0]: volume type 'hostPath'" in message and "emptyDir" in message


def test_default_settings() -> None:
    assert "hostPath" not in DEFAULT_VOLUME_TYPES
    assert DEFAULTS.allowed_image_prefixes == [] and DEFAULTS.allow_secret_refs is False


@pytest.mark.parametrize("prefix", ["registry.example.com/ml", "ghcr.io/acme/train"])
def test_prefixes_must_end_at_a_boundary(prefix: str) -> None:
    with pytest.raises(ValidationError, match="must end with"):
        Settings(allowed_image_prefixes=prefix)


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_ALLOWED_IMAGE_PREFIXES", "a.io/x/, b.io/y:")
    monkeypatch.setenv("MODELYARD_ALLOWED_VOLUME_TYPES", "emptyDir,configMap")
    monkeypatch.setenv("MODELYARD_ALLOW_SECRET_REFS", "true")
    settings = Settings()
    assert settings.allowed_image_prefixes == ["a.io/x/", "b.io/y:"]
    assert settings.allowed_volume_types == ["emptyDir", "configMap"]
    assert settings.allow_secret_refs is True


class FakeKube:
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.created: list[dict[str, Any]] = []
        self.applied: list[dict[str, Any]] = []

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.body) if kind == "ModelDeployment" else None

    def patch_status(self, api_version: str, kind: str, namespace: str, name: str,
                     status: dict[str, Any]) -> dict[str, Any]:
        self.body["status"] = {**self.body.get("status", {}), **status}
        return self.body

    def create(self, obj: dict[str, Any], owner: dict[str, Any] | None = None) -> dict[str, Any]:
        self.created.append(obj)
        return obj

    def apply(self, obj: dict[str, Any], owner: dict[str, Any] | None = None) -> dict[str, Any]:
        self.applied.append(obj)
        return obj


def test_modeldeployment_breaking_policy_is_refused_with_condition_and_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = {"apiVersion": "modelyard.io/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": "iris", "namespace": "ml", "uid": "u1", "generation": 3},
            "spec": {"model": {"name": "iris", "alias": "champion"}, "image": "evil/server:1"}}
    fake = FakeKube(body)
    for name in ("get", "patch_status", "create", "apply"):
        monkeypatch.setattr(md_runner.kube, name, getattr(fake, name))
    runner = md_runner.MDRunner(DEFAULTS, resolver=None)  # type: ignore[arg-type]
    for _ in range(2):
        with pytest.raises(InvalidSpec, match=r"spec\.image: image 'evil/server:1'") as raised:
            runner.run(("ml", "iris"))
        assert raised.value.reason == "PolicyViolation"
    ready = next(c for c in body["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"], ready["observedGeneration"]) == ("False", "PolicyViolation", 3)
    assert "spec.image" in ready["message"]
    assert fake.applied == []  # no Deployment for a refused spec
    # One Event for the transition, not one per retry.
    assert [(e["kind"], e["type"], e["reason"]) for e in fake.created] == [
        ("Event", "Warning", "PolicyViolation")]
