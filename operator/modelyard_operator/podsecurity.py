"""What every pod the operator creates wears: Pod Security "restricted", read-only root.

The one home of these facts for both Job and Deployment builders. The only writable path is
/tmp, an emptyDir (HOME=/tmp in the images; MLflow downloads and temp files go there).
"""

from __future__ import annotations

from typing import Any

from modelyard_operator.settings import Settings

TMP_VOLUME = "tmp"
TMP_PATH = "/tmp"


def pod_security_context(settings: Settings) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": settings.pod_uid,
        "runAsGroup": settings.pod_uid,
        "fsGroup": settings.pod_uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


Specs = list[dict[str, Any]]


def with_tmp(volumes: Specs, mounts: Specs) -> tuple[Specs, Specs]:
    """Add the /tmp emptyDir unless the spec already mounts something there."""
    if any(m.get("mountPath", "").rstrip("/") == TMP_PATH for m in mounts):
        return volumes, mounts
    return ([*volumes, {"name": TMP_VOLUME, "emptyDir": {}}],
            [*mounts, {"name": TMP_VOLUME, "mountPath": TMP_PATH}])
