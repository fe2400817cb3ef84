"""Kubernetes Events and the reconcile Outcome that carries them, for every controller.

Events are emitted one way only: :func:`post` builds a core/v1 Event and creates it through
``kube``, so TrainingRun and ModelDeployment Events look alike and share one code path.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from modelyard_operator import kube
from modelyard_operator.conditions import utc_now

if TYPE_CHECKING:
    from modelyard_operator.registry import RegistryError

logger = logging.getLogger(__name__)

# The API server accepts longer messages, but kubectl's table and most UIs cut them anyway.
MESSAGE_LIMIT = 1024


class Event(NamedTuple):
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Outcome:
    """What one reconcile decided: the full status and the Events announcing its changes."""

    status: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    # The object the events are about (at least apiVersion, kind, name, namespace, uid).
    body: dict[str, Any] = field(default_factory=dict)
    # TrainingRun: nothing is left to do (the run reached a terminal phase).
    finished: bool = False
    # ModelDeployment: the token the registry watcher compares against (version, or "!Reason").
    observed: str = ""
    registry_error: RegistryError | None = None
    promotion: tuple[str, str] | None = None
    # ModelDeployment: resourceVersion of the serving Deployment this pass read or wrote.
    deployment_version: str | None = None


def event_object(involved: dict[str, Any], event: Event, now: str) -> dict[str, Any]:
    """A core/v1 Event about ``involved`` (pure)."""
    meta = involved["metadata"]
    suffix = f"{time.time_ns():x}"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{suffix}", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": involved["apiVersion"], "kind": involved["kind"], "name": meta["name"],
            "namespace": meta["namespace"], "uid": meta["uid"],
        },
        "type": event.type,
        "reason": event.reason,
        "message": event.message[:MESSAGE_LIMIT],
        "source": {"component": "modelyard"},
        "reportingComponent": "modelyard",
        "reportingInstance": "modelyard-operator",
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


def post(involved: dict[str, Any], events: list[Event]) -> None:
    """Create one Event per entry; best effort, never failing the caller's reconcile."""
    now = utc_now()
    for event in events:
        try:
            kube.create(event_object(involved, event, now))
        except Exception as error:  # an Event is best effort; never fail a reconcile over it
            if kube.is_namespace_terminating(error):
                logger.debug("namespace %s is terminating; event %s dropped",
                             involved["metadata"].get("namespace"), event.reason)
                return
            logger.warning("could not post event %s for %s/%s", event.reason,
                           involved["metadata"].get("namespace"), involved["metadata"].get("name"),
                           exc_info=True)
