"""The tenant policy in the chart: operator settings and the ValidatingAdmissionPolicy."""

from __future__ import annotations

from typing import Any

import pytest
from chartlib import env_of, one, render, render_error

VAP = "ValidatingAdmissionPolicy"
BINDING = "ValidatingAdmissionPolicyBinding"


def policy(set_values: list[str] | None = None, value_set: str = "defaults") -> dict[str, Any]:
    return one(render(value_set, set_values=set_values or []), VAP)


def variables(vap: dict[str, Any]) -> dict[str, str]:
    return {v["name"]: v["expression"] for v in vap["spec"]["variables"]}


def test_defaults_allow_only_the_configured_images_and_no_host_path() -> None:
    vap = policy()
    assert vap["apiVersion"] == "admissionregistration.k8s.io/v1"
    assert vap["spec"]["failurePolicy"] == "Fail"
    rules = vap["spec"]["matchConstraints"]["resourceRules"]
    assert rules[0]["resources"] == ["trainingruns", "modeldeployments"]  # no /status
    found = variables(vap)
    assert found["images"] == '["modelyard-training:0.1.0","modelyard-serving:0.1.0"]'
    assert found["prefixes"] == "[]"
    assert "hostPath" not in found["volumeTypes"] and '"emptyDir"' in found["volumeTypes"]
    binding = one(render(), BINDING)
    assert binding["spec"] == {"policyName": vap["metadata"]["name"], "validationActions": ["Deny"]}


def test_operator_settings_follow_the_same_values() -> None:
    objects = render(set_values=["config.policy.allowedImagePrefixes={reg.io/ml/,ghcr.io/acme/x:}",
                                 "config.policy.allowedVolumeTypes={emptyDir,hostPath}",
                                 "config.trainingImage=reg.io/ml/train:1"])
    env = env_of(one(objects, "Deployment", "operator"))
    assert env["MODELYARD_ALLOWED_IMAGE_PREFIXES"]["value"] == "reg.io/ml/,ghcr.io/acme/x:"
    assert env["MODELYARD_ALLOWED_VOLUME_TYPES"]["value"] == "emptyDir,hostPath"
    assert env["MODELYARD_ALLOW_SECRET_REFS"]["value"] == "false"
    assert env["MODELYARD_TRAINING_IMAGE"]["value"] == "reg.io/ml/train:1"
    found = variables(one(objects, VAP))
    assert found["prefixes"] == '["reg.io/ml/","ghcr.io/acme/x:"]'
    assert found["volumeTypes"] == '["emptyDir","hostPath"]'
    assert found["images"] == '["reg.io/ml/train:1","modelyard-serving:0.1.0"]'


def test_every_validation_names_its_field() -> None:
    validations = policy()["spec"]["validations"]
    fields = {v["message"].split(":")[0] for v in validations}
    assert fields == {"spec.image", "spec.volumes", "spec.env", "spec.dataset.credentialsSecret",
                      "spec.retrain.trainingRunTemplate.image", "spec.retrain.trainingRunTemplate.volumes",
                      "spec.retrain.trainingRunTemplate.env",
                      "spec.retrain.trainingRunTemplate.dataset.credentialsSecret"}
    for validation in validations:
        assert validation["reason"] == "Forbidden"
        if "messageExpression" in validation:
            assert validation["messageExpression"].startswith("'" + validation["message"].split(":")[0] + ":")


def test_each_check_is_guarded_by_its_resource() -> None:
    for validation in policy()["spec"]["validations"]:
        assert validation["expression"].startswith("!(request.resource.resource == ")


def test_metadata_updates_and_the_operator_itself_are_not_checked() -> None:
    conditions = {c["name"]: c["expression"] for c in policy()["spec"]["matchConditions"]}
    assert conditions["spec-written"] == "request.operation == 'CREATE' || object.spec != oldObject.spec"
    assert conditions["not-the-operator"] == (
        "request.userInfo.username != 'system:serviceaccount:modelyard-system:modelyard-operator'")


def test_secret_refs_denied_by_default_and_checked_against_the_user_if_authorized() -> None:
    denied = " ".join(v["expression"] for v in policy()["spec"]["validations"])
    assert "authorizer" not in denied and "!has(e.valueFrom.secretKeyRef)" in denied
    assert "!has(object.spec.dataset.credentialsSecret)" in denied
    objects = render(set_values=["config.policy.secretRefs=ifAuthorized"])
    authorized = [v["expression"] for v in one(objects, VAP)["spec"]["validations"]]
    secret_checks = [e for e in authorized if "secret" in e.lower()]
    # env of runs, MDs and templates; volumes and dataset.credentialsSecret of runs and templates
    assert len(secret_checks) == 7
    for expression in secret_checks:
        assert "resource('secrets').namespace(request.namespace)" in expression
        assert "check('get').allowed()" in expression
    assert env_of(one(objects, "Deployment", "operator"))["MODELYARD_ALLOW_SECRET_REFS"]["value"] == "true"


def test_if_authorized_needs_the_admission_policy() -> None:
    stderr = render_error(set_values=["config.policy.secretRefs=ifAuthorized",
                                      "config.policy.admission.enabled=false"])
    assert "config.policy.secretRefs=ifAuthorized needs config.policy.admission.enabled" in stderr


def test_admission_policy_can_be_left_out() -> None:
    objects = render(set_values=["config.policy.admission.enabled=false"])
    assert not [o for o in objects if o["kind"] in (VAP, BINDING)]


def test_namespaced_mode_binds_only_the_watched_namespaces() -> None:
    objects = render("namespaced")
    binding = one(objects, BINDING)
    expressions = binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"]
    assert expressions[0]["key"] == "kubernetes.io/metadata.name"
    assert expressions[0]["values"] == env_of(one(objects, "Deployment", "operator"))[
        "MODELYARD_NAMESPACES"]["value"].split(",")


@pytest.mark.parametrize(("set_values", "message"), [
    (["config.policy.allowedImagePrefixes={reg.io/ml}"], "at '/config/policy/allowedImagePrefixes/0'"),
    (["config.policy.allowedImagePrefixes={it's/}"], "at '/config/policy/allowedImagePrefixes/0'"),
    (["config.policy.secretRefs=allow"], "value must be one of 'deny', 'ifAuthorized'"),
    (["config.policy.allowedVolumeTypes={host path}"], "at '/config/policy/allowedVolumeTypes/0'"),
    (["config.webhook.insecure=yes"], "at '/config/webhook/insecure'"),
])
def test_schema_rejects_bad_policy_values(set_values: list[str], message: str) -> None:
    assert message in render_error(set_values=set_values)


@pytest.mark.parametrize(("set_values", "expected"), [([], "false"), (["config.webhook.insecure=true"], "true")])
def test_webhook_insecure_is_an_explicit_setting(set_values: list[str], expected: str) -> None:
    env = env_of(one(render(set_values=set_values), "Deployment", "operator"))
    assert env["MODELYARD_WEBHOOK_INSECURE"]["value"] == expected
