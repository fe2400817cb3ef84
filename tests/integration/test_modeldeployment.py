"""ModelDeployment follows the registry: alias (webhook and polling), stage, pinned version.

Real API server, local node running the serving image, real MLflow. Each test registers its
own model, so the shared MLflow never mixes versions between tests. The helpers at the top
are imported by the other test_modeldeployment_*.py and test_retrain*.py files.
"""

from __future__ import annotations

import json
import random
import statistics
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import mlflow
import numpy as np
import pytest
from kubernetes import client
from mlflow.exceptions import MlflowException

from tests.helpers import condition, event_reasons, kubectl_apply, mlflow_client, version_artifact_location, wait_for

pytestmark = pytest.mark.integration

GROUP, VERSION, PLURAL = "modelyard.io", "v1alpha1", "modeldeployments"
READY_TIMEOUT = 240  # cold mlflow + sklearn import and model download on 2 cores
VERSION_LABEL = "modelyard.io/model-version"
MD_LABEL = "modelyard.io/modeldeployment"


# -- helpers -------------------------------------------------------------------------------

def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def md_manifest(name: str, model: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelDeployment",
            "metadata": {"name": name}, "spec": {"model": model, **spec}}


def get_md(cluster: Any, namespace: str, name: str) -> dict[str, Any]:
    result: Any = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name)
    return dict(result)


def wait_condition(cluster: Any, namespace: str, name: str, type_: str, status: str,
                   reason: str | None = None, timeout: float = READY_TIMEOUT) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        md = get_md(cluster, namespace, name)
        c = condition(md, type_)
        ok = c.get("status") == status and (reason is None or c.get("reason") == reason)
        return md if ok else None
    try:
        return wait_for(check, timeout, interval=0.5, what=f"{name} {type_}={status}/{reason}")
    except AssertionError:
        raise AssertionError(f"{name}: {get_md(cluster, namespace, name).get('status')}") from None


def wait_serving(cluster: Any, namespace: str, name: str, version: str) -> dict[str, Any]:
    """Ready with the rollout to ``version`` complete."""
    def done() -> dict[str, Any] | None:
        md = get_md(cluster, namespace, name)
        st = md.get("status") or {}
        rolled = condition(md, "Progressing").get("reason") == "RolloutComplete"
        ready = condition(md, "Ready").get("status") == "True"
        return md if ready and rolled and st.get("servingVersion") == version else None
    try:
        return wait_for(done, READY_TIMEOUT, interval=0.5, what=f"{name} serving v{version}")
    except AssertionError:
        raise AssertionError(f"{name}: {get_md(cluster, namespace, name).get('status')}") from None


def deployment(cluster: Any, namespace: str, name: str) -> Any:
    return client.AppsV1Api(cluster.api).read_namespaced_deployment(name, namespace)


def deployment_version(cluster: Any, namespace: str, name: str) -> str | None:
    try:
        labels = deployment(cluster, namespace, name).spec.template.metadata.labels or {}
    except client.ApiException:
        return None
    return labels.get(VERSION_LABEL)


def pods(cluster: Any, namespace: str, name: str) -> list[Any]:
    core = client.CoreV1Api(cluster.api)
    return list(core.list_namespaced_pod(namespace, label_selector=f"{MD_LABEL}={name}").items)


def ready_endpoints(cluster: Any, namespace: str, service: str) -> list[str]:
    """Ready pod IPs behind the Service, as its EndpointSlices route them."""
    slices = client.DiscoveryV1Api(cluster.api).list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={service}").items
    return sorted(addr for s in slices for e in (s.endpoints or [])
                  if e.conditions and e.conditions.ready for addr in e.addresses)


IRIS_ROW = [5.1, 3.5, 1.4, 0.2]


