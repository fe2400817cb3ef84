"""What `bench_operator.py` puts on the cluster and in MLflow, and takes away again.

Everything it creates is named after one bench id, so it never touches another engineer's
objects on a shared cluster: a ``bench-<id>`` namespace, kwok nodes ``bench-<id>-<n>`` with a
NoSchedule taint (no other pod lands there), registered models ``bench-<id>-m<n>`` and one
MLflow webhook. Pods of the ModelDeployments tolerate the taint and select those nodes, so kwok
marks them Running and Ready without a process behind them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GROUP, VERSION = "modelyard.io", "v1alpha1"
NODE_LABEL = "modelyard.io/bench-node"
TAINT = {"key": "modelyard.io/bench", "value": "true", "effect": "NoSchedule"}
TOLERATION = {"key": TAINT["key"], "operator": "Exists", "effect": "NoSchedule"}
PODS_PER_NODE = 110
ALIAS = "champion"
WEBHOOK_EVENTS = ["model_version.created", "model_version_alias.created",
                  "model_version_alias.deleted"]


@dataclass
class Bench:
    """One bench run's names and clients."""

    bench_id: str
    api: Any  # kubernetes ApiClient for the cluster
    mlflow_uri: str
    kubectl: Path
    kubeconfig: Path
    nodes: list[str] = field(default_factory=list)
    node_uids: dict[str, str] = field(default_factory=dict)
    leases: LeaseKeeper | None = None
    models: list[str] = field(default_factory=list)
    webhook_id: str | None = None
    experiment_id: str | None = None

    @property
    def namespace(self) -> str:
        return f"bench-{self.bench_id}"

    def mlflow(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.mlflow_uri, registry_uri=self.mlflow_uri)

    def raw(self, path: str) -> str:
        """``kubectl get --raw`` (the API server's own /metrics)."""
        return subprocess.run([str(self.kubectl), f"--kubeconfig={self.kubeconfig}", "get", "--raw",
                               path], capture_output=True, text=True, check=True, timeout=60).stdout


def parallel(fn: Callable[[Any], Any], items: Iterable[Any], workers: int = 4) -> list[Any]:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


# -- cluster side --------------------------------------------------------------------------

def ensure_crds(bench: Bench, crd_dir: Path) -> None:
    """Create the CRDs only when absent: never overwrite what another engineer installed."""
    from kubernetes import client

    ext = client.ApiextensionsV1Api(bench.api)
    import yaml

    for path in sorted(crd_dir.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        with contextlib.suppress(client.ApiException):
            ext.read_custom_resource_definition(crd["metadata"]["name"])
            continue
        ext.create_custom_resource_definition(crd)
    subprocess.run([str(bench.kubectl), f"--kubeconfig={bench.kubeconfig}", "wait",
                    "--for=condition=Established", "--timeout=60s", "crd/modeldeployments.modelyard.io",
                    "crd/trainingruns.modelyard.io"], check=True, capture_output=True)


def create_namespace(bench: Bench) -> None:
    from kubernetes import client

    core = client.CoreV1Api(bench.api)
    core.create_namespace({"metadata": {"name": bench.namespace,
                                        "labels": {"modelyard.io/bench": bench.bench_id}}})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # objects with pods need the default ServiceAccount
        with contextlib.suppress(client.ApiException):
            core.read_namespaced_service_account("default", bench.namespace)
            return
        time.sleep(0.2)


def create_nodes(bench: Bench, pods: int) -> None:
    """Enough tainted kwok nodes for ``pods`` pods (kwok keeps nodes with its annotation)."""
    from kubernetes import client

    core = client.CoreV1Api(bench.api)
    capacity = {"cpu": "64", "memory": "512Gi", "pods": str(PODS_PER_NODE)}
    for i in range(max(1, math.ceil(pods / PODS_PER_NODE))):
        name = f"bench-{bench.bench_id}-{i}"
        core.create_node({
            "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake"},
                         "labels": {"kubernetes.io/hostname": name, "type": "kwok",
                                    NODE_LABEL: bench.bench_id}},
            "spec": {"taints": [TAINT]},
        })
        node = core.read_node(name)
        bench.nodes.append(name)
        bench.node_uids[name] = node.metadata.uid
        core.patch_node_status(name, {"status": {"capacity": capacity, "allocatable": capacity}})
    time.sleep(2)  # kwok creates the nodes' leases right away when it keeps them
    coordination = client.CoordinationV1Api(bench.api)
    try:
        coordination.read_namespaced_lease(bench.nodes[0], "kube-node-lease")
    except client.ApiException as error:
        if error.status != 404:
            raise
        bench.leases = LeaseKeeper(bench)


class LeaseKeeper:
    """Renews the bench nodes' leases when kwok does not (run without
    --node-lease-duration-seconds, its heartbeat stage writes node status only every ~10
    minutes): without them the node controller marks the nodes NotReady after ~50 s, every
    pod flips to NotReady and back, and the steady state would not be steady."""

    def __init__(self, bench: Bench, every: float = 10) -> None:
        from kubernetes import client

        self._api = client.CoordinationV1Api(bench.api)
        self._bench, self._every = bench, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _lease(self, node: str) -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        owner = {"apiVersion": "v1", "kind": "Node", "name": node,
                 "uid": self._bench.node_uids[node]}
        return {"metadata": {"name": node, "ownerReferences": [owner]},
                "spec": {"holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": now}}

    def _run(self) -> None:
        from kubernetes import client

        while not self._stop.is_set():
            for node in list(self._bench.nodes):
                with contextlib.suppress(client.ApiException):
                    try:
                        self._api.patch_namespaced_lease(node, "kube-node-lease", self._lease(node))
                    except client.ApiException as error:
                        if error.status != 404:
                            raise
                        self._api.create_namespaced_lease("kube-node-lease", self._lease(node))
            self._stop.wait(self._every)

    def stop(self) -> None:
        self._stop.set()


