"""kopf wiring for ModelDeployment: every trigger funnels into the same level-based reconcile.

No finalizers: all children are garbage-collected through ownerReferences, and nothing
outside Kubernetes needs cleaning up when a ModelDeployment goes away.
"""

from __future__ import annotations

from typing import Any

import kopf

from modelyard_operator import GROUP, VERSION
from modelyard_operator.modeldeployment.controller import MDController
from modelyard_operator.modeldeployment.models import MD_LABEL, MD_PLURAL, RETRAIN_LABEL
from modelyard_operator.settings import load_settings

OUR_DEPLOYMENTS: dict[str, Any] = {
    MD_LABEL: kopf.PRESENT, "app.kubernetes.io/managed-by": "modelyard",
}
_state: dict[str, MDController] = {}


def controller() -> MDController:
    if "controller" not in _state:  # a handler racing operator startup: come back soon
        raise kopf.TemporaryError("ModelDeployment controller is starting", delay=1)
    return _state["controller"]


@kopf.on.startup()
def watch_only_serving_deployments(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Server-side filter: otherwise the operator would stream every Deployment in the cluster.
    settings.watching.label_selectors["apps", "v1", "deployments"] = MD_LABEL


@kopf.on.startup()
async def start_modeldeployment_controller(**_: Any) -> None:
    _state["controller"] = MDController(load_settings())
    await _state["controller"].start()


@kopf.on.cleanup()
async def stop_modeldeployment_controller(**_: Any) -> None:
    if "controller" in _state:
        await _state.pop("controller").stop()


@kopf.on.resume(GROUP, VERSION, MD_PLURAL)
def resume_modeldeployment(namespace: str | None, name: str, **_: Any) -> None:
    controller().resume((str(namespace), name))


@kopf.on.create(GROUP, VERSION, MD_PLURAL)
@kopf.on.update(GROUP, VERSION, MD_PLURAL)
def reconcile_modeldeployment(namespace: str | None, name: str, **_: Any) -> None:
    controller().reconcile((str(namespace), name))


def _deleted(type: str | None, **_: Any) -> bool:
    return type == "DELETED"


# Filtered with when=, so the status writes of every reconcile do not each cost a handler
# call in kopf's thread pool.
@kopf.on.event(GROUP, VERSION, MD_PLURAL, when=_deleted)
def modeldeployment_event(namespace: str | None, name: str, **_: Any) -> None:
    """Stop polling its model and reading its drift."""
    controller().runner.forget((str(namespace), name))


@kopf.on.event("apps", "v1", "deployments", labels=OUR_DEPLOYMENTS)
async def serving_deployment_changed(namespace: str | None, labels: kopf.Labels, meta: kopf.Meta,
                                     **_: Any) -> None:
    """Rollout progress updates the MD's status now, not at the next resync.

    Async, and only hands the key on: a sync handler would park each event's parsed body in
    kopf's executor queue, and a relist of a thousand Deployments would hold them all at once.
    """
    controller().deployment_changed_soon((str(namespace), labels[MD_LABEL]), meta.get("resourceVersion"))


@kopf.on.event(GROUP, VERSION, "trainingruns", labels={RETRAIN_LABEL: kopf.PRESENT})
def retrain_run_changed(namespace: str | None, labels: kopf.Labels, **_: Any) -> None:
    """A retraining run finishing ends the MD's Retraining condition promptly."""
    controller().reconcile_quietly((str(namespace), labels[RETRAIN_LABEL]))
