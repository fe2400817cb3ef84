"""helm lint and helm template of the modelyard chart, for every value set."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import chartlib
import pytest
import yaml
from chartlib import CHART, VALUE_SETS, container, env_of, of_kind, one, render

STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "helm.sh/chart",
)
CLUSTER_SCOPED = {
    "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Namespace",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
}


def chart_meta() -> dict[str, Any]:
    meta: dict[str, Any] = yaml.safe_load((CHART / "Chart.yaml").read_text())
    return meta


# -- lint and render -----------------------------------------------------------------------


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_lint_is_clean(value_set: str) -> None:
    proc = chartlib.helm(
        "lint", "--strict", str(CHART), "--kube-version", chartlib.KUBE_VERSION, *chartlib.values_args(value_set)
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_every_object_has_standard_labels_and_a_namespace(value_set: str) -> None:
    objects = render(value_set, release="rel", namespace="ns1")
    assert objects
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        missing = [k for k in STANDARD_LABELS if k not in labels]
        assert not missing, f"{obj['kind']}/{obj['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/version"] == chart_meta()["appVersion"]
        assert labels["app.kubernetes.io/instance"] == "rel"
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"].get("namespace"), f"{obj['kind']}/{obj['metadata']['name']} has no namespace"


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_pod_templates_carry_the_labels_their_selectors_need(value_set: str) -> None:
    objects = render(value_set)
    services = of_kind(objects, "Service")
    for deployment in of_kind(objects, "Deployment"):
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod_labels.items()
        for key in STANDARD_LABELS:
            assert key in pod_labels
    for service in services:
        matching = [
            d
            for d in of_kind(objects, "Deployment")
            if service["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matching) == 1, f"Service {service['metadata']['name']} selects {len(matching)} Deployments"


# -- the operator Deployment ---------------------------------------------------------------


def test_operator_runs_the_app_version_image_securely() -> None:
    deployment = one(render(), "Deployment", "operator")
    pod = deployment["spec"]["template"]["spec"]
    ctr = container(deployment, "operator")
    assert ctr["image"] == f"modelyard-operator:{chart_meta()['appVersion']}"
    assert ctr["imagePullPolicy"] == "IfNotPresent"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = ctr["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert ctr["resources"]["requests"] and ctr["resources"]["limits"]["memory"]
    # The only writable path is an emptyDir at /tmp, which is also HOME.
    mounts = {m["mountPath"]: m["name"] for m in ctr["volumeMounts"]}
    assert mounts == {"/tmp": "tmp"}
    assert env_of(deployment)["HOME"]["value"] == "/tmp"
    # A standalone kopf must never run twice, not even during a rollout.
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_image_tag_and_repository_are_configurable() -> None:
    deployment = one(
        render(set_values=["operator.image.repository=myacr.azurecr.io/modelyard-operator", "operator.image.tag=abc"]),
        "Deployment",
        "operator",
    )
    assert container(deployment)["image"] == "myacr.azurecr.io/modelyard-operator:abc"


def test_probes_hit_kopfs_health_endpoint() -> None:
    objects = render()
    deployment = one(objects, "Deployment", "operator")
    ctr = container(deployment)
    ports = {p["name"]: p["containerPort"] for p in ctr["ports"]}
    assert ports == {"health": 8080, "webhook": 8081, "metrics": 9090}
    for probe in ("livenessProbe", "readinessProbe"):
        assert ctr[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    env = env_of(deployment)
    assert env["MODELYARD_HEALTH_PORT"]["value"] == "8080"


def test_operator_service_exposes_webhook_and_metrics() -> None:
    service = one(render(), "Service", "operator")
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert ports == {"webhook": (8081, "webhook"), "metrics": (9090, "metrics")}


def contract_env_names() -> set[str]:
    """MODELYARD_* names of the operator settings table in docs/contracts.md."""
    text = (chartlib.REPO / "docs" / "contracts.md").read_text()
    section = text.split("## Operator", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            names.update(f"MODELYARD_{n}" for n in re.findall(r"`([A-Z_]+)`", first_cell))
    return names


def test_operator_env_is_exactly_the_contract() -> None:
    expected = contract_env_names()
    assert len(expected) >= 18, expected  # the table parsed
    for value_set in VALUE_SETS:
        env = env_of(one(render(value_set), "Deployment", "operator"))
        set_names = {n for n in env if n.startswith("MODELYARD_")}
        unknown = set_names - expected
        assert not unknown, f"{value_set}: env not in docs/contracts.md: {unknown}"
        # Everything is set explicitly (the operator's defaults are for running outside the
        # chart); only the webhook secret is absent when webhooks are off.
        optional = {"MODELYARD_WEBHOOK_SECRET"}
        assert expected - set_names <= optional, f"{value_set}: missing {expected - set_names}"


def test_operator_env_names_match_the_settings_model() -> None:
    from modelyard_operator.settings import Settings

    fields = {f"MODELYARD_{name.upper()}" for name in Settings.model_fields}
    assert contract_env_names() <= fields, contract_env_names() - fields


def operator_settings(monkeypatch: pytest.MonkeyPatch, value_set: str, set_values: list[str] | None = None) -> Any:
    """The operator's own Settings, parsed from the env the chart renders."""
    from modelyard_operator.settings import Settings

    env = env_of(one(render(value_set, set_values=set_values or []), "Deployment", "operator"))
    for name in list(Settings.model_fields):
        monkeypatch.delenv(f"MODELYARD_{name.upper()}", raising=False)
    for name, item in env.items():
        if name.startswith("MODELYARD_"):
            monkeypatch.setenv(name, item.get("value", "from-a-secret"))
    return Settings()


