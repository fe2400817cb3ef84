"""`helm install` into the local cluster, then the full flow under the chart's identity.

The local node runs the operator pod (image modelyard-operator:<appVersion>, built here) under
the real kubelet and containerd, with the pod's projected ServiceAccount token as its only
credentials: no kubeconfig reaches it. A TrainingRun trains and registers a model,
a ModelDeployment serves it, and a prediction comes back from the serving pod. That proves the
chart's RBAC sufficient; tests/unit/chart/test_chart_rbac.py proves it minimal.

The test namespace lies outside the session operator's watch pattern, and for the cluster-wide
variant that host operator (admin kubeconfig) is paused, so only the chart's operator acts.
"""

from __future__ import annotations

import json
import re
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client

from tests.helpers import condition, load_module, wait_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION = "modelyard.io", "v1alpha1"
FLOW_TIMEOUT = 420  # cold imports of sklearn + mlflow on 2 cores, training, then serving start
T = TypeVar("T")


chartlib = load_module("chartlib", REPO / "tests" / "unit" / "chart" / "chartlib.py")


def helm_env(cluster: Any) -> dict[str, str]:
    return {"KUBECONFIG": str(cluster.kubeconfig)}


@pytest.fixture
def chart_namespace(cluster: Any) -> Iterator[str]:
    """A namespace outside the session operator's watch pattern (it watches <session>-*)."""
    name = f"chart-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(cluster.api)
    # Pod Security "restricted": the chart's operator, MLflow, training and serving pods must pass.
    labels = {"modelyard.io/test": "true", "pod-security.kubernetes.io/enforce": "restricted"}
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
    wait_for(lambda: core.read_namespaced_service_account("default", name), 30, 1, "default ServiceAccount")
    yield name
    core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture(params=["namespaced", "cluster-wide"])
def release(request: pytest.FixtureRequest, cluster: Any, chart_namespace: str, crds: Any) -> Iterator[dict[str, Any]]:
    namespace = chart_namespace
    host_operator = None
    if request.param == "cluster-wide":
        # A cluster-wide chart operator would share objects with the session's host operator
        # (admin credentials): pause that one so only the chart's identity is at work.
        host_operator = request.getfixturevalue("operator")
        host_operator.stop()
    name = f"my-{uuid.uuid4().hex[:6]}"
    values = [
        "mlflow.enabled=false",
        f"config.mlflow.trackingUri={cluster.mlflow_uri}",
        "config.pollInterval=3",
        "config.driftInterval=3",
        "operator.livenessProbe.initialDelaySeconds=30",
    ]
    if request.param == "namespaced":
        values.append(f"config.namespaces={{{namespace}}}")
    try:
        proc = chartlib.helm(
            "install", name, str(chartlib.CHART), "--namespace", namespace, "--skip-crds",
            "--wait", "--timeout", "5m", *chartlib.values_args("defaults", values),
            env=helm_env(cluster),
        )  # fmt: skip
        assert proc.returncode == 0, f"helm install failed:\n{proc.stdout}\n{proc.stderr}"
        try:
            yield {"name": name, "namespace": namespace, "mode": request.param, "notes": proc.stdout}
        finally:
            chartlib.helm("uninstall", name, "--namespace", namespace, "--wait", env=helm_env(cluster))
    finally:
        if host_operator is not None:
            host_operator.start(**host_operator.extra_env)


def operator_pod(cluster: Any, rel: dict[str, Any]) -> Any:
    core = client.CoreV1Api(cluster.api)
    selector = f"app.kubernetes.io/instance={rel['name']},app.kubernetes.io/component=operator"
    pods: list[Any] = core.list_namespaced_pod(rel["namespace"], label_selector=selector).items
    assert len(pods) == 1, [p.metadata.name for p in pods]
    return pods[0]


def custom(cluster: Any, namespace: str, plural: str, name: str) -> dict[str, Any]:
    objects = client.CustomObjectsApi(cluster.api)
    return dict(objects.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name))  # type: ignore[call-overload]


