"""kopf wiring for TrainingRun: every trigger funnels into the same level-based sync_run."""

from __future__ import annotations

import logging
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from modelyard_operator import GROUP, VERSION, events, kube
from modelyard_operator.settings import load_settings
from modelyard_operator.trainingrun.models import PLURAL, RUN_LABEL, TERMINAL_PHASES, InvalidSpecError
from modelyard_operator.trainingrun.reconcile import JobConflictError, sync_run

logger = logging.getLogger(__name__)

# While a run is unfinished it is re-read this often. The Job and pod watches below react to
# every change the status mirrors, so this only bounds the delay when a sync they triggered
# failed (an API server outage) or an event was missed; each poll costs three reads, which
# for hundreds of long-running runs is most of the operator's steady-state traffic.
POLL_SECONDS = 30.0
RETRY_SECONDS = 5.0
OUR_JOBS: dict[str, Any] = {RUN_LABEL: kopf.PRESENT, "app.kubernetes.io/managed-by": "modelyard"}


def _unfinished(status: kopf.Status, **_: Any) -> bool:
    return status.get("phase") not in TERMINAL_PHASES


def _sync(namespace: str | None, name: str) -> None:
    if not namespace:  # both TrainingRun and Job are namespaced; kopf types it optional
        raise kopf.PermanentError("object without a namespace")
    try:
        outcome = sync_run(namespace, name, load_settings())
    except InvalidSpecError as error:
        raise kopf.PermanentError(str(error)) from error
    except (ApiException, HTTPError) as error:
        if kube.is_namespace_terminating(error):
            # A 403 for a create in a namespace being deleted: the run goes with it.
            logger.info("namespace %s is being deleted; TrainingRun %s not synced", namespace, name)
            return
        raise kopf.TemporaryError(f"Kubernetes API: {error}", delay=RETRY_SECONDS) from error
    except JobConflictError as error:
        raise kopf.TemporaryError(str(error), delay=RETRY_SECONDS) from error
    if outcome is not None:
        events.post(outcome.body, outcome.events)


@kopf.on.startup()
def watch_only_training_jobs(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Server-side filters: on a busy cluster the operator would otherwise stream every Job and
    # every pod.
    settings.watching.label_selectors["batch", "v1", "jobs"] = RUN_LABEL
    settings.watching.label_selectors["v1", "pods"] = RUN_LABEL


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
def reconcile_trainingrun(namespace: str | None, name: str, **_: Any) -> None:
    _sync(namespace, name)


@kopf.timer(GROUP, VERSION, PLURAL, interval=POLL_SECONDS, when=_unfinished)
def poll_trainingrun(namespace: str | None, name: str, **_: Any) -> None:
    _sync(namespace, name)


@kopf.on.event("batch", "v1", "jobs", labels=OUR_JOBS)
@kopf.on.event("v1", "pods", labels=OUR_JOBS)
def training_job_or_pod_changed(namespace: str | None, labels: kopf.Labels, **_: Any) -> None:
    """A change of a run's Job or of one of its pods (scheduled, image pulled or not, started,
    exited) wakes the run at once instead of at the next poll: the status mirrors both."""
    try:
        _sync(namespace, labels[RUN_LABEL])
    except (kopf.PermanentError, kopf.TemporaryError) as error:
        # Event handlers are not retried; the run's own handlers and timer will be.
        logger.debug("job event for %s/%s not synced: %s", namespace, labels[RUN_LABEL], error)
