"""Start and stop the local control plane, the local node and MLflow.

Everything binds to the host address pods can reach (the pod bridge, see network.py) or to
loopback. State lives in ``$MODELYARD_CLUSTER_DIR`` (default ``<repo>/.cluster``); the admin
kubeconfig is always ``<state>/kubeconfig``.
"""

from __future__ import annotations

import os
import shutil
import ssl
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from . import binaries, mlflowserver, network, node, procs, stores
from .pki import PKI

REPO = Path(__file__).resolve().parents[3]
ETCD_PORT = procs.env_port("ETCD", 2379)
API_PORT = procs.env_port("API", 6443)
MLFLOW_PORT = mlflowserver.MLFLOW_PORT
CM_PORT = procs.env_port("CM", 10257)
SCHEDULER_PORT = procs.env_port("SCHEDULER", 10259)
SERVICE_CIDR = "10.96.0.0/16"
CONTROL_PLANE = ["scheduler", "controller-manager", "kube-apiserver", "etcd"]
COMPONENTS = [*node.COMPONENTS, *CONTROL_PLANE]


@dataclass
class ClusterInfo:
    state: Path
    host_ip: str
    kubeconfig: Path
    api_url: str
    mlflow_uri: str


def state_dir() -> Path:
    return Path(os.environ.get("MODELYARD_CLUSTER_DIR", REPO / ".cluster")).resolve()


def _log(msg: str) -> None:
    print(f"[cluster] {msg}", flush=True)


def _wait(what: str, check: object, timeout: float, logfile: Path | None = None) -> None:
    start = time.monotonic()
    deadline = start + timeout
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                _log(f"{what} ready (+{time.monotonic() - start:.1f}s)")
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.1)
    tail = logfile.read_text(errors="replace")[-3000:] if logfile and logfile.exists() else ""
    raise RuntimeError(f"{what} did not become ready within {timeout:.0f}s\n{tail}")


def _https_ok(url: str, pki: PKI) -> bool:
    ctx = ssl.create_default_context(cafile=str(pki.path("ca.crt")))
    ctx.load_cert_chain(str(pki.path("admin.crt")), str(pki.path("admin.key")))
    with urllib.request.urlopen(url, context=ctx, timeout=2) as resp:
        return bool(resp.status == 200)


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return bool(resp.status == 200)


def info() -> ClusterInfo:
    state = state_dir()
    host = (state / "host-ip").read_text().strip() if (state / "host-ip").exists() else network.host_ip()
    return ClusterInfo(state, host, state / "kubeconfig", f"https://{host}:{API_PORT}",
                       f"http://{host}:{MLFLOW_PORT}")