def train_serve_predict(cluster: Any, ns: str) -> dict[str, Any]:
    """TrainingRun -> registered version -> ModelDeployment Ready -> a prediction from its pod."""
    model = f"chart-{ns}"
    train = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingRun",
        "metadata": {"name": "iris"},
        "spec": {
            "model": {"name": model},
            "estimator": {"type": "logistic_regression", "hyperparameters": {"max_iter": 500}},
            "dataset": {"builtin": "iris"},
            "promotion": {"alias": "champion", "metric": "accuracy", "minValue": 0.5},
        },
    }
    serve = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": "iris"},
        "spec": {"model": {"name": model, "alias": "champion"}, "replicas": 1},
    }
    applied = cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(train), check=False)
    assert applied.returncode == 0, applied.stderr

    def finished() -> dict[str, Any] | None:
        run = custom(cluster, ns, "trainingruns", "iris")
        return run if (run.get("status") or {}).get("phase") in ("Succeeded", "Failed") else None

    run = wait_for(finished, FLOW_TIMEOUT, 1, "TrainingRun iris to finish")
    assert run["status"]["phase"] == "Succeeded", run["status"]

    applied = cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(serve), check=False)
    assert applied.returncode == 0, applied.stderr

    def ready() -> dict[str, Any] | None:
        md = custom(cluster, ns, "modeldeployments", "iris")
        return md if condition(md, "Ready").get("status") == "True" else None

    md = wait_for(ready, FLOW_TIMEOUT, 1, "ModelDeployment iris to be Ready")
    assert md["status"]["resolvedVersion"] == "1"

    core = client.CoreV1Api(cluster.api)
    pods: list[Any] = core.list_namespaced_pod(ns, label_selector="modelyard.io/modeldeployment=iris").items
    serving = [p for p in pods if p.status.pod_ip and p.status.phase == "Running"]
    assert serving, [(p.metadata.name, p.status.phase) for p in pods]
    request = urllib.request.Request(
        f"http://{serving[0].status.pod_ip}:8080/predict",
        data=json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())
    return dict(answer)



def test_chart_install_runs_the_full_flow_under_its_service_account(cluster: Any, release: dict[str, Any]) -> None:
    ns = release["namespace"]
    assert f"kubectl -n {ns} rollout status deployment/{release['name']}-modelyard-operator" in release["notes"]

    # The operator runs as the chart's ServiceAccount and has no other credentials.
    pod = operator_pod(cluster, release)
    assert pod.spec.service_account_name == f"{release['name']}-modelyard-operator"
    assert pod.status.phase == "Running"
    container = pod.spec.containers[0]
    assert not [e.name for e in container.env or [] if e.name == "KUBECONFIG"]
    assert container.security_context.read_only_root_filesystem is True

    answer = train_serve_predict(cluster, ns)
    assert answer["modelVersion"] == "1", answer

    # Nothing was refused along the way: the grants were sufficient.
    log = cluster.pod_log(ns, operator_pod(cluster, release).metadata.name, "operator")
    assert log, "the local node captured no operator output"
    # kubernetes' ApiException prints "(403)" and "Reason: Forbidden"; kopf says "Not enough
    # permissions" (bare "403" also occurs in log timestamps, so it is not searched for).
    # A write into a namespace that is being deleted (another test's, torn down meanwhile) is refused
    # with a 403 whose body says NamespaceTerminating: that is not a missing grant. The log is read
    # record by record (each starts with kopf's "[date time]" prefix), so a traceback and the body
    # that explains it are judged together even when other threads log in between.
    records = re.split(r"\n(?=\[\d{4}-\d\d-\d\d )", log)
    assert len(records) > 1 and records[0].startswith("["), log[:500]  # the prefix is kopf's
    refused = [
        record for record in records
        if re.search(r"Forbidden|\(403\)|Not enough permissions", record)
        and "NamespaceTerminating" not in record
    ]
    assert not refused, "\n".join(refused[:5])


def test_chart_service_account_cannot_do_what_it_was_not_granted(cluster: Any, release: dict[str, Any]) -> None:
    sa = f"system:serviceaccount:{release['namespace']}:{release['name']}-modelyard-operator"

    def can(*args: str) -> bool:
        proc = cluster.kubectl("auth", "can-i", f"--as={sa}", *args, check=False)
        return proc.stdout.strip() == "yes"

    ns = release["namespace"]
    assert can("create", "deployments.apps", "-n", ns)
    assert can("patch", "trainingruns.modelyard.io/status", "-n", ns)
    assert not can("get", "secrets", "-n", ns)
    assert can("delete", "deployments.apps", "-n", ns)  # a Canary candidate is removed when it ends
    assert can("delete", "services", "-n", ns)  # a Shadow rollout's own Service
    assert not can("delete", "configmaps", "-n", ns)
    assert not can("delete", "jobs.batch", "-n", ns)
    assert not can("create", "clusterroles.rbac.authorization.k8s.io")
    assert can("create", "deployments.apps", "-n", "kube-system") is (release["mode"] == "cluster-wide")


