"""A real Prometheus (Debian's package) scraping the local cluster as ServiceMonitors describe.

No Prometheus Operator runs here, so this module does its job for tests: it translates
ServiceMonitor objects into scrape jobs that select what the Prometheus Operator's generated
config selects (Services by the selector's labels, EndpointSlice ports by the endpoint's port
name; target labels ``namespace``, ``service``, ``pod``, ``container``, ``endpoint``, ``job``).
Debian's ``prometheus`` is built without Kubernetes service discovery, so :class:`Discovery`
reads the EndpointSlices with kubectl and writes ``file_sd`` target files that Prometheus
watches. It runs ``prometheus`` on 127.0.0.1; pod IPs on the pod bridge are scraped directly
from the host, and nothing else is ever contacted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import procs

PROCESS = "prometheus"
_UNSAFE = re.compile(r"[^a-zA-Z0-9_]")


def _sanitize(name: str) -> str:
    """Label names as Kubernetes SD exposes them (``app.kubernetes.io/name`` → ``app_kubernetes_io_name``)."""
    return _UNSAFE.sub("_", name)


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration.strip())
    if match is None:
        raise ValueError(f"unsupported duration {duration!r}")
    return float(match.group(1)) * units[match.group(2)]


def _matches(labels: dict[str, str], selector: dict[str, Any]) -> bool:
    """metav1.LabelSelector semantics, as the Prometheus Operator applies them to Services."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {"In": key in labels and labels[key] in values,
              "NotIn": labels.get(key) not in values,
              "Exists": key in labels, "DoesNotExist": key not in labels}.get(op)
        if ok is None:
            raise ValueError(f"unsupported selector operator {op!r}")
        if not ok:
            return False
    return True


def _namespaces(monitor: dict[str, Any]) -> list[str] | None:
    """The namespaces a ServiceMonitor looks in (None: all)."""
    ns_selector = monitor["spec"].get("namespaceSelector") or {}
    if ns_selector.get("any"):
        return None
    return list(ns_selector.get("matchNames") or [monitor["metadata"].get("namespace") or "default"])


def _job_name(monitor: dict[str, Any], index: int) -> str:
    meta = monitor["metadata"]
    return f"serviceMonitor/{meta.get('namespace') or 'default'}/{meta['name']}/{index}"


def _container_of(pod: dict[str, Any] | None, port: int) -> str:
    for container in ((pod or {}).get("spec") or {}).get("containers") or []:
        if any(p.get("containerPort") == port for p in container.get("ports") or []):
            return str(container["name"])
    return ""


def target_groups(monitor: dict[str, Any], index: int, objects: dict[str, list[dict[str, Any]]]
                  ) -> list[dict[str, Any]]:
    """file_sd target groups for endpoint ``index`` of ``monitor``, from Services,
    EndpointSlices and Pods (API JSON items): what kubernetes_sd + the operator's relabelling yield.

    Not-ready endpoints are kept (a pod whose model fails to load still exports its failures);
    pods that finished are dropped.
    """
    endpoint = monitor["spec"]["endpoints"][index]
    port_name = endpoint.get("port")
    namespaces = _namespaces(monitor)
    selector = monitor["spec"].get("selector") or {}
    pods = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in objects.get("pods", [])}
    groups = []
    for svc in objects.get("services", []):
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        if (namespaces is not None and ns not in namespaces) or not _matches(
                svc["metadata"].get("labels") or {}, selector):
            continue
        for eps in objects.get("endpointslices", []):
            labels = eps["metadata"].get("labels") or {}
            if eps["metadata"]["namespace"] != ns or labels.get("kubernetes.io/service-name") != name:
                continue
            for port in eps.get("ports") or []:
                if port_name and port.get("name") != port_name:
                    continue
                for ep in eps.get("endpoints") or []:
                    ref = ep.get("targetRef") or {}
                    pod = pods.get((ns, ref.get("name", ""))) if ref.get("kind") == "Pod" else None
                    if ((pod or {}).get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                        continue
                    groups.append({
                        "targets": [f"{addr}:{port['port']}" for addr in ep.get("addresses") or []],
                        "labels": {"namespace": ns, "service": name, "job": name,
                                   "pod": ref.get("name", ""), "endpoint": port_name or str(index),
                                   "container": _container_of(pod, int(port["port"]))},
                    })
    return groups


def scrape_configs(monitor: dict[str, Any], targets_dir: Path,
                   max_interval: str | None = None) -> list[dict[str, Any]]:
    """One scrape job per endpoint of a ServiceMonitor, named as the Prometheus Operator names it.

    Debian's Prometheus is built without Kubernetes service discovery, so targets come from a
    file that :class:`Discovery` keeps current. ``max_interval`` caps the scrape interval
    (tests want samples in seconds, not minutes).
    """
    jobs = []
    for index, endpoint in enumerate(monitor["spec"].get("endpoints") or []):
        interval = endpoint.get("interval") or "30s"
        if max_interval and _seconds(max_interval) < _seconds(interval):
            interval = max_interval
        name = _job_name(monitor, index)
        job: dict[str, Any] = {
            "job_name": name,
            "honor_labels": bool(endpoint.get("honorLabels", False)),
            "metrics_path": endpoint.get("path") or "/metrics",
            "scheme": endpoint.get("scheme") or "http",
            "scrape_interval": interval,
            "file_sd_configs": [{"files": [str(targets_dir / f"{_sanitize(name)}.json")],
                                 "refresh_interval": "5s"}],
        }
        timeout = endpoint.get("scrapeTimeout")
        if timeout and _seconds(timeout) <= _seconds(interval):
            job["scrape_timeout"] = timeout
        jobs.append(job)
    return jobs


class Discovery:
    """Keeps the target files of ServiceMonitor jobs current, reading the API with kubectl."""

    def __init__(self, kubectl: Path, kubeconfig: Path, targets_dir: Path) -> None:
        self.kubectl, self.kubeconfig, self.targets_dir = kubectl, kubeconfig, targets_dir
        self.monitors: list[dict[str, Any]] = []

    def _objects(self, namespace: str | None) -> dict[str, list[dict[str, Any]]]:
        scope = ["--all-namespaces"] if namespace is None else ["-n", namespace]
        out = subprocess.run([str(self.kubectl), f"--kubeconfig={self.kubeconfig}", "get",
                              "services,endpointslices.discovery.k8s.io,pods", *scope, "-o", "json"],
                             capture_output=True, text=True, check=True, timeout=60).stdout
        objects: dict[str, list[dict[str, Any]]] = {"services": [], "endpointslices": [], "pods": []}
        for item in json.loads(out)["items"]:
            key = {"Service": "services", "EndpointSlice": "endpointslices", "Pod": "pods"}[item["kind"]]
            objects[key].append(item)
        return objects

    def refresh(self) -> int:
        """Rewrite every target file (atomically); returns the number of targets."""
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        cache: dict[str | None, dict[str, list[dict[str, Any]]]] = {}
        total = 0
        for monitor in self.monitors:
            namespaces = _namespaces(monitor)
            objects: dict[str, list[dict[str, Any]]] = {"services": [], "endpointslices": [], "pods": []}
            for ns in namespaces if namespaces is not None else [None]:
                if ns not in cache:
                    cache[ns] = self._objects(ns)
                for key, items in cache[ns].items():
                    objects[key] += items
            for index in range(len(monitor["spec"].get("endpoints") or [])):
                groups = target_groups(monitor, index, objects)
                total += sum(len(g["targets"]) for g in groups)
                path = self.targets_dir / f"{_sanitize(_job_name(monitor, index))}.json"
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(groups))
                tmp.replace(path)
        return total