def predict(ip: str, rows: list[list[float]] | None = None, timeout: float = 5) -> dict[str, Any]:
    body = json.dumps({"instances": rows or [IRIS_ROW]}).encode()
    request = urllib.request.Request(f"http://{ip}:8080/predict", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        result: dict[str, Any] = json.loads(response.read())
    return result


class PredictLoop:
    """Predicts continuously against the Service's ready endpoints, as a client would.

    ``rows``: draw each request's row from these (seeded); default the one IRIS_ROW.
    """

    def __init__(self, cluster: Any, namespace: str, service: str,
                 rows: list[list[float]] | None = None, pause: float = 0.02) -> None:
        self.cluster, self.namespace, self.service = cluster, namespace, service
        self.rows, self.pause = rows or [IRIS_ROW], pause
        self.ok: Counter[str] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PredictLoop:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        rng = random.Random(7)
        endpoints: list[str] = []
        refreshed, i = 0.0, 0
        while not self._stop.is_set():
            if time.monotonic() - refreshed > 0.5:  # kube-proxy-like endpoint refresh
                endpoints = ready_endpoints(self.cluster, self.namespace, self.service)
                refreshed = time.monotonic()
            if not endpoints:
                self.failures.append("no ready endpoint")
                time.sleep(0.1)
                continue
            ip = endpoints[i % len(endpoints)]
            i += 1
            try:
                self.ok[str(predict(ip, [rng.choice(self.rows)])["modelVersion"])] += 1
            except Exception as error:  # noqa: BLE001 - every failure is the finding
                self.failures.append(f"{ip}: {error!r}")
            time.sleep(self.pause)


def served_versions(cluster: Any, namespace: str, name: str) -> set[str]:
    return {str(predict(ip)["modelVersion"]) for ip in ready_endpoints(cluster, namespace, name)}


def iris_profile(x: np.ndarray, names: list[str], bins: int = 10) -> dict[str, Any]:
    """The reference profile of docs/contracts.md (quantile cuts + expected bin fractions)."""
    features = []
    for j, name in enumerate(names):
        cuts = np.unique(np.quantile(x[:, j], np.linspace(0, 1, bins + 1)[1:-1]))
        counts = np.bincount(np.searchsorted(cuts, x[:, j], side="left"), minlength=len(cuts) + 1)
        features.append({"name": name, "cuts": cuts.tolist(),
                         "expected": (counts / counts.sum()).tolist()})
    return {"version": 1, "sampleCount": len(x), "bins": bins, "features": features}


def log_iris_version(cluster: Any, model: str) -> str:
    """Train iris LogisticRegression, log it like training does, register a new version."""
    from sklearn.linear_model import LogisticRegression

    return log_iris_estimator(cluster, model, LogisticRegression(max_iter=500), profile=True)


def log_iris_estimator(cluster: Any, model: str, estimator: Any, profile: bool = False) -> str:
    """Fit ``estimator`` on iris, log it with its signature and register a new version.

    ``profile``: also log the input example and the drift profile, as training does.
    """
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame
    features = frame.drop(columns=["target"])
    estimator.fit(features.to_numpy(np.float64), frame["target"])
    extra: dict[str, Any] = {}
    if profile:
        extra = {"input_example": features.head(2),
                 "metadata": {"modelyard_profile": iris_profile(features.to_numpy(np.float64),
                                                                list(features.columns))}}
    mlflow.set_tracking_uri(cluster.mlflow_uri)
    mlflow.set_experiment(model)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            estimator, name="model", registered_model_name=model,
            signature=infer_signature(features, estimator.predict(features.to_numpy())), **extra,
        )
    return str(info.registered_model_version)


def register_broken_version(cluster: Any, model: str) -> str:
    """A version whose artifact exists but is not a loadable model."""
    mc = mlflow_client(cluster)
    experiment = mc.get_experiment_by_name(model) or mc.get_experiment(mc.create_experiment(model))
    run = mc.create_run(experiment.experiment_id)
    mc.log_text(run.info.run_id, "this is not an MLmodel file: [", "model/MLmodel")
    mc.set_terminated(run.info.run_id)
    mv = mc.create_model_version(model, f"{run.info.artifact_uri}/model", run.info.run_id)
    return str(mv.version)