def md_manifest(bench: Bench, index: int, replicas: int) -> dict[str, Any]:
    model = bench.models[index % len(bench.models)]
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelDeployment",
        "metadata": {"name": f"md-{index:04d}", "namespace": bench.namespace},
        "spec": {"model": {"name": model, "alias": ALIAS}, "replicas": replicas,
                 "resources": {"cpu": "10m", "memory": "32Mi"},
                 "nodeSelector": {NODE_LABEL: bench.bench_id}, "tolerations": [TOLERATION]},
    }


def tr_manifest(bench: Bench, index: int, on_kwok: bool) -> dict[str, Any]:
    # Pending: a node label no node has, so the Job's pod waits (unfinished runs keep being
    # polled). On kwok: the pod "completes" at once without a result, and the run finishes.
    selector = bench.bench_id if on_kwok else "nowhere"
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingRun",
        "metadata": {"name": f"tr-{index:04d}", "namespace": bench.namespace},
        "spec": {"model": {"name": f"bench-{bench.bench_id}-trained"},
                 "estimator": {"type": "logistic_regression"}, "dataset": {"builtin": "iris"},
                 "resources": {"cpu": "10m", "memory": "64Mi"},
                 "nodeSelector": {NODE_LABEL: selector}, "tolerations": [TOLERATION]},
    }


def create_objects(bench: Bench, manifests: list[dict[str, Any]]) -> None:
    from kubernetes import client

    custom = client.CustomObjectsApi(bench.api)

    def create(obj: dict[str, Any]) -> None:
        plural = obj["kind"].lower() + "s"
        custom.create_namespaced_custom_object(GROUP, VERSION, bench.namespace, plural, obj)

    parallel(create, manifests)


def list_objects(bench: Bench, plural: str) -> list[dict[str, Any]]:
    from kubernetes import client

    result = client.CustomObjectsApi(bench.api).list_namespaced_custom_object(
        GROUP, VERSION, bench.namespace, plural)
    return list(result.get("items") or [])


# -- MLflow side ---------------------------------------------------------------------------

def register_models(bench: Bench, count: int) -> None:
    """``count`` registered models with versions 1 and 2 and the alias on 1.

    One tiny model is logged once; every version points at it, so registering a hundred
    models takes seconds (the operator only reads the registry, never the artifacts).
    """
    import mlflow
    import mlflow.sklearn
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    mlflow.set_tracking_uri(bench.mlflow_uri)
    experiment = mlflow.set_experiment(f"bench-{bench.bench_id}")
    bench.experiment_id = experiment.experiment_id
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(LogisticRegression().fit(x, [0, 0, 1, 1]), name="model")
    mc = bench.mlflow()

    def register(i: int) -> str:
        name = f"bench-{bench.bench_id}-m{i:03d}"
        mc.create_registered_model(name)
        for _ in range(2):
            mc.create_model_version(name, source=info.model_uri, run_id=run.info.run_id,
                                    model_id=info.model_id)
        mc.set_registered_model_alias(name, ALIAS, "1")
        return name

    bench.models = parallel(register, range(count))


def register_webhook(bench: Bench, url: str, secret: str) -> None:
    hook = bench.mlflow().create_webhook(name=f"bench-{bench.bench_id}", url=url,
                                         events=list(WEBHOOK_EVENTS), secret=secret)
    bench.webhook_id = str(hook.webhook_id)


# -- cleanup -------------------------------------------------------------------------------

def cleanup(bench: Bench) -> None:
    """Remove everything this run created; each step on its own, so one failure skips none."""
    from kubernetes import client

    core = client.CoreV1Api(bench.api)
    mc = bench.mlflow()
    steps: list[Callable[[], Any]] = [
        lambda: core.delete_namespace(bench.namespace, propagation_policy="Background"),
        # kopf's finalizer on runs with a timer; the operator is stopped, nothing else to clean.
        lambda: _drop_finalizers(bench, "trainingruns"),
        lambda: _drop_finalizers(bench, "modeldeployments"),
        # Found by name, not by what this process remembers: a run that failed half-way (or
        # a --keep run cleaned up later) has no such list.
        lambda: [mc.delete_webhook(h.webhook_id) for h in mc.list_webhooks()
                 if h.name == f"bench-{bench.bench_id}"],
        lambda: parallel(mc.delete_registered_model, [m.name for m in mc.search_registered_models(
            filter_string=f"name LIKE 'bench-{bench.bench_id}-%'")]),
        lambda: bench.experiment_id and mc.delete_experiment(bench.experiment_id),
        lambda: _wait_gone(lambda: core.read_namespace(bench.namespace), 120),
        *[(lambda n=n: core.delete_node(n)) for n in bench.nodes],
        lambda: bench.leases and bench.leases.stop(),
    ]
    for step in steps:
        try:
            step()
        except Exception as error:  # noqa: BLE001 - report and go on cleaning
            print(f"cleanup: {json.dumps(str(error))[:200]}")


def _drop_finalizers(bench: Bench, plural: str) -> None:
    from kubernetes import client

    custom = client.CustomObjectsApi(bench.api)
    for obj in list_objects(bench, plural):
        if obj["metadata"].get("finalizers"):
            with contextlib.suppress(client.ApiException):
                custom.patch_namespaced_custom_object(GROUP, VERSION, bench.namespace, plural,
                                                      obj["metadata"]["name"],
                                                      {"metadata": {"finalizers": None}})


def _wait_gone(read: Callable[[], Any], timeout: float) -> None:
    from kubernetes import client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            read()
        except client.ApiException as error:
            if error.status == 404:
                return
            raise
        time.sleep(1)
