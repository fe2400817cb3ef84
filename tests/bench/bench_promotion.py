"""Alias moved -> new version serving all traffic, on the local cluster, Canary beside Rolling.

Run with ``make bench-rollout`` (pytest drives it, for the session's cluster, operator and
namespace fixtures; it reports figures and asserts only that both rollouts finished without a failed request).

Two ModelDeployments of 2 replicas follow the same alias of one model: one with the default
Canary settings (steps [10, 50, 100], analysis every 1m, 100 requests per side), one Rolling,
the baseline. A client loop keeps both busy. The alias moves once; the phases of each rollout
are timed from that moment by polling their status, their pods and the clients' answers:
for Rolling that splits into resolve (status names the new version), rollout (until the last
old pod stops answering) and pod start (a new pod created -> Ready).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.helpers import kubectl_apply, mlflow_client
from tests.integration.test_modeldeployment import (
    PredictLoop,
    get_md,
    log_iris_version,
    md_manifest,
    unique,
    wait_serving,
)

TIMEOUT = 900.0
MD_LABEL, VERSION_LABEL = "modelyard.io/modeldeployment", "modelyard.io/model-version"


def test_alias_move_to_promoted(cluster: Any, namespace: str, operator: Any) -> None:
    model = unique("iris")
    v1 = log_iris_version(cluster, model)
    mc = mlflow_client(cluster)
    mc.set_registered_model_alias(model, "champion", v1)
    ref = {"name": model, "alias": "champion"}
    kubectl_apply(cluster, namespace, md_manifest("rolling", ref, replicas=2))
    kubectl_apply(cluster, namespace, md_manifest("canary", ref, replicas=2, rollout={"strategy": "Canary"}))
    for name in ("rolling", "canary"):
        wait_serving(cluster, namespace, name, v1)
    v2 = log_iris_version(cluster, model)
    marks: dict[str, dict[str, float]] = {"rolling": {}, "canary": {}}
    with PredictLoop(cluster, namespace, "canary", pause=0.005) as canary_load, \
            PredictLoop(cluster, namespace, "rolling", pause=0.05) as rolling_load:
        time.sleep(5)  # both loops running before the move
        moved = time.monotonic()
        mc.set_registered_model_alias(model, "champion", v2)
        old_answers, last_old = rolling_load.ok[v1], 0.0
        while "all traffic" not in marks["rolling"] or "promoted" not in marks["canary"]:
            assert time.monotonic() - moved < TIMEOUT, marks
            now = time.monotonic() - moved
            if rolling_load.ok[v1] != old_answers:
                old_answers, last_old = rolling_load.ok[v1], now
            seen = marks["rolling"]
            for pod in client.CoreV1Api(cluster.api).list_namespaced_pod(
                    namespace, label_selector=f"{MD_LABEL}=rolling,{VERSION_LABEL}={v2}").items:
                seen.setdefault("first new pod created", now)
                ready = [c for c in pod.status.conditions or [] if c.type == "Ready" and c.status == "True"]
                if ready:
                    seen.setdefault("first new pod ready", now)
            # 100 % of traffic: serving names only the new version and no old answer for 3 s.
            if "serving" in seen and now - last_old > 3:
                seen.setdefault("all traffic", last_old)
            for name, seen in marks.items():
                status = get_md(cluster, namespace, name).get("status") or {}
                candidate = status.get("candidate") or {}
                if name == "rolling":
                    if status.get("resolvedVersion") == v2:
                        seen.setdefault("resolved", now)
                    if status.get("servingVersion") == v2 and status.get("resolvedVersion") == v2 \
                            and all(c.get("status") == "True" for c in status.get("conditions", [])
                                    if c.get("type") == "Ready"):
                        seen.setdefault("serving", now)
                    continue
                if candidate.get("version") == v2:
                    seen.setdefault("resolved", now)
                    if candidate.get("phase") == "Progressing":
                        seen.setdefault(f"step {int(candidate.get('step') or 0) + 1} started", now)
                    if candidate.get("phase") == "Promoting":
                        seen.setdefault("gates passed", now)
                    if candidate.get("phase") == "Promoted":
                        seen.setdefault("promoted", now)
                    assert candidate.get("phase") not in ("Rejected", "Aborted"), candidate
            time.sleep(0.25)
        wait_serving(cluster, namespace, "canary", v2)
    report = {
        "alias_move_to": {name: {k: round(v, 1) for k, v in sorted(seen.items(), key=lambda kv: kv[1])}
                          for name, seen in marks.items()},
        "client_requests": {"canary": dict(canary_load.ok), "rolling": dict(rolling_load.ok)},
        "client_failures": {"canary": canary_load.failures[:5], "rolling": rolling_load.failures[:5]},
        "operator_poll_interval_s": operator.env().get("MODELYARD_POLL_INTERVAL"),
    }
    print("\n" + json.dumps(report, indent=2))
    if out := os.environ.get("MODELYARD_BENCH_JSON"):
        Path(out).write_text(json.dumps(report, indent=2))
    # Every serving pod drains behind a preStop pause, so neither client may ever fail.
    assert canary_load.failures == [], canary_load.failures[:5]
    assert rolling_load.failures == [], rolling_load.failures[:5]