def up() -> ClusterInfo:
    started = time.monotonic()
    bins = binaries.ensure_k8s()
    state = state_dir()
    state.mkdir(parents=True, exist_ok=True)
    network.setup_bridge()
    host = network.BRIDGE_IP
    (state / "host-ip").write_text(host)
    pki = PKI(state / "pki")
    pki.ensure(ips=sorted({host, "127.0.0.1", "10.96.0.1"}),
               dns=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                    "kubernetes.default.svc.cluster.local"])
    api_url = f"https://{host}:{API_PORT}"
    kubeconfig = pki.kubeconfig("admin", api_url, state / "kubeconfig")
    logs = state / "logs"
    start_mlflow(wait=False)  # the slowest to boot: let it start while the control plane does

    if not procs.running("etcd", state):
        procs.start("etcd", [str(bins["etcd"]), "--data-dir", str(state / "etcd"),
                             "--listen-client-urls", f"http://127.0.0.1:{ETCD_PORT}",
                             "--advertise-client-urls", f"http://127.0.0.1:{ETCD_PORT}",
                             "--listen-peer-urls", f"http://127.0.0.1:{ETCD_PORT + 1}",
                             "--initial-advertise-peer-urls", f"http://127.0.0.1:{ETCD_PORT + 1}",
                             "--initial-cluster", f"default=http://127.0.0.1:{ETCD_PORT + 1}",
                             "--unsafe-no-fsync", "--quota-backend-bytes", str(2 * 1024**3)], state)
    _wait("etcd", lambda: _http_ok(f"http://127.0.0.1:{ETCD_PORT}/health"), 30, logs / "etcd.log")

    p = pki.path
    if not procs.running("kube-apiserver", state):
        procs.start("kube-apiserver", [
            str(bins["kube-apiserver"]), f"--etcd-servers=http://127.0.0.1:{ETCD_PORT}",
            f"--bind-address={host}", f"--advertise-address={host}", f"--secure-port={API_PORT}",
            f"--tls-cert-file={p('apiserver.crt')}", f"--tls-private-key-file={p('apiserver.key')}",
            f"--client-ca-file={p('ca.crt')}", "--authorization-mode=Node,RBAC",
            f"--service-account-key-file={p('sa.pub')}", f"--service-account-signing-key-file={p('sa.key')}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--allow-privileged=true",
            "--enable-admission-plugins=NodeRestriction", "--profiling=false",
            # logs, exec and port-forward: the apiserver dials the kubelet by its node IP, with
            # a client certificate, and verifies the kubelet's serving certificate
            f"--kubelet-client-certificate={p('apiserver-kubelet-client.crt')}",
            f"--kubelet-client-key={p('apiserver-kubelet-client.key')}",
            f"--kubelet-certificate-authority={p('ca.crt')}",
            "--kubelet-preferred-address-types=InternalIP",
            # the default (lease) reconciler keeps the `kubernetes` Service's endpoints, which
            # in-cluster clients (the chart's operator pod) reach through kube-proxy
        ], state)
    _wait("kube-apiserver", lambda: _https_ok(f"{api_url}/readyz", pki), 60, logs / "kube-apiserver.log")

    cm_kc = pki.kubeconfig("controller-manager", api_url, state / "controller-manager.kubeconfig")
    if not procs.running("controller-manager", state):
        procs.start("controller-manager", [
            str(bins["kube-controller-manager"]), f"--kubeconfig={cm_kc}",
            f"--authentication-kubeconfig={cm_kc}", f"--authorization-kubeconfig={cm_kc}",
            f"--service-account-private-key-file={p('sa.key')}", f"--root-ca-file={p('ca.crt')}",
            f"--cluster-signing-cert-file={p('ca.crt')}", f"--cluster-signing-key-file={p('ca.key')}",
            "--use-service-account-credentials=true", "--leader-elect=false",
            "--bind-address=127.0.0.1", f"--secure-port={CM_PORT}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # The HPA needs metrics-server, which a local cluster does not have; it still reconciles.
            "--horizontal-pod-autoscaler-sync-period=15s",
        ], state)
    sched_kc = pki.kubeconfig("scheduler", api_url, state / "scheduler.kubeconfig")
    if not procs.running("scheduler", state):
        procs.start("scheduler", [
            str(bins["kube-scheduler"]), f"--kubeconfig={sched_kc}", f"--authentication-kubeconfig={sched_kc}",
            f"--authorization-kubeconfig={sched_kc}", "--leader-elect=false",
            "--bind-address=127.0.0.1", f"--secure-port={SCHEDULER_PORT}",
        ], state)
    node.start(state, pki, api_url, host, kubeconfig)
    _wait_nodes_ready(kubeconfig, logs)
    start_mlflow()
    cluster = info()
    _log(f"ready in {time.monotonic() - started:.1f}s")
    _log(f"kubeconfig: {kubeconfig}   (export KUBECONFIG={kubeconfig})")
    _log(f"apiserver:  {api_url}")
    _log(f"mlflow:     {cluster.mlflow_uri} ({mlflowserver.running_backend(state)} backend)")
    _log(f"kubectl:    {bins['kubectl']}")
    return cluster


def _wait_nodes_ready(kubeconfig: Path, logs: Path) -> None:
    from kubernetes import client, config

    api = config.new_client_from_config(str(kubeconfig))
    core = client.CoreV1Api(api)

    def ready() -> bool:
        nodes = core.list_node().items
        if len(nodes) < 3:
            return False
        if not all(any(c.type == "Ready" and c.status == "True" for c in (n.status and n.status.conditions) or [])
                   for n in nodes):
            return False
        # Pods need the default ServiceAccount, which the controller-manager creates.
        core.read_namespaced_service_account("default", "default")
        return True

    _wait("local node", ready, 120, logs / "kubelet.log")


def start_mlflow(wait: bool = True) -> None:
    """MLflow on the backend MODELYARD_MLFLOW_BACKEND names (mlflowserver.py)."""
    mlflowserver.start_mlflow(state_dir(), wait=wait)


def stop_mlflow() -> None:
    mlflowserver.stop_mlflow(state_dir())


def switch_mlflow_backend(backend: str) -> None:
    mlflowserver.switch_backend(state_dir(), backend)


def mlflow_backend() -> str | None:
    return mlflowserver.running_backend(state_dir())


# Outages of the postgres-s3 backend's stores, for tests (MLflow itself keeps running).
def stop_postgres() -> None:
    stores.stop_postgres(state_dir())


def start_postgres() -> None:
    stores.start_postgres(state_dir())


def stop_s3() -> None:
    stores.stop_s3(state_dir())


def start_s3() -> None:
    stores.start_s3(state_dir())


def down(purge: bool = True) -> None:
    state = state_dir()
    procs.stop("mlflow", state)
    mlflowserver.stop_stores(state)
    (state / "mlflow-backend").unlink(missing_ok=True)
    node.stop(state)
    for name in CONTROL_PLANE:
        procs.stop(name, state)
    node.teardown_host(state)
    if purge:
        for sub in ("etcd", "mlflow", "postgres", "s3", "pids"):
            shutil.rmtree(state / sub, ignore_errors=True)
    network.teardown_bridge()
    _log("stopped")


def status() -> dict[str, bool]:
    """Whether each process of the cluster runs; the stores count only under postgres-s3."""
    state = state_dir()
    names = [*COMPONENTS, "mlflow"]
    marker = state / "mlflow-backend"
    if marker.exists() and marker.read_text().strip() == "postgres-s3":
        names += ["postgres", "s3"]
    return {name: procs.running(name, state) for name in names}
