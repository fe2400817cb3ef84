"""Tenant policy on the real control plane, both paths:

- the chart's ValidatingAdmissionPolicy refuses a breaking spec at apply time, naming the field;
- without it, the operator refuses the spec itself (PolicyViolation condition and Event, no
  Job or Deployment).

The policy under test is bound to the test's own namespace only (rendered with
config.namespaces), so it never touches anything else on the shared cluster.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.helpers import condition, event_reasons, kubectl_apply, load_module, wait_for

from .test_modeldeployment import md_manifest, wait_condition
from .test_trainingrun import get_run, jobs_of, tr_manifest, wait_phase

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
chartlib = load_module("chartlib", REPO / "tests" / "unit" / "chart" / "chartlib.py")

EVIL_IMAGE = "evil.example.com/miner:1"
HOST_PATH = [{"name": "root", "hostPath": {"path": "/"}}]
HOST_MOUNT = [{"name": "root", "mountPath": "/host"}]
SECRET_ENV = [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}]

# case -> (spec additions, field the refusal must name)
BREACHES: dict[str, tuple[dict[str, Any], str]] = {
    "image": ({"image": EVIL_IMAGE}, "spec.image"),
    "hostPath": ({"volumes": HOST_PATH, "volumeMounts": HOST_MOUNT}, "spec.volumes"),
    "secret env": ({"env": SECRET_ENV}, "spec.env"),
    "dataset credentials": ({"dataset": {"uri": "s3://datasets/iris.csv", "target": "target",
                                         "credentialsSecret": "s3-keys"}}, "spec.dataset.credentialsSecret"),
}


def policy_objects(namespace: str) -> list[dict[str, Any]]:
    """The chart's policy and binding, bound to ``namespace`` only, under a unique release."""
    objects = chartlib.render(set_values=[f"config.namespaces={{{namespace}}}"],
                              release=f"pol-{uuid.uuid4().hex[:6]}")
    return [o for o in objects if o["kind"].startswith("ValidatingAdmissionPolicy")]


def apply_dry_run(cluster: Any, namespace: str, manifest: dict[str, Any]) -> Any:
    return cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-",
                           input=yaml.safe_dump(manifest), check=False)


@pytest.fixture
def admission_policy(cluster: Any, namespace: str, crds: Any) -> Iterator[None]:
    objects = policy_objects(namespace)
    assert len(objects) == 2
    text = yaml.safe_dump_all(objects)
    cluster.kubectl("apply", "-f", "-", input=text)
    # Policies take effect asynchronously (the apiserver compiles them): wait until a breaking
    # spec is refused.
    probe = tr_manifest("probe", "iris", image=EVIL_IMAGE)
    wait_for(lambda: apply_dry_run(cluster, namespace, probe).returncode != 0 or None, timeout=60,
             what="ValidatingAdmissionPolicy in effect")
    yield
    cluster.kubectl("delete", "--ignore-not-found", "-f", "-", input=text, check=False)


@pytest.mark.parametrize("case", sorted(BREACHES))
def test_admission_policy_refuses_at_apply_naming_the_field(
    cluster: Any, namespace: str, admission_policy: None, case: str,
) -> None:
    extra, field = BREACHES[case]
    result = kubectl_apply(cluster, namespace, tr_manifest("breach", "iris", **extra), check=False)
    assert result.returncode != 0
    assert "ValidatingAdmissionPolicy" in result.stderr and "denied request" in result.stderr, result.stderr
    assert f"{field}" in result.stderr, result.stderr
    assert get_run_absent(cluster, namespace, "breach")


def test_admission_policy_refuses_modeldeployment_image_and_retrain_template(
    cluster: Any, namespace: str, admission_policy: None,
) -> None:
    model = {"name": "iris", "alias": "champion"}
    result = kubectl_apply(cluster, namespace, md_manifest("md-image", model, image=EVIL_IMAGE), check=False)
    assert result.returncode != 0 and "spec.image" in result.stderr, result.stderr
    template = {"model": {"name": "iris"}, "estimator": {"type": "logistic_regression"},
                "dataset": {"builtin": "iris"}, "volumes": HOST_PATH, "volumeMounts": HOST_MOUNT}
    retrain = {"driftThreshold": 0.2, "trainingRunTemplate": template}
    result = kubectl_apply(cluster, namespace, md_manifest("md-retrain", model, retrain=retrain), check=False)
    assert result.returncode != 0, result.stdout
    assert "spec.retrain.trainingRunTemplate.volumes" in result.stderr, result.stderr


def test_admission_policy_admits_a_compliant_spec(
    cluster: Any, namespace: str, admission_policy: None,
) -> None:
    plain = tr_manifest("fine", "iris", volumes=[{"name": "scratch", "emptyDir": {}}],
                        volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}])
    result = apply_dry_run(cluster, namespace, plain)
    assert result.returncode == 0, result.stderr


def get_run_absent(cluster: Any, namespace: str, name: str) -> bool:
    try:
        get_run(cluster, namespace, name)
    except client.ApiException as error:
        return error.status == 404
    return False


@pytest.mark.parametrize("case", sorted(BREACHES))
def test_operator_refuses_a_run_when_the_policy_is_absent(
    cluster: Any, namespace: str, operator: Any, case: str,
) -> None:
    extra, field = BREACHES[case]
    kubectl_apply(cluster, namespace, tr_manifest("breach", "iris", **extra))  # no policy here
    run = wait_phase(cluster, namespace, "breach", ("Failed",), timeout=60)
    failed = condition(run, "Failed")
    assert (failed["status"], failed["reason"]) == ("True", "PolicyViolation"), run["status"]
    assert failed["message"].startswith(field), failed["message"]
    assert condition(run, "Succeeded")["status"] == "False"
    assert jobs_of(cluster, namespace, "breach") == []  # no pod was ever made
    wait_for(lambda: "PolicyViolation" in event_reasons(cluster, namespace, "breach", "TrainingRun") or None,
             timeout=30, what="PolicyViolation Event")


def test_operator_refuses_a_modeldeployment_when_the_policy_is_absent(
    cluster: Any, namespace: str, operator: Any,
) -> None:
    kubectl_apply(cluster, namespace, md_manifest("md-image", {"name": "iris", "alias": "champion"},
                                                  image=EVIL_IMAGE))
    md = wait_condition(cluster, namespace, "md-image", "Ready", "False", "PolicyViolation", timeout=60)
    assert condition(md, "Ready")["message"].startswith("spec.image: image 'evil.example.com/miner:1'")
    apps = client.AppsV1Api(cluster.api)
    assert apps.list_namespaced_deployment(namespace).items == []
    wait_for(lambda: "PolicyViolation" in event_reasons(cluster, namespace, "md-image", "ModelDeployment")
             or None, timeout=30, what="PolicyViolation Event")
