"""The bench's view of one operator process: start/stop, its /metrics, its memory, and a watch
that timestamps every serving Deployment's change of model version."""

from __future__ import annotations

import os
import sys
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

from harness import rss_mib, spawn, stop
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import free_port

REPO = Path(__file__).resolve().parents[2]
WRITE_VERBS = ("apply", "create", "patch", "delete")
READ_VERBS = ("get", "list")
VERSION_LABEL = "modelyard.io/model-version"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_metrics(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def total(samples: Samples, name: str, **match: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``match`` (a value may be a|b|c)."""
    return sum(value for (n, labels), value in samples.items() if n == name and all(
        dict(labels).get(k) in v.split("|") for k, v in match.items()))


def delta(before: Samples, after: Samples, name: str, **match: str) -> float:
    return total(after, name, **match) - total(before, name, **match)


class OperatorProcess:
    """``python -m modelyard_operator`` on the host, watching only the bench namespace."""

    def __init__(self, namespace: str, kubeconfig: Path, mlflow_uri: str, poll_interval: float,
                 log_dir: Path, python: str = sys.executable) -> None:
        self.namespace, self.kubeconfig, self.mlflow_uri = namespace, kubeconfig, mlflow_uri
        self.poll_interval, self.log_dir, self.python = poll_interval, log_dir, python
        self.webhook_secret = os.urandom(16).hex()
        self.webhook_port, self.metrics_port, self.health_port = free_port(), free_port(), free_port()
        self.proc: Any = None
        self.started_at = 0.0
        self.rss: list[tuple[float, float]] = []
        self._sampler: threading.Thread | None = None

    def env(self, extra: dict[str, str]) -> dict[str, str]:
        path = os.pathsep.join([str(REPO / "operator"), os.environ.get("PYTHONPATH", "")])
        return {
            "PYTHONPATH": path, "KUBECONFIG": str(self.kubeconfig),
            "MODELYARD_MLFLOW_TRACKING_URI": self.mlflow_uri,
            "MODELYARD_POLL_INTERVAL": str(self.poll_interval),
            "MODELYARD_WEBHOOK_PORT": str(self.webhook_port),
            "MODELYARD_WEBHOOK_SECRET": self.webhook_secret,
            "MODELYARD_METRICS_PORT": str(self.metrics_port),
            "MODELYARD_HEALTH_PORT": str(self.health_port),
            # Only this run's namespace: other engineers' objects are never reconciled.
            "MODELYARD_NAMESPACES": self.namespace,
            **extra,
        }

    def start(self, **extra: str) -> float:
        """Start and wait until healthy; returns seconds from spawn to healthy."""
        self.started_at = time.monotonic()
        self.rss = []
        self.proc = spawn([self.python, "-m", "modelyard_operator"], self.env(extra),
                          self.log_dir / "operator.log")
        deadline = self.started_at + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited; see {self.log_dir / 'operator.log'}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError("operator not healthy in 120 s")
        self._sampler = threading.Thread(target=self._sample, args=(self.proc,), daemon=True)
        self._sampler.start()
        return time.monotonic() - self.started_at

    def _sample(self, proc: Any) -> None:
        while proc.poll() is None:
            self.rss.append((time.monotonic(), rss_mib(proc.pid)))
            time.sleep(0.5)

    def stop(self) -> None:
        stop(self.proc)

    def metrics(self) -> Samples:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            return parse_metrics(r.read().decode())

    def rss_now(self) -> float:
        return rss_mib(self.proc.pid)

    def rss_peak(self) -> float:
        return max((v for _, v in self.rss), default=float("nan"))

    def writes(self) -> float:
        return total(self.metrics(), "modelyard_operator_kube_requests_total",
                     verb="|".join(WRITE_VERBS))

    def tracked(self) -> float:
        return total(self.metrics(), "modelyard_operator_modeldeployments_tracked")


class VersionWatch:
    """Watches the namespace's Deployments and records when each first showed a version."""

    def __init__(self, api: Any, namespace: str) -> None:
        from kubernetes import client, watch

        self._apps = client.AppsV1Api(api)
        self._namespace = namespace
        self._watch = watch.Watch()
        self._lock = threading.Lock()
        self.current: dict[str, str] = {}
        self.changed_at: dict[tuple[str, str], float] = defaultdict(float)
        listing = self._apps.list_namespaced_deployment(namespace)
        for d in listing.items:
            self.current[d.metadata.name] = (d.spec.template.metadata.labels or {}).get(VERSION_LABEL)
        self._thread = threading.Thread(target=self._run, args=(listing.metadata.resource_version,),
                                        daemon=True)
        self._thread.start()

    def _run(self, resource_version: str) -> None:
        while True:
            try:
                for event in self._watch.stream(self._apps.list_namespaced_deployment,
                                                self._namespace, resource_version=resource_version,
                                                timeout_seconds=300):
                    d = event["object"]
                    resource_version = d.metadata.resource_version
                    version = (d.spec.template.metadata.labels or {}).get(VERSION_LABEL)
                    with self._lock:
                        if self.current.get(d.metadata.name) != version:
                            self.current[d.metadata.name] = version
                            self.changed_at[(d.metadata.name, version)] = time.monotonic()
                return
            except Exception:  # noqa: BLE001 - a stopped or expired watch ends the thread
                return

    def wait(self, names: list[str], version: str, since: float, timeout: float) -> list[float]:
        """Seconds from ``since`` until each Deployment in ``names`` showed ``version``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if all(self.current.get(n) == version for n in names):
                    return [self.changed_at[(n, version)] - since for n in names]
            time.sleep(0.02)
        missing = [n for n in names if self.current.get(n) != version]
        raise TimeoutError(f"{len(missing)} Deployments never showed version {version}: {missing[:5]}")

    def stop(self) -> None:
        self._watch.stop()


def image_python() -> str:
    """A venv with exactly the operator image's dependencies (operator/requirements.lock).

    The dev venv also holds full MLflow, pandas and scikit-learn, and MLflow imports pandas
    when it is installed: ~85 MiB the operator image does not carry. RSS is measured here.
    Cached per lock file, so it is built once (from PyPI, hash-checked).
    """
    import hashlib
    import subprocess

    from localcluster import binaries

    lock = REPO / "operator" / "requirements.lock"
    venv = binaries.cache_root() / f"bench-operator-{hashlib.sha256(lock.read_bytes()).hexdigest()[:12]}"
    python = venv / "bin" / "python"
    if not (venv / "ready").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--require-hashes", "-r",
                        str(lock)], check=True)
        (venv / "ready").touch()
    return str(python)


def api_port_taken(localcluster: Any) -> bool:
    """Whether some cluster's API server listens where ours would (another state directory)."""
    import socket

    from localcluster import network

    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((network.BRIDGE_IP, localcluster.API_PORT)) == 0


def report(results: list[dict[str, Any]], compare: bool) -> str:
    rows = [
        ("create → all resolved, Deployments applied (s)", lambda r: r["create_to_resolved_s"]),
        ("create → all Ready, pods on kwok (s)", lambda r: r["create_to_ready_s"]),
        ("full resync after restart (s)", lambda r: r["resync"]["seconds"]),
        ("operator writes/min, quiet", lambda r: r["quiet"]["operator_writes_per_min"]),
        ("operator reads/min, quiet", lambda r: r["quiet"]["operator_reads_per_min"]),
        ("API server writes/min, quiet (cluster-wide)", lambda r: r["quiet"]["apiserver_writes_per_min"]),
        ("API server applies to Deployments+Services/min (cluster-wide)",
         lambda r: r["quiet"]["apiserver_applies_per_min"]),
        ("MD reconciles/min, quiet", lambda r: r["quiet"]["md_reconciles_per_min"]),
        ("operator CPU, quiet (% of one core)", lambda r: r["quiet"]["operator_cpu_pct"]),
        ("registry snapshots per poll interval / distinct models",
         lambda r: f"{r['quiet']['registry_snapshots_per_poll']} / {r['models']}"),
        ("alias move → Deployments p50 / p99 (s)", lambda r: f"{r['alias']['p50_s']} / {r['alias']['p99_s']}"),
        ("RSS idle / after create / peak (MiB)",
         lambda r: f"{r['rss_idle_mib']} / {r['rss_after_create_mib']} / {r['rss_peak_mib']}"),
        ("RSS after a restart's full resync, peak (MiB)", lambda r: r["resync"]["rss_peak_mib"]),
    ]
    if compare:
        rows += [
            ("always-apply: full resync (s)", lambda r: r["old_resync"]["seconds"]),
            ("always-apply: operator writes/min, quiet", lambda r: r["old_quiet"]["operator_writes_per_min"]),
            ("always-apply: operator reads/min, quiet", lambda r: r["old_quiet"]["operator_reads_per_min"]),
            ("always-apply: API server writes/min (cluster-wide)",
             lambda r: r["old_quiet"]["apiserver_writes_per_min"]),
            ("always-apply: API server applies to Deployments+Services/min",
             lambda r: r["old_quiet"]["apiserver_applies_per_min"]),
            ("always-apply: alias p50 / p99 (s)",
             lambda r: f"{r['old_alias']['p50_s']} / {r['old_alias']['p99_s']}"),
        ]
    head = "| | " + " | ".join(f"{r['mds']} MDs / {r['models']} models / {r['training_runs']} TRs"
                                for r in results) + " |"
    lines = [head, "|---|" + "---:|" * len(results)]
    lines += [f"| {name} | " + " | ".join(str(get(r)) for r in results) + " |" for name, get in rows]
    return "\n".join(lines)
