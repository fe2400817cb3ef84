"""``python -m modelyard_operator``: configure kopf, start metrics, run all controllers."""

from __future__ import annotations

import importlib
import logging
import os
from typing import Any

import kopf

from modelyard_operator import kube
from modelyard_operator.metrics import start_metrics_server
from modelyard_operator.settings import Settings, load_settings

logger = logging.getLogger("modelyard_operator")

# Controllers register their kopf handlers at import time.
HANDLER_MODULES = (
    "modelyard_operator.trainingrun.handlers",
    "modelyard_operator.modeldeployment.handlers",
)

# Peering (kopf's leader coordination between replicas) needs the KopfPeering CRDs and RBAC
# and only matters with >1 replica. The chart runs one replica with a Recreate strategy, so
# the default is standalone; naming a peering object (env below) opts into HA mode.
PEERING_ENV = "MODELYARD_PEERING_NAME"


@kopf.on.startup()
def configure_kopf(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Tune kopf for long-running watches behind cloud load balancers."""
    # Cloud LBs (AKS ~4 min idle) drop idle watch streams without a FIN, so a watch can hang
    # silently forever. Ask the server to end each watch after ~3.5 min and give up client-side
    # a bit later; kopf then re-lists and re-watches.
    settings.watching.server_timeout = 210
    settings.watching.client_timeout = 240
    settings.watching.connect_timeout = 30
    # Plain API calls (patches, event posts) should fail fast and be retried rather than
    # hang for aiohttp's 5-minute default.
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 10
    # Only warnings and errors from kopf's own logging become k8s Events; our controllers post
    # their meaningful events themselves through modelyard_operator.events (kube), not kopf.
    settings.posting.level = logging.WARNING
    # Sync handlers (all of ours: kube.py is synchronous) run in this pool; bound it so a
    # burst of objects cannot open an unbounded number of API connections.
    settings.execution.max_workers = 16
    # The listing before each watch (at start, and after an expired one) comes in chunks:
    # one response with a thousand objects is a memory spike that fragmentation then keeps.
    settings.watching.chunk_size = 200
    # A per-object worker keeps its last event (a whole parsed body) while it idles; after a
    # relist that is every object at once. Let idle workers go after 1 s instead of 5 s.
    settings.queueing.idle_timeout = 1.0
    # Persistence keeps kopf's defaults (progress and diff-base in annotations): handlers are
    # level-based, so no state of ours lives there. No finalizers: TrainingRun children are
    # garbage-collected through ownerReferences, and MLflow history must outlive the run.
    peering_name = os.environ.get(PEERING_ENV, "")
    if peering_name:
        settings.peering.name = peering_name
        settings.peering.mandatory = True  # two active replicas would double-reconcile
    else:
        settings.peering.standalone = True


def import_handlers() -> list[str]:
    """Import every controller module; a missing or broken one stops the operator at once."""
    for name in HANDLER_MODULES:
        importlib.import_module(name)
    return list(HANDLER_MODULES)


def run(settings: Settings) -> None:
    """Start metrics, load controllers and block in kopf's event loop."""
    kube.configure(always_apply=settings.always_apply)
    start_metrics_server(settings.metrics_port)
    import_handlers()
    peering_name = os.environ.get(PEERING_ENV, "")
    kopf.run(
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz",
        standalone=not peering_name,
        peering_name=peering_name or None,
    )


def main() -> None:
    kopf.configure(verbose=os.environ.get("MODELYARD_LOG_LEVEL", "").upper() == "DEBUG")
    run(load_settings())


if __name__ == "__main__":
    main()
