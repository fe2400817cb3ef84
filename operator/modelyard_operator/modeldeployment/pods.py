"""Direct HTTP reads from serving pods (podIP:8080): load errors and drift.

Pods are reached by IP, as a Service's EndpointSlices would route: no port-forward, no proxy
through the API server. Timeouts are short because a reconcile waits on these.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import Any

from modelyard_operator.modeldeployment.builders import CONTAINER_PORT
from modelyard_operator.modeldeployment.models import VERSION_LABEL
from modelyard_operator.modeldeployment.rollout import pod_ready

logger = logging.getLogger(__name__)

PROBE_TIMEOUT = 1.0
# Besides modelyard_serving's {"status": "failed"}, accept these spellings of "the last load
# attempt failed" (as opposed to "still loading") so other servers can opt in.
LOAD_FAILED_CODES = frozenset({"model_load_failed", "load_failed", "load_error"})
LOAD_ERROR_KEYS = ("loadError", "load_error", "lastError")


def get_json(ip: str, path: str, port: int = CONTAINER_PORT,
             timeout: float = PROBE_TIMEOUT) -> tuple[int, Any]:
    """(HTTP status, parsed JSON or None) from ``http://ip:port/path``; (0, None) if unreachable."""
    host = f"[{ip}]" if ":" in ip else ip
    request = urllib.request.Request(f"http://{host}:{port}{path}",
                                     headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), _parse(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), _parse(error.read())
    except (OSError, ValueError):
        return 0, None


def get_text(ip: str, path: str, port: int = CONTAINER_PORT,
             timeout: float = PROBE_TIMEOUT) -> str | None:
    """The body of ``http://ip:port/path`` as text when it answers 200, else None."""
    host = f"[{ip}]" if ":" in ip else ip
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=timeout) as response:
            return str(response.read().decode("utf-8", "replace"))
    except (OSError, ValueError):
        return None


def _parse(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def load_error_from_readyz(status: int, body: Any) -> str | None:
    """The load failure a /readyz answer reports, or None for "ready" / "still loading"."""
    if status != 503 or not isinstance(body, dict):
        return None
    # modelyard_serving: {"status": "loading" | "failed", "error": ..., "attempts": n}
    if body.get("status") == "failed":
        return str(body.get("error") or "model failed to load")
    for key in LOAD_ERROR_KEYS:
        if body.get(key):
            return str(body[key])
    if str(body.get("code", "")).lower() in LOAD_FAILED_CODES:
        return str(body.get("error") or body.get("message") or "model failed to load")
    return None


def load_errors(pods: list[dict[str, Any]], version: str | None) -> dict[str, str]:
    """Load failures of running-but-unready pods of ``version``, by pod name.

    The server retries a failed load with backoff and stays unready, so the pod never
    crashes; asking it directly is the only fast way to tell "broken" from "slow".
    """
    errors: dict[str, str] = {}
    for pod in pods:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        labels = meta.get("labels") or {}
        if version is None or labels.get(VERSION_LABEL) != version:
            continue
        if pod_ready(pod) or status.get("phase") != "Running" or not status.get("podIP"):
            continue
        error = load_error_from_readyz(*get_json(str(status["podIP"]), "/readyz"))
        if error:
            errors[str(meta.get("name"))] = error
    return errors
