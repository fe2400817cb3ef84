"""Where pods may run: the one place GPU node selection and tolerations are merged."""

from __future__ import annotations

from typing import Any

from modelyard_operator.settings import Settings

GPU_RESOURCE = "nvidia.com/gpu"


def placement(
    node_selector: dict[str, str], tolerations: list[dict[str, Any]], gpu: int, settings: Settings,
) -> dict[str, Any]:
    """``nodeSelector`` and ``tolerations`` for a pod spec (pure; empty ones left out).

    With GPUs the operator's GPU selector and tolerations are added: the user's selector keys
    win on conflicts, and an operator toleration the user already listed is not repeated.
    Operator tolerations come first, user ones after, in every pod the operator builds.
    """
    selector = dict(node_selector)
    merged = list(tolerations)
    if gpu > 0:
        selector = {**settings.gpu_node_selector, **selector}
        merged = [t for t in settings.gpu_tolerations if t not in merged] + merged
    result: dict[str, Any] = {}
    if selector:
        result["nodeSelector"] = selector
    if merged:
        result["tolerations"] = merged
    return result