def test_chart_upgrade_keeps_the_generated_webhook_secret(cluster: Any, release: dict[str, Any]) -> None:
    """The HMAC secret is random on install and must survive upgrades (helm lookup), or MLflow
    and the operator would stop agreeing on signatures after every `helm upgrade`."""
    core = client.CoreV1Api(cluster.api)
    secret_name = f"{release['name']}-modelyard-webhook"
    before = core.read_namespaced_secret(secret_name, release["namespace"]).data
    proc = chartlib.helm(
        "upgrade", release["name"], str(chartlib.CHART), "--namespace", release["namespace"],
        "--reuse-values", "--skip-crds", "--wait", "--timeout", "5m",
        env=helm_env(cluster),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert core.read_namespaced_secret(secret_name, release["namespace"]).data == before


@pytest.fixture
def bundled_release(cluster: Any, chart_namespace: str, crds: Any) -> Iterator[dict[str, Any]]:
    """The chart with its defaults for MLflow: the bundled server (modelyard-mlflow image)."""
    name = f"my-{uuid.uuid4().hex[:6]}"
    values = [
        # the local cluster has no storage provisioner: the bundled MLflow keeps data in an emptyDir
        "mlflow.persistence.enabled=false",
        "mlflow.workers=1",
        "config.pollInterval=3",
        f"config.namespaces={{{chart_namespace}}}",
    ]
    proc = chartlib.helm(
        "install", name, str(chartlib.CHART), "--namespace", chart_namespace, "--skip-crds",
        "--wait", "--timeout", "5m", *chartlib.values_args("defaults", values), env=helm_env(cluster),
    )  # fmt: skip
    assert proc.returncode == 0, f"helm install failed:\n{proc.stdout}\n{proc.stderr}"
    try:
        yield {"name": name, "namespace": chart_namespace, "mode": "bundled", "notes": proc.stdout}
    finally:
        chartlib.helm("uninstall", name, "--namespace", chart_namespace, "--wait", env=helm_env(cluster))


def test_bundled_mlflow_is_reached_by_service_name_and_the_operator_root_is_read_only(
    cluster: Any, bundled_release: dict[str, Any]
) -> None:
    ns, name = bundled_release["namespace"], bundled_release["name"]
    pod = operator_pod(cluster, bundled_release)
    # The operator's image cannot be written to at runtime.
    write = cluster.kubectl("-n", ns, "exec", pod.metadata.name, "--", "python", "-c", "open('/app/x', 'w')",
                            check=False)
    assert write.returncode != 0 and "Read-only file system" in write.stderr, write.stderr
    # Everyone talks to MLflow by its Service DNS name: resolved by CoreDNS, routed by kube-proxy.
    env = {e.name: e.value for e in pod.spec.containers[0].env or []}
    mlflow_url = f"http://{name}-modelyard-mlflow.{ns}.svc:5000"
    assert env["MODELYARD_MLFLOW_TRACKING_URI"] == mlflow_url

    answer = train_serve_predict(cluster, ns)
    assert answer["modelVersion"] == "1", answer

    # The version lives in the bundled server, not in the host's MLflow.
    core = client.CoreV1Api(cluster.api)
    ip = core.read_namespaced_service(f"{name}-modelyard-mlflow", ns).spec.cluster_ip
    query = f"http://{ip}:5000/api/2.0/mlflow/registered-models/get?name=chart-{ns}"
    with urllib.request.urlopen(query, timeout=10) as response:
        registered = json.loads(response.read())["registered_model"]
    assert registered["latest_versions"][0]["version"] == "1"
    run = custom(cluster, ns, "trainingruns", "iris")
    training_pods = core.list_namespaced_pod(ns, label_selector="modelyard.io/trainingrun=iris").items
    env_of_job = {e.name: e.value for e in training_pods[0].spec.containers[0].env or []}
    assert env_of_job["MLFLOW_TRACKING_URI"] == mlflow_url, run["status"]


@pytest.fixture
def postgres_s3_release(cluster: Any, chart_namespace: str, crds: Any, s3_store: Any) -> Iterator[dict[str, Any]]:
    """The chart's bundled MLflow on PostgreSQL (a database of its own in the harness's server,
    URI in a Secret) with artifacts in an S3-compatible store (a bucket of its own in versitygw,
    keys in a Secret): the production layout, on the local cluster."""
    from localcluster import cluster as localcluster
    from localcluster import stores
    from pyarrow import fs

    localcluster.start_postgres()
    ns = chart_namespace
    database = f"chart_{ns.replace('-', '_')}"
    bucket = f"mlflow-{ns}"
    fs.S3FileSystem(access_key=s3_store.access_key_id, secret_key=s3_store.secret_access_key,
                    region=s3_store.region, endpoint_override=s3_store.endpoint,
                    allow_bucket_creation=True).create_dir(bucket)
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_secret(ns, {"metadata": {"name": "mlflow-postgres"},
                                       "stringData": {"uri": stores.create_database(cluster.state, database)}})
    core.create_namespaced_secret(ns, {"metadata": {"name": "mlflow-s3"}, "stringData": {
        "AWS_ACCESS_KEY_ID": s3_store.access_key_id, "AWS_SECRET_ACCESS_KEY": s3_store.secret_access_key}})
    name = f"my-{uuid.uuid4().hex[:6]}"
    values = [
        "mlflow.backend.type=postgres",
        "mlflow.backend.postgres.existingSecret=mlflow-postgres",
        "mlflow.artifacts.type=s3",
        f"mlflow.artifacts.s3.bucket={bucket}",
        f"mlflow.artifacts.s3.endpoint={s3_store.endpoint}",
        f"mlflow.artifacts.s3.region={s3_store.region}",
        "mlflow.artifacts.s3.existingSecret=mlflow-s3",
        "mlflow.persistence.enabled=false",
        "mlflow.workers=1",
        "config.pollInterval=3",
        f"config.namespaces={{{ns}}}",
    ]
    proc = chartlib.helm(
        "install", name, str(chartlib.CHART), "--namespace", ns, "--skip-crds",
        "--wait", "--timeout", "5m", *chartlib.values_args("defaults", values), env=helm_env(cluster),
    )  # fmt: skip
    assert proc.returncode == 0, f"helm install failed:\n{proc.stdout}\n{proc.stderr}"
    try:
        yield {"name": name, "namespace": ns, "mode": "postgres-s3", "bucket": bucket,
               "bucket_dir": cluster.state / "s3" / "root" / bucket}
    finally:
        chartlib.helm("uninstall", name, "--namespace", ns, "--wait", env=helm_env(cluster))


def test_chart_mlflow_on_postgres_and_s3_runs_the_full_flow(cluster: Any, postgres_s3_release: dict[str, Any]) -> None:
    rel = postgres_s3_release
    ns, name = rel["namespace"], rel["name"]
    answer = train_serve_predict(cluster, ns)
    assert answer["modelVersion"] == "1", answer

    # The version's files are in the bucket, and clients only ever saw the server's proxy.
    assert list(rel["bucket_dir"].rglob("MLmodel")), f"no model in bucket {rel['bucket']}"
    core = client.CoreV1Api(cluster.api)
    ip = core.read_namespaced_service(f"{name}-modelyard-mlflow", ns).spec.cluster_ip
    import mlflow

    from tests.helpers import version_artifact_location

    mc = mlflow.MlflowClient(f"http://{ip}:5000")
    assert version_artifact_location(mc, f"chart-{ns}", "1").startswith("mlflow-artifacts:/")

    # Only the MLflow pod holds the store's keys; training and serving pods hold none.
    by_component: dict[str, list[Any]] = {}
    for pod in core.list_namespaced_pod(ns).items:
        labels = pod.metadata.labels or {}
        kind = labels.get("app.kubernetes.io/component") or (
            "serving" if "modelyard.io/modeldeployment" in labels else "training"
            if "modelyard.io/trainingrun" in labels else "other")
        by_component.setdefault(kind, []).append(pod)
    (mlflow_pod,) = by_component["mlflow"]
    assert [ref.secret_ref.name for ref in mlflow_pod.spec.containers[0].env_from or []] == ["mlflow-s3"]
    for kind in ("serving", "training", "operator"):
        for pod in by_component.get(kind, []):
            for ctr in pod.spec.containers:
                assert not ctr.env_from, (kind, ctr.env_from)
                assert not [e.name for e in ctr.env or [] if e.name.startswith("AWS_")], kind
    assert by_component.get("serving") and by_component.get("training")
