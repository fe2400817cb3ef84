"""Start-up on the real node: an iris TrainingRun from apply to Succeeded, and a serving pod from
created to Ready, each split into phases.

Run with ``make bench-node`` (pytest drives it for the session's cluster, operator and
namespace fixtures; it prints figures and asserts only that every run finished). Times come
from watch events received by this process (sub-second), not from the 1 s timestamps the API
server stores; container start and finish come from the kubelet's reported state.

Training: ``MODELYARD_BENCH_RUNS`` (default 5) iris runs applied one after another, each timed
from ``kubectl apply`` through Job created, pod created, pod scheduled, container started,
container finished, Job complete and the TrainingRun Succeeded.

Serving: one ModelDeployment (1 replica) for a registered iris version; its pod is then deleted
``MODELYARD_BENCH_RUNS`` times, and each replacement is timed from created through scheduled
and container started to Ready (the kubelet's readiness probe seeing ``/readyz`` 200).
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client, watch

from tests.helpers import kubectl_apply, mlflow_client, wait_for
from tests.integration.test_modeldeployment import log_iris_version, md_manifest, unique, wait_serving
from tests.integration.test_trainingrun import model_name, tr_manifest, wait_phase

RUNS = int(os.environ.get("MODELYARD_BENCH_RUNS", "5"))
TR_LABEL, MD_LABEL = "modelyard.io/trainingrun", "modelyard.io/modeldeployment"


class Watcher:
    """Streams one list's watch events on a thread, calling ``on_event(obj, received_at)``."""

    def __init__(self, list_fn: Callable[..., Any], on_event: Callable[[Any, float], None], **kwargs: Any):
        self._w = watch.Watch()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, args=(list_fn, on_event, kwargs), daemon=True)
        self._thread.start()

    def _run(self, list_fn: Callable[..., Any], on_event: Callable[[Any, float], None],
             kwargs: dict[str, Any]) -> None:
        try:
            for event in self._w.stream(list_fn, **kwargs):
                on_event(event["object"], time.monotonic())
        except Exception:
            if not self._stopped:  # a stream cut while stopping is expected
                raise

    def stop(self) -> None:
        self._stopped = True
        self._w.stop()


def _pod_marks(pod: Any, marks: dict[str, float], at: float) -> None:
    marks.setdefault("pod created", at)
    if pod.spec.node_name:
        marks.setdefault("pod scheduled", at)
    for cs in pod.status.container_statuses or []:
        if cs.state and cs.state.running:
            marks.setdefault("container started", at)
        if cs.state and cs.state.terminated:
            marks.setdefault("container started", at)
            marks.setdefault("container finished", at)
    for cond in pod.status.conditions or []:
        if cond.type == "Ready" and cond.status == "True":
            marks.setdefault("ready", at)


def _summary(runs: list[dict[str, float]], order: list[str]) -> dict[str, dict[str, float]]:
    """Median, min and max per phase (seconds since the run's start, and each phase's own span)."""
    out: dict[str, dict[str, float]] = {}
    prev = None
    for key in order:
        at = [r[key] for r in runs if key in r]
        if not at:
            continue
        span = [r[key] - r[prev] for r in runs if key in r and prev in r] if prev else at
        out[key] = {"median_at": round(statistics.median(at), 2), "min_at": round(min(at), 2),
                    "max_at": round(max(at), 2), "median_phase": round(statistics.median(span), 2)}
        prev = key
    return out


# The run succeeds from its pod's exit; the Job's Complete condition follows on its own time.
TRAINING_ORDER = ["applied", "job created", "pod created", "pod scheduled", "container started",
                  "container finished", "succeeded", "job complete"]
SERVING_ORDER = ["pod created", "pod scheduled", "container started", "ready"]