def wait_deployment_version(cluster: Any, namespace: str, name: str, version: str,
                            timeout: float = 60, interval: float = 0.02) -> float:
    """Seconds until the Deployment's pod template pins ``version``."""
    started = time.monotonic()
    wait_for(lambda: deployment_version(cluster, namespace, name) == version, timeout,
             interval=interval, what=f"Deployment {name} -> v{version}")
    return time.monotonic() - started


def operator_metrics(operator: Any) -> str:
    with urllib.request.urlopen(operator.metrics_url, timeout=5) as response:
        return str(response.read().decode())


@pytest.fixture
def mlflow_webhook(cluster: Any, operator: Any) -> Iterator[str]:
    """Register the operator's receiver in MLflow for one test, then remove it."""
    mc = mlflow_client(cluster)
    try:
        hook = mc.create_webhook(
            name=unique("modelyard-test"), url=operator.webhook_url,
            secret=operator.webhook_secret,
            events=["model_version.created", "model_version_alias.created",
                    "model_version_alias.deleted"])
    except MlflowException as error:
        raise AssertionError(
            "MLflow refused the operator's webhook. The test MLflow server must run with "
            "MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https, MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true "
            f"(plain-http receiver on the pod bridge) and MLFLOW_WEBHOOK_CACHE_TTL=1: {error}"
        ) from error
    yield str(hook.webhook_id)
    mc.delete_webhook(hook.webhook_id)


def no_webhooks_for(cluster: Any, operator: Any) -> None:
    mc = mlflow_client(cluster)
    for hook in mc.list_webhooks():
        if hook.url == operator.webhook_url:
            mc.delete_webhook(hook.webhook_id)


def alias_flip_latencies(cluster: Any, namespace: str, name: str, model: str,
                         versions: tuple[str, str], flips: int) -> list[float]:
    mc, latencies = mlflow_client(cluster), []
    for i in range(flips):
        target = versions[(i + 1) % 2]
        started = time.monotonic()
        mc.set_registered_model_alias(model, "champion", target)
        wait_deployment_version(cluster, namespace, name, target)
        latencies.append(time.monotonic() - started)
    return latencies


# -- tests ---------------------------------------------------------------------------------

def test_alias_follow_polling_only(cluster: Any, namespace: str, operator: Any,
                                   record_property: Any) -> None:
    """No webhook: the shared watcher notices the alias move within a poll interval."""
    no_webhooks_for(cluster, operator)
    model, name = unique("iris"), "iris-poll"
    v1, v2 = log_iris_version(cluster, model), log_iris_version(cluster, model)
    mlflow_client(cluster).set_registered_model_alias(model, "champion", v1)
    kubectl_apply(cluster, namespace, md_manifest(name, {"name": model, "alias": "champion"}))
    wait_serving(cluster, namespace, name, v1)
    latencies = alias_flip_latencies(cluster, namespace, name, model, (v1, v2), 3)
    record_property("alias_to_deployment_polling_p50_s", statistics.median(latencies))
    print(f"polling-only alias->Deployment latencies: {latencies}")
    assert max(latencies) < 3 + 3  # MODELYARD_POLL_INTERVAL=3 in the operator fixture


