"""Operator at scale (`make bench-operator`): many ModelDeployments on kwok nodes, a real MLflow.

For each size N (ModelDeployments) the bench registers N/10 models in MLflow, creates N/5
TrainingRuns and N ModelDeployments (one replica each, on tainted kwok nodes: pods are Running
and Ready without a process) in its own ``bench-<id>`` namespace, runs the operator as a host
process watching only that namespace, and measures:

- create → all resolved: from the first create until every MD is Ready on version 1;
- quiet window: the operator's API requests (writes and reads) per minute, the API server's
  write requests for the same resources (cluster-wide, so other tenants add noise), registry
  requests per poll interval against the number of distinct models, MD reconciles per minute;
- alias move: seconds from moving a model's alias (MLflow delivers the signed webhook) until
  each of its MDs' Deployments shows the new version, p50/p99 over several moves;
- full resync: operator restarted, seconds until it has reconciled every MD;
- RSS of the operator process from /proc, idle and peak.

``--compare`` repeats resync, quiet window and alias moves with MODELYARD_ALWAYS_APPLY=true (the
old behaviour) in the same run, because the shared machine is too noisy for runs far apart.
Everything it created is deleted at the end. Only run it against the running local cluster.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "k8s" / "local"))
import operator_setup as setup
from harness import cpu_seconds
from operator_probe import (
    READ_VERBS,
    REPO,
    WRITE_VERBS,
    OperatorProcess,
    Samples,
    VersionWatch,
    api_port_taken,
    delta,
    image_python,
    report,
)

MD = "ModelDeployment"
RAN = "ok|waiting|error|invalid"  # reconcile results that ran (not "coalesced")


def wait(check: Any, timeout: float, what: str, interval: float = 1.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached in {timeout:.0f}s")


class Progress:
    """When every MD was first resolved (the operator's part: Deployment applied, status
    written) and when every MD was Ready (the cluster's too: ReplicaSets, pods on kwok)."""

    def __init__(self, bench: setup.Bench, count: int) -> None:
        self.bench, self.count, self.started = bench, count, time.monotonic()
        self.resolved_s: float | None = None

    def all_ready(self) -> bool:
        statuses = [md.get("status") or {} for md in setup.list_objects(self.bench, "modeldeployments")]
        if self.resolved_s is None and sum(st.get("resolvedVersion") == "1" for st in statuses) >= self.count:
            self.resolved_s = round(time.monotonic() - self.started, 1)
        ready = sum(st.get("resolvedVersion") == "1" and any(
            c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions") or [])
            for st in statuses)
        return ready >= self.count


def settle(op: OperatorProcess, quiet: float = 10, timeout: float = 45) -> None:
    """Until the operator's writes stop for ``quiet`` s (or ``timeout``: always-apply never does)."""
    started, last, since = time.monotonic(), op.writes(), time.monotonic()
    while time.monotonic() - started < timeout and time.monotonic() - since < quiet:
        time.sleep(1)
        now = op.writes()
        if now != last:
            last, since = now, time.monotonic()


def apiserver_writes(bench: setup.Bench) -> Samples:
    from operator_probe import parse_metrics

    text = bench.raw("/metrics")
    return {k: v for k, v in parse_metrics(text).items() if k[0] == "apiserver_request_total"}


CHILD_RESOURCES = "deployments|services|modeldeployments|trainingruns|jobs|events|pods"


def quiet_window(op: OperatorProcess, bench: setup.Bench, seconds: float, models: int) -> dict[str, Any]:
    """Requests over a window in which nothing changes, per minute."""
    settle(op)
    before, api_before, started = op.metrics(), apiserver_writes(bench), time.monotonic()
    cpu = cpu_seconds(op.proc.pid)
    time.sleep(seconds)
    after, api_after = op.metrics(), apiserver_writes(bench)
    cpu = cpu_seconds(op.proc.pid) - cpu
    minutes = (time.monotonic() - started) / 60
    kube = "modelyard_operator_kube_requests_total"
    duration = "modelyard_operator_reconcile_duration_seconds"
    polls = seconds / op.poll_interval
    snapshots = delta(before, after, "modelyard_operator_registry_requests_total", call="get_registered_model")
    rounds = delta(before, after, "modelyard_operator_registry_poll_duration_seconds_count")
    by_resource = {r: delta(before, after, kube, verb="|".join(WRITE_VERBS), resource=r) / minutes
                   for r in ("deployments", "services", "modeldeployments/status",
                             "trainingruns/status", "events")}
    return {
        "window_s": round(seconds),
        "operator_writes_per_min": round(delta(before, after, kube, verb="|".join(WRITE_VERBS)) / minutes, 1),
        "operator_writes_by_resource_per_min": {k: round(v, 1) for k, v in by_resource.items() if v},
        "operator_reads_per_min": round(delta(before, after, kube, verb="|".join(READ_VERBS)) / minutes, 1),
        "apiserver_writes_per_min": round(delta(api_before, api_after, "apiserver_request_total",
                                                verb="APPLY|PATCH|POST|PUT|DELETE",
                                                resource=CHILD_RESOURCES) / minutes, 1),
        "apiserver_applies_per_min": round(delta(api_before, api_after, "apiserver_request_total",
                                                 verb="APPLY", resource="deployments|services")
                                           / minutes, 1),
        "md_reconciles_per_min": round(delta(before, after, "modelyard_operator_reconciles_total",
                                             kind=MD, result=RAN) / minutes, 1),
        "md_reconcile_ms": round(1000 * delta(before, after, f"{duration}_sum", kind=MD)
                                 / max(1.0, delta(before, after, f"{duration}_count", kind=MD)), 1),
        # Per poll interval (the window may hold one poll per model more than window/interval);
        # per round of the watcher, which polls each model when it is due, so rounds may
        # hold fewer models than there are.
        "registry_snapshots_per_poll": round(snapshots / polls, 2),
        "registry_snapshots_per_round": round(snapshots / max(1.0, rounds), 2),
        "registry_requests_per_poll": round(delta(before, after, "modelyard_operator_registry_requests_total")
                                            / polls, 2),
        "distinct_models": models,
        "operator_cpu_pct": round(100 * cpu / (60 * minutes), 1),
        "rss_mib": round(op.rss_now(), 1),
    }


def alias_moves(op: OperatorProcess, bench: setup.Bench, moves: int,
                per_model: dict[str, list[str]]) -> dict[str, Any]:
    """Move the alias of ``moves`` models one after another; latency per affected Deployment.

    Each move waits until the operator is quiet again (the previous move's rollouts finished):
    the figure is one alias move's, not a backlog's.
    """
    mc = bench.mlflow()
    watch = VersionWatch(bench.api, bench.namespace)
    latencies: list[float] = []
    try:
        for model in bench.models[:moves]:
            names = per_model[model]
            target = "2" if watch.current.get(names[0]) == "1" else "1"
            settle(op, quiet=3, timeout=30)
            since = time.monotonic()
            mc.set_registered_model_alias(model, setup.ALIAS, target)
            latencies += watch.wait(names, target, since, timeout=60)
    finally:
        watch.stop()
    ordered = sorted(latencies)
    return {"moves": moves, "deployments": len(ordered),
            "p50_s": round(statistics.median(ordered), 3),
            "p99_s": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 3),
            "max_s": round(ordered[-1], 3)}


def resync(op: OperatorProcess, count: int, **env: str) -> dict[str, Any]:
    """Restart the operator; seconds until it has reconciled every MD again, and its writes."""
    settle(op)
    op.stop()
    healthy = op.start(**env)
    seconds = wait(lambda: op.tracked() >= count, 600, "full resync", interval=0.5) + healthy
    return {"seconds": round(seconds, 1), "healthy_s": round(healthy, 1),
            "operator_writes": op.writes(), "rss_peak_mib": round(op.rss_peak(), 1)}


def run_size(size: int, args: argparse.Namespace, info: Any, kubectl: Path) -> dict[str, Any]:
    from kubernetes import config

    models = max(1, size // args.mds_per_model)
    runs = int(size * args.training_runs_per_md)
    bench = setup.Bench(uuid.uuid4().hex[:6], config.new_client_from_config(str(info.kubeconfig)),
                        info.mlflow_uri, kubectl, info.kubeconfig)
    log_dir = Path(tempfile.mkdtemp(prefix=f"bench-operator-{size}-"))
    op = OperatorProcess(bench.namespace, info.kubeconfig, info.mlflow_uri, args.poll_interval,
                         log_dir, args.python)
    result: dict[str, Any] = {"mds": size, "models": models, "training_runs": runs,
                              "namespace": bench.namespace, "log": str(log_dir / "operator.log")}
    print(f"== {size} ModelDeployments, {models} models, {runs} TrainingRuns in {bench.namespace}",
          flush=True)
    try:
        setup.ensure_crds(bench, REPO / "crds")
        setup.create_namespace(bench)
        setup.create_nodes(bench, size * args.replicas + runs)
        setup.register_models(bench, models)
        op.start(**dict(pair.split("=", 1) for pair in args.operator_env))
        setup.register_webhook(bench, f"http://{info.host_ip}:{op.webhook_port}/webhooks/mlflow",
                               op.webhook_secret)
        time.sleep(3)
        result["rss_idle_mib"] = round(op.rss_now(), 1)
        manifests = [setup.md_manifest(bench, i, args.replicas) for i in range(size)]
        per_model: dict[str, list[str]] = {}
        for m in manifests:
            per_model.setdefault(m["spec"]["model"]["name"], []).append(m["metadata"]["name"])
        progress = Progress(bench, size)
        setup.create_objects(bench, [setup.tr_manifest(bench, i, args.training_on_kwok)
                                     for i in range(runs)] + manifests)
        wait(progress.all_ready, 3600, "all ModelDeployments ready", 2)
        result["create_to_ready_s"] = round(time.monotonic() - progress.started, 1)
        result["create_to_resolved_s"] = progress.resolved_s
        result["rss_after_create_mib"] = round(op.rss_now(), 1)
        print(f"   ready after {result['create_to_ready_s']} s", flush=True)
        result["quiet"] = quiet_window(op, bench, args.quiet_seconds, models)
        print(f"   quiet: {result['quiet']}", flush=True)
        result["alias"] = alias_moves(op, bench, min(args.alias_moves, models), per_model)
        print(f"   alias: {result['alias']}", flush=True)
        result["rss_peak_mib"] = round(op.rss_peak(), 1)  # of this first process
        result["resync"] = resync(op, size)
        print(f"   resync: {result['resync']}", flush=True)
        if args.compare:
            old = {"MODELYARD_ALWAYS_APPLY": "true"}
            result["old_resync"] = resync(op, size, **old)
            result["old_quiet"] = quiet_window(op, bench, args.quiet_seconds, models)
            result["old_alias"] = alias_moves(op, bench, min(args.alias_moves, models), per_model)
            print(f"   always-apply: {result['old_resync']} {result['old_quiet']} "
                  f"{result['old_alias']}", flush=True)
    finally:
        op.stop()
        if not args.keep:
            setup.cleanup(bench)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000", help="comma list of ModelDeployment counts (default 1000)")
    parser.add_argument("--mds-per-model", type=int, default=10, help="MDs per registered model (default 10)")
    parser.add_argument("--training-runs-per-md", type=float, default=0.2, help="TrainingRuns per MD (0.2)")
    parser.add_argument("--training-on-kwok", action="store_true",
                        help="TrainingRun pods land on kwok and finish (default: they stay Pending)")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--poll-interval", type=float, default=10.0, help="MODELYARD_POLL_INTERVAL")
    parser.add_argument("--quiet-seconds", type=float, default=90.0,
                        help="steady-state window (> 60 s: each steady MD is resynced once a minute)")
    parser.add_argument("--alias-moves", type=int, default=5)
    parser.add_argument("--compare", action="store_true", help="also measure MODELYARD_ALWAYS_APPLY=true")
    parser.add_argument("--python", default="image",
                        help="interpreter that runs the operator: 'image' (a venv from "
                             "operator/requirements.lock, as in the image; default) or a path")
    parser.add_argument("--operator-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment of the operator (repeatable)")
    parser.add_argument("--keep", action="store_true", help="leave the namespace, nodes and models")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()

    from localcluster import binaries
    from localcluster import cluster as localcluster

    started_cluster = not all(localcluster.status().values())
    if started_cluster and api_port_taken(localcluster):
        sys.exit(f"a cluster's API server already listens, but not from {localcluster.state_dir()}: "
                 "set MODELYARD_CLUSTER_DIR to that cluster's state directory")
    info = localcluster.up() if started_cluster else localcluster.info()
    try:
        kubectl = binaries.ensure_k8s()["kubectl"]
        args.python = image_python() if args.python == "image" else args.python
        results = [run_size(int(s), args, info, kubectl) for s in args.sizes.split(",")]
    finally:
        if started_cluster:
            localcluster.down()
    print(report(results, args.compare))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