def test_training_apply_to_succeeded(cluster: Any, namespace: str, operator: Any) -> None:
    core, batch = client.CoreV1Api(cluster.api), client.BatchV1Api(cluster.api)
    objects = client.CustomObjectsApi(cluster.api)
    marks: dict[str, dict[str, float]] = {}

    def on_pod(pod: Any, at: float) -> None:
        run = (pod.metadata.labels or {}).get(TR_LABEL)
        if run in marks:
            _pod_marks(pod, marks[run], at)

    def on_job(job: Any, at: float) -> None:
        run = (job.metadata.labels or {}).get(TR_LABEL)
        if run in marks:
            marks[run].setdefault("job created", at)
            if any(c.type == "Complete" and c.status == "True" for c in job.status.conditions or []):
                marks[run].setdefault("job complete", at)

    def on_run(run: dict[str, Any], at: float) -> None:
        name = run["metadata"]["name"]
        if name in marks and (run.get("status") or {}).get("phase") == "Succeeded":
            marks[name].setdefault("succeeded", at)

    watchers = [
        Watcher(core.list_namespaced_pod, on_pod, namespace=namespace),
        Watcher(batch.list_namespaced_job, on_job, namespace=namespace),
        Watcher(objects.list_namespaced_custom_object, on_run, group="modelyard.io", version="v1alpha1",
                namespace=namespace, plural="trainingruns"),
    ]
    model = model_name(namespace, "iris")
    try:
        for i in range(RUNS + 1):  # the first run warms the node's page cache for the image
            name = f"iris-{i}"
            marks[name] = {}
            started = time.monotonic()
            kubectl_apply(cluster, namespace, tr_manifest(name, model))
            marks[name]["applied"] = time.monotonic()
            run = wait_phase(cluster, namespace, name)
            assert run["status"]["phase"] == "Succeeded", run["status"]
            wait_for(lambda n=name: "succeeded" in marks[n] and "job complete" in marks[n], 30,
                     what=f"{name}'s watch events")
            marks[name] = {k: v - started for k, v in marks[name].items()}
    finally:
        for w in watchers:
            w.stop()
    runs = [marks[f"iris-{i}"] for i in range(1, RUNS + 1)]
    report = {"training_apply_to_succeeded_s": _summary(runs, TRAINING_ORDER),
              "warm_up_run": {k: round(v, 2) for k, v in sorted(marks["iris-0"].items(), key=lambda kv: kv[1])},
              "runs": [round(r["succeeded"], 2) for r in runs]}
    _report(report, "training")


def test_serving_pod_created_to_ready(cluster: Any, namespace: str, operator: Any) -> None:
    core = client.CoreV1Api(cluster.api)
    model = unique("iris")
    version = log_iris_version(cluster, model)
    mlflow_client(cluster).set_registered_model_alias(model, "champion", version)
    kubectl_apply(cluster, namespace, md_manifest("start", {"name": model, "alias": "champion"}, replicas=1))
    wait_serving(cluster, namespace, "start", version)
    marks: dict[str, dict[str, float]] = {}

    def on_pod(pod: Any, at: float) -> None:
        if (pod.metadata.labels or {}).get(MD_LABEL) == "start" and not pod.metadata.deletion_timestamp:
            _pod_marks(pod, marks.setdefault(pod.metadata.name, {}), at)

    selector = f"{MD_LABEL}=start"
    w = Watcher(core.list_namespaced_pod, on_pod, namespace=namespace, label_selector=selector)
    runs: list[dict[str, float]] = []
    try:
        for _ in range(RUNS):
            old = {p.metadata.name for p in core.list_namespaced_pod(namespace, label_selector=selector).items}
            for name in old:
                core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)

            def replacement_ready(old: set[str] = old) -> dict[str, float] | None:
                fresh = [m for n, m in list(marks.items()) if n not in old and "ready" in m]
                return fresh[0] if fresh else None

            got = wait_for(replacement_ready, 180, interval=0.1, what="replacement pod Ready")
            start = got["pod created"]
            runs.append({k: v - start for k, v in got.items()})
            for name in old:
                marks.pop(name, None)
            wait_for(lambda old=old: not any(
                p.metadata.name in old for p in core.list_namespaced_pod(namespace, label_selector=selector).items),
                60, what="old pod gone")
    finally:
        w.stop()
    _report({"serving_pod_created_to_ready_s": _summary(runs, SERVING_ORDER),
             "runs": [round(r["ready"], 2) for r in runs]}, "serving")


def _report(report: dict[str, Any], what: str) -> None:
    print("\n" + json.dumps(report, indent=2))
    if out := os.environ.get("MODELYARD_BENCH_JSON"):
        path = Path(out)
        data = json.loads(path.read_text()) if path.exists() else {}
        data[what] = report
        path.write_text(json.dumps(data, indent=2))
