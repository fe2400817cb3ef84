"""Session fixtures: a real local control plane + local node + MLflow, and the operator.

The cluster is started once per session (or reused when `make cluster-up` already runs it, in
which case it is left running) and torn down at the end. Each test gets its own namespace.

MLflow runs on the backend ``MODELYARD_MLFLOW_BACKEND`` names (sqlite, the default, or
postgres-s3). A reused cluster whose MLflow runs on another backend gets MLflow alone restarted
on the wanted one, and put back at the end. ``MODELYARD_CLUSTER_DOWN=1`` tears a reused cluster
down at the end all the same (`make test` keeps the cluster between its two passes).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "k8s" / "local"))

from localcluster import binaries, mlflowserver  # noqa: E402
from localcluster import cluster as localcluster  # noqa: E402
from localcluster import node as localnode  # noqa: E402

# Test namespaces share a per-session prefix and the session's operator watches only that
# glob, so two pytest sessions on one cluster never reconcile each other's objects.
SESSION_PREFIX = f"t{uuid.uuid4().hex[:4]}"


@dataclass
class Cluster:
    kubeconfig: Path
    host_ip: str
    mlflow_uri: str
    api_url: str
    kubectl_bin: Path
    state: Path
    api: object = field(repr=False, default=None)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.kubectl_bin), f"--kubeconfig={self.kubeconfig}", *args],
                              input=input, capture_output=True, text=True, check=check, timeout=120)

    def mlflow_stop(self) -> None:
        localcluster.stop_mlflow()

    def mlflow_start(self) -> None:
        localcluster.start_mlflow()

    # The postgres-s3 backend's stores: their outages, as the MLflow outage above.
    def postgres_stop(self) -> None:
        localcluster.stop_postgres()

    def postgres_start(self) -> None:
        localcluster.start_postgres()

    def s3_stop(self) -> None:
        localcluster.stop_s3()

    def s3_start(self) -> None:
        localcluster.start_s3()

    @property
    def mlflow_backend(self) -> str | None:
        return localcluster.mlflow_backend()

    def pod_log(self, namespace: str, pod: str, container: str) -> str:
        """`kubectl logs`: the apiserver fetches it from the kubelet, as on any cluster."""
        res = self.kubectl("-n", namespace, "logs", pod, "-c", container, check=False)
        return res.stdout if res.returncode == 0 else ""


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    from kubernetes import config

    already_up = all(localcluster.status().values())
    backend_before = localcluster.mlflow_backend() if already_up else None
    info = localcluster.info() if already_up else localcluster.up()
    if already_up:  # `make images` may have rebuilt them since the cluster started
        localnode.load_images(info.state)
    # A no-op when MLflow already runs on the wanted backend (as `up` starts it).
    localcluster.switch_mlflow_backend(mlflowserver.configured_backend())
    kubectl = binaries.ensure_k8s()["kubectl"]
    c = Cluster(info.kubeconfig, info.host_ip, info.mlflow_uri, info.api_url, kubectl, info.state)
    c.api = config.new_client_from_config(str(info.kubeconfig))
    os.environ["KUBECONFIG"] = str(info.kubeconfig)
    os.environ["MLFLOW_TRACKING_URI"] = info.mlflow_uri
    yield c
    if os.environ.get("MODELYARD_KEEP_CLUSTER"):
        return
    if not already_up or os.environ.get("MODELYARD_CLUSTER_DOWN"):
        localcluster.down()
    elif backend_before is not None:
        localcluster.switch_mlflow_backend(backend_before)


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    from kubernetes import client

    name = f"{SESSION_PREFIX}-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(cluster.api)
    # Pod Security "restricted" is enforced: every pod the operator and the chart create must
    # be admitted under it.
    core.create_namespace({"metadata": {"name": name, "labels": {
        "modelyard.io/test": "true", "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest"}}})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # pods need the namespace's default ServiceAccount
        try:
            core.read_namespaced_service_account("default", name)
            break
        except client.ApiException:
            time.sleep(0.2)
    yield name
    core.delete_namespace(name, propagation_policy="Background")


from tests.helpers import free_port  # noqa: E402


class Operator:
    """`python -m modelyard_operator` running on the host against the local cluster."""

    def __init__(self, c: Cluster, log_dir: Path) -> None:
        self.cluster = c
        self.webhook_secret = secrets.token_hex(16)
        self.webhook_port = free_port()
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.log_path = log_dir / "operator.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.extra_env: dict[str, str] = {}

    @property
    def webhook_url(self) -> str:
        return f"http://{self.cluster.host_ip}:{self.webhook_port}/webhooks/mlflow"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KUBECONFIG": str(self.cluster.kubeconfig),
            "MODELYARD_MLFLOW_TRACKING_URI": self.cluster.mlflow_uri,
            "MODELYARD_POLL_INTERVAL": "3",
            "MODELYARD_DRIFT_INTERVAL": "3",
            "MODELYARD_WEBHOOK_PORT": str(self.webhook_port),
            "MODELYARD_WEBHOOK_SECRET": self.webhook_secret,
            "MODELYARD_WEBHOOK_URL": self.webhook_url,
            "MODELYARD_METRICS_PORT": str(self.metrics_port),
            "MODELYARD_HEALTH_PORT": str(self.health_port),
            "MODELYARD_NAMESPACES": f"{SESSION_PREFIX}-*",
            **self.extra_env,
        }

    def start(self, **extra_env: str) -> None:
        self.extra_env = extra_env
        out = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "modelyard_operator"], env=self.env(),
                                     stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited: {self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1):
                    # kopf answers health before its namespace observer (glob mode) has listed
                    # and started watching namespaces; a namespace created in that gap was
                    # seen to go unnoticed after a restart. Let the observer settle.
                    time.sleep(5)
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"operator not healthy in 60s: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start(**self.extra_env)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def postgres_s3(cluster: Cluster) -> Cluster:
    """The cluster, when its MLflow runs on postgres-s3 (the second pass of `make test`); else skip."""
    if cluster.mlflow_backend != "postgres-s3":
        pytest.skip("needs MODELYARD_MLFLOW_BACKEND=postgres-s3 (the second pass of `make test`)")
    return cluster


@pytest.fixture(scope="session")
def s3_store(cluster: Cluster) -> Any:
    """The local S3 store (versitygw) on the host address pods reach, started if the backend
    has not already; its root keys, endpoint and the `datasets` bucket."""
    from localcluster import stores

    localcluster.start_s3()
    return stores.s3_credentials(cluster.state)


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> list[Path]:
    """Install modelyard's CRDs (server-side apply) and wait until they are served."""
    files = sorted((REPO / "crds").glob("*.yaml"))
    for f in files:
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(f))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    *[f"-f={f}" for f in files])
    return files


@pytest.fixture(scope="session")
def operator(cluster: Cluster, crds: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    op = Operator(cluster, tmp_path_factory.mktemp("operator"))
    op.start()
    yield op
    op.stop()


@pytest.fixture(scope="module")
def secrets_allowed(operator: Operator) -> Iterator[Operator]:
    """The session operator with Secrets in specs allowed (dataset.credentialsSecret), as the
    chart's config.policy.secretRefs=ifAuthorized sets it, for one test module; then restored."""
    previous = dict(operator.extra_env)
    operator.stop()
    operator.start(**{**previous, "MODELYARD_ALLOW_SECRET_REFS": "true"})
    try:
        yield operator
    finally:
        operator.stop()
        operator.start(**previous)
