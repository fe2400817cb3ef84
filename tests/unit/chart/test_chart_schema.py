"""values.schema.json is strict: mistakes fail `helm template` with a message naming them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from chartlib import CHART, render, render_error


@pytest.mark.parametrize(
    ("set_values", "message"),
    [
        (["replicas=2"], "at '': additional properties 'replicas' not allowed"),
        (["operator.imagee.tag=x"], "at '/operator': additional properties 'imagee' not allowed"),
        (["config.webhook.secret=s3cr3t"], "at '/config/webhook': additional properties 'secret' not allowed"),
        (["mlflow.persistence.sise=1Gi"], "at '/mlflow/persistence': additional properties 'sise' not allowed"),
        (["operator.securityContext.runAsRoot=true"], "additional properties 'runAsRoot' not allowed"),
        (["config.pollInterval=fast"], "at '/config/pollInterval'"),
        (["config.pollInterval=0"], "at '/config/pollInterval'"),
        (["rbac.create=maybe"], "at '/rbac/create': got string, want boolean"),
        (["operator.ports.metrics=70000"], "at '/operator/ports/metrics'"),
        (["config.webhook.register=sometimes"], "value must be one of 'auto', 'always', 'never'"),
        (["mlflow.backend.type=mysql"], "value must be one of 'sqlite', 'postgres'"),
        (["mlflow.artifacts.type=ftp"], "value must be one of 'local', 's3', 'azure', 'gcs'"),
        (["mlflow.artifacts.s3.endpoint=objects:7070"], "at '/mlflow/artifacts/s3/endpoint'"),
        (["config.namespaces={Team_A}"], "at '/config/namespaces/0'"),
        (["config.mlflow.trackingUri=mlflow:5000"], "at '/config/mlflow/trackingUri'"),
        (["monitoring.serviceMonitor.interval=30"], "at '/monitoring/serviceMonitor/interval'"),
        (["operator.image.pullPolicy=Sometimes"], "at '/operator/image/pullPolicy'"),
    ],
)
def test_schema_rejects_with_a_readable_message(set_values: list[str], message: str) -> None:
    stderr = render_error(set_values=set_values)
    assert "values don't meet the specifications of the schema" in stderr
    assert message in stderr, stderr


@pytest.mark.parametrize(
    ("set_values", "message"),
    [
        (
            ["mlflow.enabled=false"],
            "config.mlflow.trackingUri is required when the bundled MLflow is disabled",
        ),
        (
            ["mlflow.backend.type=postgres"],
            "mlflow.backend.postgres.existingSecret is required when mlflow.backend.type is postgres",
        ),
        (
            ["mlflow.artifacts.type=s3"],
            "mlflow.artifacts.s3.bucket is required when mlflow.artifacts.type is s3",
        ),
        (
            ["mlflow.artifacts.type=azure", "mlflow.artifacts.azure.account=acme"],
            "mlflow.artifacts.azure.container is required when mlflow.artifacts.type is azure",
        ),
        (
            ["mlflow.artifacts.type=gcs"],
            "mlflow.artifacts.gcs.bucket is required when mlflow.artifacts.type is gcs",
        ),
        (
            ["serviceAccount.create=false"],
            "serviceAccount.name is required when serviceAccount.create is false",
        ),
    ],
)
def test_cross_field_mistakes_fail_with_their_fix(set_values: list[str], message: str) -> None:
    assert message in render_error(set_values=set_values)


def test_numbers_given_with_set_are_accepted() -> None:
    # `helm --set x=0.5` hands the schema a string; a float setting must still accept it.
    render(set_values=["config.driftInterval=0.5", "monitoring.prometheusRule.servingErrorRatio=0.01"])


def walk(schema: dict[str, Any], path: str = "", options: bool = True) -> list[tuple[str, dict[str, Any]]]:
    """Every schema node with its values path; anyOf alternatives only when options=True."""
    nodes = [(path, schema)]
    for key, child in schema.get("properties", {}).items():
        nodes += walk(child, f"{path}/{key}", options)
    for keyword in ("items", "additionalProperties"):
        if isinstance(schema.get(keyword), dict):
            nodes += walk(schema[keyword], f"{path}/{keyword}", options)
    if options:
        for option in schema.get("anyOf", []):
            nodes += walk(option, path, options)
    return nodes


def test_every_object_in_the_schema_is_closed() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    for path, node in walk(schema):
        if node.get("type") == "object":
            assert "additionalProperties" in node, f"{path or '/'} accepts unknown keys"
            if "properties" in node:
                assert node["additionalProperties"] is False, f"{path} accepts unknown keys"


def test_every_setting_in_the_schema_is_described() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    for path, node in walk(schema, options=False):
        if path and not path.endswith(("/items", "/additionalProperties")):
            assert node.get("description"), f"{path} has no description"


# Blocks holding Kubernetes objects (or free-form maps) passed through as they are: the comment
# on the block documents it, their inner fields are Kubernetes' own.
PASSTHROUGH = {
    "resources",
    "podSecurityContext",
    "securityContext",
    "affinity",
    "nodeSelector",
    "tolerations",
    "extraEnv",
    "podAnnotations",
    "podLabels",
    "annotations",
    "labels",
    "commonLabels",
    "accessModes",
    "imagePullSecrets",
    "livenessProbe",
    "readinessProbe",
    "allowedHosts",
}


def test_every_value_is_in_the_schema_and_commented() -> None:
    """values.yaml and the schema describe the same keys, and each setting has a comment."""
    import yaml

    schema = json.loads((CHART / "values.schema.json").read_text())
    text = (CHART / "values.yaml").read_text()

    def in_schema(node: Any, sch: dict[str, Any], path: str) -> None:
        if not isinstance(node, dict) or "properties" not in sch:
            return
        for key, value in node.items():
            assert key in sch["properties"], f"{path}/{key} is not in the schema"
            in_schema(value, sch["properties"][key], f"{path}/{key}")

    in_schema(yaml.safe_load(text), schema, "")

    lines = text.splitlines()
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing blocks
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if stripped.startswith("-") or ":" not in stripped:
            continue
        key = stripped.split(":", 1)[0]
        is_block = stripped.endswith(":")
        ancestors = [k for _, k in stack]
        stack.append((indent, key))
        if is_block or PASSTHROUGH & set(ancestors):
            continue  # blocks are documented through their settings
        previous = lines[index - 1].strip()
        assert previous.startswith("#"), f"values.yaml line {index + 1} ({'.'.join([*ancestors, key])}) has no comment"