@pytest.mark.mlflow_backend
def test_alias_follow_with_webhook(cluster: Any, namespace: str, operator: Any,
                                   mlflow_webhook: str, record_property: Any) -> None:
    model, name = unique("iris"), "iris"
    v1 = log_iris_version(cluster, model)
    mc = mlflow_client(cluster)
    mc.set_registered_model_alias(model, "champion", v1)
    kubectl_apply(cluster, namespace, md_manifest(name, {"name": model, "alias": "champion"}))
    md = wait_serving(cluster, namespace, name, v1)
    cluster.kubectl("wait", "--for=condition=Ready", f"md/{name}", "-n", namespace, "--timeout=60s")
    assert served_versions(cluster, namespace, name) == {v1}
    st = md["status"]
    assert st["url"] == f"http://{name}.{namespace}.svc.cluster.local:80"
    assert (st["selector"], st["resolvedVersion"], st["modelUri"]) == (
        "alias=champion", v1, f"models:/{model}/{v1}")

    v2 = log_iris_version(cluster, model)
    latencies = alias_flip_latencies(cluster, namespace, name, model, (v1, v2), 5)
    record_property("alias_to_deployment_webhook_p50_s", statistics.median(latencies))
    print(f"webhook alias->Deployment latencies: {latencies}")
    assert statistics.median(latencies) < 1.0
    md = wait_serving(cluster, namespace, name, v2)
    assert served_versions(cluster, namespace, name) == {v2}
    # Serving pods fetch the model through MLflow's artifact proxy and hold no store keys.
    assert version_artifact_location(mc, model, v2).startswith("mlflow-artifacts:/")
    for pod in pods(cluster, namespace, name):
        for ctr in pod.spec.containers:
            assert not [e.name for e in ctr.env or [] if e.name.startswith("AWS_")], ctr.env
            assert not ctr.env_from, ctr.env_from
    st = md["status"]
    assert (st["resolvedVersion"], st["previousVersion"]) == (v2, v1)
    assert st["lastPromotionTime"]
    assert {"Promoted"} <= event_reasons(cluster, namespace, name, "ModelDeployment")
    table = cluster.kubectl("get", "md", name, "-n", namespace).stdout
    assert "alias=champion" in table and model in table and "1/1" in table
    scraped = operator_metrics(operator)
    assert f'modelyard_operator_promotions_total{{from_version="{v1}",model="{model}",to_version="{v2}"}}' in scraped
    assert 'modelyard_operator_webhook_events_total{event="model_version_alias.created",verified="true"}' in scraped
    assert 'modelyard_operator_reconciles_total{kind="ModelDeployment",result="ok"}' in scraped
    assert "modelyard_operator_registry_poll_duration_seconds_count" in scraped


def test_stage_follow(cluster: Any, namespace: str, operator: Any) -> None:
    model, name = unique("iris"), "iris-stage"
    v1, v2 = log_iris_version(cluster, model), log_iris_version(cluster, model)
    mc = mlflow_client(cluster)
    mc.transition_model_version_stage(model, v1, "Production")
    kubectl_apply(cluster, namespace, md_manifest(name, {"name": model, "stage": "Production"}))
    wait_serving(cluster, namespace, name, v1)
    mc.transition_model_version_stage(model, v2, "Production", archive_existing_versions=True)
    wait_deployment_version(cluster, namespace, name, v2, timeout=3 + 10)
    wait_serving(cluster, namespace, name, v2)
    assert served_versions(cluster, namespace, name) == {v2}


def test_pinned_version_never_moves(cluster: Any, namespace: str, operator: Any) -> None:
    model, name = unique("iris"), "iris-pinned"
    v1, v2 = log_iris_version(cluster, model), log_iris_version(cluster, model)
    mc = mlflow_client(cluster)
    kubectl_apply(cluster, namespace, md_manifest(name, {"name": model, "version": v1}))
    wait_serving(cluster, namespace, name, v1)
    generation = deployment(cluster, namespace, name).metadata.generation
    mc.set_registered_model_alias(model, "champion", v2)
    mc.transition_model_version_stage(model, v2, "Production")
    time.sleep(3 * 3)  # three poll intervals
    assert deployment_version(cluster, namespace, name) == v1
    assert deployment(cluster, namespace, name).metadata.generation == generation
    assert get_md(cluster, namespace, name)["status"]["resolvedVersion"] == v1