def test_rendered_env_parses_into_the_operator_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = operator_settings(monkeypatch, "defaults", ["config.namespaces={a,b}"])
    assert settings.mlflow_tracking_uri == "http://modelyard-mlflow.modelyard-system.svc:5000"
    assert settings.pod_mlflow_tracking_uri is None
    assert settings.mlflow_credentials_secret is None
    assert settings.gpu_node_selector == {"nvidia.com/gpu.present": "true"}
    assert settings.gpu_tolerations == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert settings.training_image == "modelyard-training:0.1.0"
    assert settings.serving_image == "modelyard-serving:0.1.0"
    assert settings.poll_interval == 30.0
    assert settings.namespaces == ["a", "b"]
    assert (settings.health_port, settings.webhook_port, settings.metrics_port) == (8080, 8081, 9090)
    assert settings.webhook_register is True


def test_gpu_defaults_follow_the_values(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = operator_settings(monkeypatch, "gpu-custom")
    assert settings.gpu_node_selector == {"agentpool": "gpu"}
    assert settings.gpu_tolerations == [{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]
    assert settings.poll_interval == 10.0
    assert settings.drift_interval == 15.5


def test_gpu_defaults_match_the_local_fake_gpu_nodes() -> None:
    """The default selector/toleration must schedule onto nodes labelled and tainted the way
    the NVIDIA GPU operator (and our fake GPU nodes) do it."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    gpu = values["config"]["gpu"]
    assert gpu["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    taint = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    assert any(
        t["key"] == taint["key"] and t["operator"] == "Exists" and t["effect"] == taint["effect"]
        for t in gpu["tolerations"]
    )


# -- MLflow: bundled, external, Postgres ---------------------------------------------------


def test_bundled_mlflow_is_wired_to_the_operator() -> None:
    from modelyard_operator.modeldeployment import webhook

    objects = render(release="my", namespace="ml")
    mlflow = one(objects, "Deployment", "mlflow")
    ctr = container(mlflow, "mlflow")
    assert ctr["command"] == ["mlflow", "server"]
    args = ctr["args"]
    assert "--backend-store-uri=sqlite:////mlflow/mlflow.db" in args
    assert "--serve-artifacts" in args
    assert "--artifacts-destination=/mlflow/artifacts" in args
    allowed = next(a for a in args if a.startswith("--allowed-hosts=")).split("=", 1)[1].split(",")
    assert "my-modelyard-mlflow.ml.svc:*" in allowed
    assert ctr["securityContext"]["readOnlyRootFilesystem"] is True
    assert mlflow["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    pvc = one(objects, "PersistentVolumeClaim", "mlflow")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    mlflow_env = {e["name"]: e for e in ctr["env"]}
    assert mlflow_env["MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY"]["valueFrom"]["secretKeyRef"]["name"] == (
        "my-modelyard-mlflow-webhooks"
    )
    assert mlflow_env["MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS"]["value"] == "true"

    env = env_of(one(objects, "Deployment", "operator"))
    assert env["MODELYARD_MLFLOW_TRACKING_URI"]["value"] == "http://my-modelyard-mlflow.ml.svc:5000"
    assert env["MODELYARD_WEBHOOK_REGISTER"]["value"] == "true"
    # The registered URL is the operator's webhook Service port and the receiver's real path.
    assert env["MODELYARD_WEBHOOK_URL"]["value"] == f"http://my-modelyard-operator.ml.svc:8081{webhook.PATH}"
    secret_ref = env["MODELYARD_WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"]
    secret = next(s for s in of_kind(objects, "Secret") if s["metadata"]["name"] == secret_ref["name"])
    assert secret_ref["key"] in secret["data"]


def test_generated_mlflow_encryption_key_is_a_fernet_key() -> None:
    import base64

    from cryptography.fernet import Fernet

    secret = next(s for s in of_kind(render(), "Secret") if s["metadata"]["name"].endswith("-mlflow-webhooks"))
    key = base64.b64decode(secret["data"]["encryption-key"])
    Fernet(key)  # raises on a malformed key


def test_external_mlflow_uses_credentials_and_no_bundled_server() -> None:
    objects = render("mlflow-external")
    assert not [o for o in objects if o["metadata"]["labels"]["app.kubernetes.io/component"] == "mlflow"]
    deployment = one(objects, "Deployment", "operator")
    env = env_of(deployment)
    assert env["MODELYARD_MLFLOW_TRACKING_URI"]["value"] == "https://mlflow.example.internal"
    assert env["MODELYARD_MLFLOW_CREDENTIALS_SECRET"]["value"] == "mlflow-credentials"
    assert env["MODELYARD_MLFLOW_UI_URL"]["value"] == "https://mlflow.example.com"
    assert container(deployment)["envFrom"] == [{"secretRef": {"name": "mlflow-credentials"}}]
    # register=auto never registers toward an external MLflow.
    assert env["MODELYARD_WEBHOOK_REGISTER"]["value"] == "false"
    assert env["MODELYARD_WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"] == {"name": "modelyard-webhook", "key": "hmac"}
    assert not of_kind(objects, "Secret"), "an existing webhook Secret must not be generated"


def test_bundled_mlflow_on_postgres_reads_the_uri_from_a_secret() -> None:
    objects = render("mlflow-postgres")
    mlflow = one(objects, "Deployment", "mlflow")
    ctr = container(mlflow)
    assert "--backend-store-uri=$(MLFLOW_BACKEND_STORE_URI)" in ctr["args"]
    env = {e["name"]: e for e in ctr["env"]}
    assert env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"] == {"name": "mlflow-postgres", "key": "uri"}
    assert "--artifacts-destination=wasbs://mlflow@account.blob.core.windows.net/artifacts" in ctr["args"]
    assert "AZURE_STORAGE_CONNECTION_STRING" in env
    assert not of_kind(objects, "PersistentVolumeClaim")
    assert mlflow["spec"]["template"]["spec"]["volumes"][0] == {"name": "data", "emptyDir": {}}
    assert env["MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "mlflow-webhook-key"
    assert "mlflow.example.com" in next(a for a in ctr["args"] if a.startswith("--allowed-hosts="))


def test_bundled_mlflow_on_postgres_and_an_s3_compatible_store() -> None:
    objects = render("mlflow-postgres-s3")
    ctr = container(one(objects, "Deployment", "mlflow"))
    assert "--backend-store-uri=$(MLFLOW_BACKEND_STORE_URI)" in ctr["args"]
    assert "--artifacts-destination=s3://mlflow/artifacts" in ctr["args"] and "--serve-artifacts" in ctr["args"]
    env = {e["name"]: e for e in ctr["env"]}
    assert env["MLFLOW_S3_ENDPOINT_URL"]["value"] == "http://objects.storage.svc:7070"
    assert env["AWS_DEFAULT_REGION"]["value"] == "us-east-1"
    assert ctr["envFrom"] == [{"secretRef": {"name": "mlflow-s3"}}]
    # The keys stay with MLflow: the operator (and the pods it makes) get none.
    operator = container(one(objects, "Deployment", "operator"))
    assert "envFrom" not in operator and not [n for n in env_of(one(objects, "Deployment", "operator"))
                                               if n.startswith("AWS_")]
    assert not of_kind(objects, "PersistentVolumeClaim")


@pytest.mark.parametrize(("set_values", "destination", "secret"), [
    (["mlflow.artifacts.type=azure", "mlflow.artifacts.azure.account=acme", "mlflow.artifacts.azure.container=ml",
      "mlflow.artifacts.azure.existingSecret=mlflow-azure"],
     "wasbs://ml@acme.blob.core.windows.net/artifacts", "mlflow-azure"),
    (["mlflow.artifacts.type=s3", "mlflow.artifacts.s3.bucket=models", "mlflow.artifacts.s3.prefix=team/a/"],
     "s3://models/team/a", None),
    (["mlflow.artifacts.type=s3", "mlflow.artifacts.s3.bucket=models", "mlflow.artifacts.destination=s3://x/y"],
     "s3://x/y", None),
])
def test_artifact_destination_follows_the_store_type(set_values: list[str], destination: str,
                                                     secret: str | None) -> None:
    ctr = container(one(render(set_values=set_values), "Deployment", "mlflow"))
    assert f"--artifacts-destination={destination}" in ctr["args"]
    assert ctr.get("envFrom") == ([{"secretRef": {"name": secret}}] if secret else None)
    assert "MLFLOW_S3_ENDPOINT_URL" not in {e["name"] for e in ctr["env"]}


def test_bundled_mlflow_on_gcs_mounts_the_service_account_key() -> None:
    deployment = one(render("mlflow-gcs"), "Deployment", "mlflow")
    ctr = container(deployment)
    assert "--artifacts-destination=gs://acme-mlflow/prod/artifacts" in ctr["args"]
    env = {e["name"]: e for e in ctr["env"]}
    assert env["GOOGLE_APPLICATION_CREDENTIALS"]["value"] == "/etc/mlflow/gcs/sa.json"
    assert {"name": "gcs-key", "mountPath": "/etc/mlflow/gcs", "readOnly": True} in ctr["volumeMounts"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["gcs-key"]["secret"] == {"secretName": "mlflow-gcs",
                                            "items": [{"key": "sa.json", "path": "sa.json"}]}


def test_webhook_register_modes() -> None:
    def register(*set_values: str) -> str:
        env = env_of(one(render(set_values=list(set_values)), "Deployment", "operator"))
        return str(env["MODELYARD_WEBHOOK_REGISTER"]["value"])

    assert register() == "true"
    assert register("config.webhook.register=never") == "false"
    assert register("config.webhook.enabled=false") == "false"
    external = ("mlflow.enabled=false", "config.mlflow.trackingUri=http://x:5000")
    assert register(*external) == "false"
    assert register(*external, "config.webhook.register=always") == "true"


def test_minimal_set_renders_only_the_operator() -> None:
    objects = render("minimal")
    assert sorted(o["kind"] for o in objects) == ["Deployment", "Service"]
    deployment = one(objects, "Deployment", "operator")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "modelyard-operator"
    assert "MODELYARD_WEBHOOK_SECRET" not in env_of(deployment)


# -- monitoring ----------------------------------------------------------------------------


def test_monitoring_is_off_by_default() -> None:
    kinds = {o["kind"] for o in render()}
    assert not kinds & {"ServiceMonitor", "PrometheusRule", "ConfigMap"}


def test_monitoring_objects_carry_the_prometheus_release_label() -> None:
    objects = render("monitoring")
    monitor = one(objects, "ServiceMonitor")
    rule = one(objects, "PrometheusRule")
    for obj in (monitor, rule):
        assert obj["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
    service = one(objects, "Service", "operator")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    alerts = set(chartlib.rule_exprs(objects))
    assert {
        "ModelyardServingErrorRateHigh",
        "ModelyardServingLatencyHigh",
        "ModelyardModelDeploymentDegraded",
        "ModelyardTrainingRunFailed",
        "ModelyardDriftHigh",
    } <= alerts


def test_dashboards_ship_as_sidecar_configmaps() -> None:
    objects = render("monitoring", set_values=["monitoring.dashboards.namespace=grafana"])
    configmaps = of_kind(objects, "ConfigMap")
    shipped = {key for cm in configmaps for key in cm["data"]}
    assert shipped == set(chartlib.load_dashboards())
    for cm in configmaps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["namespace"] == "grafana"
        assert cm["metadata"]["annotations"]["grafana_folder"] == "modelyard"


def test_alert_thresholds_come_from_values() -> None:
    exprs = chartlib.rule_exprs(
        render(
            "monitoring",
            set_values=[
                "monitoring.prometheusRule.servingP99LatencySeconds=0.25",
                "monitoring.prometheusRule.driftScoreThreshold=0.3",
            ],
        )
    )
    assert exprs["ModelyardServingLatencyHigh"].rstrip().endswith("> 0.25")
    assert exprs["ModelyardDriftHigh"].rstrip().endswith("> 0.3")


def render_notes(tmp_path: Path, *set_values: str) -> str:
    """NOTES.txt as `helm install` would print it.

    `helm install --dry-run` insists on reaching a cluster, and `helm template` skips NOTES, so
    a copy of the chart renders the same text through an ordinary template.
    """
    chart = tmp_path / "modelyard"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "_notes_under_test.tpl").write_text(
        '{{- define "notes-under-test" -}}\n' + notes + "{{- end }}\n"
    )
    (chart / "templates" / "notes-under-test.yaml").write_text('text: {{ include "notes-under-test" . | toJson }}\n')
    proc = chartlib.helm(
        "template",
        "rel",
        str(chart),
        "--namespace",
        "ns1",
        "--show-only",
        "templates/notes-under-test.yaml",
        *(arg for item in set_values for arg in ("--set", item)),
    )
    assert proc.returncode == 0, proc.stderr
    text: str = yaml.safe_load(proc.stdout)["text"]
    return text


def test_notes_tell_what_to_run_next(tmp_path: Path) -> None:
    notes = render_notes(tmp_path)
    assert "kubectl -n ns1 rollout status deployment/rel-modelyard-operator" in notes
    assert "kubectl -n ns1 port-forward svc/rel-modelyard-mlflow 5000:5000" in notes
    assert "registers its webhook (http://rel-modelyard-operator.ns1.svc:8081/webhooks/mlflow)" in notes
    assert "kubectl apply -f k8s/examples/trainingrun-promotion.yaml" in notes
    assert "kubectl wait --for=condition=Ready modeldeployment/iris" in notes
    assert "Monitoring" not in notes
    for example in ("trainingrun-promotion.yaml", "modeldeployment-alias.yaml"):
        assert (chartlib.REPO / "k8s" / "examples" / example).is_file(), f"NOTES.txt names a missing {example}"


def test_notes_explain_manual_webhook_registration_for_external_mlflow(tmp_path: Path) -> None:
    notes = render_notes(
        tmp_path,
        "mlflow.enabled=false",
        "config.mlflow.trackingUri=https://mlflow.example.com",
        "config.namespaces={team-a}",
        "monitoring.dashboards.enabled=true",
    )
    assert "The operator uses https://mlflow.example.com" in notes
    assert "register this webhook in MLflow" in notes
    assert "get secret rel-modelyard-webhook" in notes
    assert "only these namespaces: team-a" in notes
    assert "kubectl -n team-a apply -f k8s/examples/modeldeployment-alias.yaml" in notes
    assert 'Grafana dashboards appear in folder "modelyard"' in notes