def static_job(name: str, url: str, interval: str = "2s", honor_labels: bool = True) -> dict[str, Any]:
    """A job for one ``http://127.0.0.1:<port>/path`` target (the operator when it runs on the host)."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.hostname not in ("127.0.0.1", "localhost"):
        raise ValueError(f"static targets stay on loopback: {url}")
    return {"job_name": name, "honor_labels": honor_labels, "scrape_interval": interval,
            "metrics_path": parsed.path or "/metrics",
            "static_configs": [{"targets": [parsed.netloc]}]}


def render_config(jobs: list[dict[str, Any]], interval: str = "2s") -> str:
    return yaml.safe_dump({"global": {"scrape_interval": interval, "evaluation_interval": interval},
                           "scrape_configs": jobs}, sort_keys=False)


def binary() -> Path:
    found = os.environ.get("MODELYARD_PROMETHEUS") or shutil.which("prometheus")
    if not found:
        raise FileNotFoundError("prometheus not found (apt-get install prometheus, or set MODELYARD_PROMETHEUS)")
    return Path(found)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Prometheus:
    """One Prometheus process with its config, TSDB and log under ``state``."""

    state: Path
    port: int = field(default_factory=_free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.state / "prometheus.yml"

    def start(self, jobs: list[dict[str, Any]], timeout: float = 60) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(render_config(jobs))
        procs.start(PROCESS, [str(binary()), f"--config.file={self.config_path}",
                              f"--storage.tsdb.path={self.state / 'tsdb'}",
                              f"--web.listen-address=127.0.0.1:{self.port}",
                              "--storage.tsdb.retention.time=1d", "--log.level=warn"], self.state)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not procs.running(PROCESS, self.state):
                raise RuntimeError(f"prometheus exited: {self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1):
                    return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"prometheus not ready in {timeout}s: {self.log()[-3000:]}")

    def reload(self, jobs: list[dict[str, Any]]) -> None:
        """Rewrite the config and SIGHUP (new ModelDeployments bring new ServiceMonitors)."""
        self.config_path.write_text(render_config(jobs))
        pid = procs.pid_of(PROCESS, self.state)
        if pid is None:
            raise RuntimeError("prometheus is not running")
        os.kill(pid, signal.SIGHUP)

    def stop(self) -> None:
        procs.stop(PROCESS, self.state)

    def log(self) -> str:
        path = self.state / "logs" / f"{PROCESS}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=30) as response:
            body = json.loads(response.read())
        if body.get("status") != "success":
            raise RuntimeError(f"{path}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the result list (empty: no data)."""
        data = self.api("query", query=expr)
        result = data["result"]
        return list(result) if isinstance(result, list) else [result]

    def label_values(self, label: str, match: str) -> list[str]:
        return [str(v) for v in self.api(f"label/{label}/values", **{"match[]": match})]

    def active_targets(self) -> list[dict[str, Any]]:
        return list(self.api("targets", state="active")["activeTargets"])
