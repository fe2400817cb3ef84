"""The termination message: how the operator learns the outcome from the pod status without
talking to MLflow. Kubernetes keeps at most 4096 bytes of it, so it is kept under that."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import TrainingFailure

DEFAULT_TERMINATION_LOG = "/dev/termination-log"
MAX_BYTES = 4000  # below the kubelet's 4096-byte cap, with room for a trailing newline


@dataclass(frozen=True)
class TrainingResult:
    run_id: str
    experiment_id: str
    model_name: str
    version: str | None
    metrics: dict[str, float] = field(default_factory=dict)
    promoted: bool = False
    alias: str | None = None
    trial: int | None = None
    stage: str | None = None
    # promotion.Decision.summary(): reason, message, metric, value, championVersion, championValue.
    promotion: dict[str, Any] | None = None

    def message(self) -> dict[str, Any]:
        return {
            "ok": True,
            "runId": self.run_id,
            "experimentId": self.experiment_id,
            "modelName": self.model_name,
            "version": self.version,
            "metrics": self.metrics,
            "promoted": self.promoted,
            "alias": self.alias,
            "trial": self.trial,
            "stage": self.stage,
            "promotion": self.promotion,
        }


def failure_message(failure: TrainingFailure) -> dict[str, Any]:
    return {"ok": False, "reason": failure.reason, "message": failure.message}


def encode(message: dict[str, Any]) -> str:
    """Compact JSON under MAX_BYTES: a long failure message is cut first, then metrics are
    dropped one by one (the run in MLflow still has them all)."""
    message = dict(message)
    text = _dump(message)
    if len(text.encode()) > MAX_BYTES and isinstance(message.get("message"), str):
        excess = len(text.encode()) - MAX_BYTES
        kept = message["message"].encode()[: max(0, len(message["message"].encode()) - excess - 16)]
        message["message"] = kept.decode(errors="ignore") + " …(truncated)"
        text = _dump(message)
    if len(text.encode()) > MAX_BYTES and isinstance(message.get("metrics"), dict):
        metrics = dict(message["metrics"])
        while metrics and len(text.encode()) > MAX_BYTES:
            metrics.popitem()
            message["metrics"] = metrics
            text = _dump(message)
    return text


def _dump(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str)


def termination_log_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env.get("MODELYARD_TERMINATION_LOG") or DEFAULT_TERMINATION_LOG)


def write_termination_message(message: dict[str, Any], path: Path) -> bool:
    """Write the message; False when the path is not writable (running outside a pod)."""
    try:
        path.write_text(encode(message))
    except OSError:
        return False
    return True
