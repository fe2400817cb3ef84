"""Shadow mirroring's cost on stable throughput, side by side in one run.

Two stable modelyard servers serve the same iris model: one mirrors nothing, the other mirrors
``--percent`` of its requests to a candidate server (a third process, the shadow). wrk drives
the two stables in interleaved rounds, so background noise hits both alike; medians are
reported with the stable process's CPU time per request, which noise distorts far less than
req/s. The mirroring stable's /metrics must show the samples compared, or the run is void.

    make bench-rollout          # or: python tests/bench/bench_mirror.py --rounds 5
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path

from bench_serving import PY, ROW, Server, instances, register_iris, start
from harness import mlflow_server, stop
from prometheus_client.parser import text_string_to_metric_families


def shadow_counts(url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "modelyard_serving_shadow_batches_total":
                counts[s.labels["outcome"]] = s.value
            elif s.name == "modelyard_serving_shadow_rows_total":
                counts[f"rows_{s.labels['outcome']}"] = counts.get(f"rows_{s.labels['outcome']}", 0) + s.value
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; medians are reported")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--percent", type=float, default=10, help="share of requests mirrored")
    parser.add_argument("--json", type=Path, help="write results here as JSON too")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk not found: install it with `apt-get install -y wrk` (Debian/Ubuntu)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="modelyard-bench-mirror-"))
    procs: list[Server] = []
    try:
        with mlflow_server(workdir) as tracking_uri:
            model_uri, _ = register_iris(tracking_uri)
            env = {"MLFLOW_TRACKING_URI": tracking_uri, "MODELYARD_MODEL_URI": model_uri,
                   "MODELYARD_HOST": "127.0.0.1", "MODELYARD_LOG_LEVEL": "WARNING"}
            cmd = [PY, "-m", "modelyard_serving"]
            candidate = Server("candidate", cmd, "/readyz", "/predict", instances, dict(env))
            start(candidate, workdir)
            procs.append(candidate)
            plain = Server("stable, no mirroring", cmd, "/readyz", "/predict", instances, dict(env))
            mirroring = Server(
                f"stable, mirroring {args.percent:g} %", cmd, "/readyz", "/predict", instances,
                {**env, "MODELYARD_SHADOW_URL": candidate.url(""),
                 "MODELYARD_SHADOW_PERCENT": str(args.percent)})
            for server in (plain, mirroring):
                start(server, workdir)
                procs.append(server)
                server.load([ROW], 3, args, workdir)  # warm-up
            for round_ in range(args.rounds):
                for server in (plain, mirroring):
                    server.runs.append(server.load([ROW], args.duration, args, workdir))
                    print(f"round {round_ + 1} {server.name}: {server.runs[-1]}", file=sys.stderr)
            counts = shadow_counts(mirroring.url(""))
    finally:
        for server in procs:
            stop(server.proc)
    served = sum(r["requests"] for r in mirroring.runs)
    compared_rows = counts.get("rows_agree", 0) + counts.get("rows_disagree", 0)
    if compared_rows < 0.5 * served * args.percent / 100:
        print(f"mirroring did not happen as configured: {counts}", file=sys.stderr)
        return 1
    med = {s.name: {k: statistics.median(r[k] for r in s.runs) for k in s.runs[0]} for s in (plain, mirroring)}
    base, mirrored = med[plain.name], med[mirroring.name]
    lines = [
        "| server | req/s | p50 ms | p99 ms | CPU µs/request | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, m in med.items():
        lines.append(f"| {name} | {m['rps']:.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | "
                     f"{m['cpu_us_per_request']:.0f} | {m['errors']:.0f} |")
    lines.append("")
    lines.append(f"throughput cost of mirroring: {100 * (1 - mirrored['rps'] / base['rps']):.1f} % "
                 f"(CPU per request +{100 * (mirrored['cpu_us_per_request'] / base['cpu_us_per_request'] - 1):.1f} %)")
    lines.append(f"stable served {served:.0f} requests while mirroring; batches to the candidate: "
                 f"{counts.get('compared', 0):.0f} compared, {counts.get('dropped', 0):.0f} dropped, "
                 f"{counts.get('unreachable', 0):.0f} unreachable; "
                 f"rows agreeing {counts.get('rows_agree', 0):.0f}, disagreeing {counts.get('rows_disagree', 0):.0f}")
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps({"medians": med, "shadow": counts}, indent=2))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
