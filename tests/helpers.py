"""Test helpers shared by the suites (unit, integration, bench): each one is defined here once.

Only the standard library and PyYAML are imported at module level, so the unit suites and
the benchmark can use it without the cluster, kubernetes or mlflow being imported.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

if TYPE_CHECKING:
    import mlflow

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(fn: Callable[[], T | None], timeout: float = 60, interval: float = 0.25, what: str = "") -> T:
    """Poll fn until it returns something truthy; fail with what was last seen."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except Exception as exc:  # noqa: BLE001 - keep polling through transient errors
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or fn}: last={last!r}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); check its state
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def load_module(name: str, path: Path) -> ModuleType:
    """Import a helper module by path once (test helpers that live outside a package)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# -- the local cluster and MLflow (``cluster`` is the session fixture of tests/conftest.py) --

def kubectl_apply(cluster: Any, namespace: str, manifest: dict[str, Any], check: bool = True) -> Any:
    """``kubectl apply`` one manifest; with ``check`` a rejection fails with kubectl's message."""
    result = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest),
                             check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl apply failed: {result.stderr}")
    return result


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    """The status condition of ``type_`` ({} when absent)."""
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return dict(c)
    return {}


def event_reasons(cluster: Any, namespace: str, name: str, kind: str) -> set[str]:
    """Reasons of the Events about the ``kind`` object ``name``."""
    from kubernetes import client

    events = client.CoreV1Api(cluster.api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}").items
    return {str(e.reason) for e in events if e.involved_object.kind == kind}


def mlflow_client(cluster: Any) -> mlflow.MlflowClient:
    import mlflow

    return mlflow.MlflowClient(tracking_uri=cluster.mlflow_uri, registry_uri=cluster.mlflow_uri)


def version_artifact_location(client: mlflow.MlflowClient, name: str, version: str) -> str:
    """Where a registered version's files are, as clients address them. MLflow 3 versions name
    a logged model (``models:/m-...``) as their source; its artifact location is the URI."""
    source = str(client.get_model_version(name, version).source)
    if source.startswith("models:/m-"):
        return str(client.get_logged_model(source.removeprefix("models:/")).artifact_location)
    return source
