"""Serving benchmark: modelyard vs `mlflow models serve` vs bare FastAPI vs a raw ASGI floor (`make bench-serving`).

Everything runs on 127.0.0.1: a throwaway MLflow tracking server (sqlite + served artifacts) gets an
iris LogisticRegression registered the way modelyard training registers it; then each server is
started from that registry (one uvicorn worker each) and loaded with wrk, one at a time,
single-row requests, at each of the --connections counts (default 1 and 8: micro-batching is
meant to raise throughput under concurrency without costing a lone client latency). Every
server gets the same request on the same route: `POST /invocations` with MLflow's
`dataframe_split` body. The floor is predict_proba behind a raw ASGI callable
(raw_asgi_server.py): what any server on this Python stack must spend at least. Reports req/s,
p50/p99 latency, ratios (also per round, against the floor), start->ready time and batch-100
rows/s as markdown tables (and JSON with --json). `--rss-requests N` also measures the
modelyard server's resident memory after N requests (issue 6 asks for 1M).

Needs wrk (Debian: apt-get install -y wrk) and the dev venv (`make dev`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import MLFLOW, PY, free_port, http_ok, mlflow_server, rss_mib, spawn, stop, wait_ready, wrk

HERE = Path(__file__).resolve().parent
FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
ROW = [5.1, 3.5, 1.4, 0.2]


@dataclass
class Server:
    name: str
    cmd: list[str]
    ready_path: str
    predict_path: str
    body: Callable[[list[list[float]]], Any]  # rows -> request JSON in this server's format
    env: dict[str, str] = field(default_factory=dict)
    port_args: Callable[[int], list[str]] = lambda port: []  # how the port is passed on the command line
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    ready_seconds: float = 0.0
    runs: dict[int, list[dict[str, float]]] = field(default_factory=dict)  # by connection count
    batch: dict[str, float] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def load(self, rows: list[list[float]], seconds: float, connections: int, workdir: Path) -> dict[str, float]:
        assert self.proc is not None
        return wrk(self.url(self.predict_path), self.body(rows), seconds, connections, workdir, self.proc.pid)


def register_iris(tracking_uri: str) -> tuple[str, dict[str, Any]]:
    """Train and register like modelyard training does (docs/contracts.md); returns the models:/
    URI and the reference profile."""
    import mlflow
    import mlflow.sklearn
    import numpy as np
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    mlflow.set_tracking_uri(tracking_uri)
    iris = load_iris(as_frame=True)
    model = LogisticRegression(max_iter=500).fit(iris.data.to_numpy(np.float64), iris.target.to_numpy())
    features = []
    for name in iris.data.columns:
        values = iris.data[name].to_numpy(np.float64)
        cuts = np.unique(np.quantile(values, np.linspace(0, 1, 11)[1:-1]))
        counts = np.bincount(np.searchsorted(cuts, values, side="left"), minlength=len(cuts) + 1)
        features.append({"name": name, "cuts": cuts.tolist(), "expected": (counts / len(values)).tolist()})
    profile = {"version": 1, "sampleCount": len(values), "bins": 10, "features": features}
    mlflow.set_experiment("bench")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(iris.data, iris.target),
            metadata={"modelyard_profile": profile},
            registered_model_name="iris",
        )
    return f"models:/iris/{info.registered_model_version}", profile


def drift_microseconds(profile: dict[str, Any], rows: int = 20_000) -> float:
    """CPU time the drift window adds to one single-row request, measured in-process: the
    end-to-end A/B of drift on/off is within the noise of a shared machine."""
    import numpy as np
    from modelyard_serving.drift import DriftTracker, parse_profile

    tracker = DriftTracker(parse_profile(profile, FEATURES), capacity=10_000)
    row = np.array([ROW])
    started = time.process_time()
    for _ in range(rows):
        tracker.observe(row)
    return 1e6 * (time.process_time() - started) / rows


def dataframe_split(rows: list[list[float]]) -> Any:
    return {"dataframe_split": {"columns": FEATURES, "data": rows}}


MLFLOW_SERVE = "mlflow models serve"
BARE = "bare FastAPI"
FLOOR = "raw ASGI (floor)"
MODELYARD = "modelyard"
DRIFT_OFF = "modelyard, drift off"
BATCHING_OFF = "modelyard, batching off"


def servers(
    model_uri: str,
    tracking_uri: str,
    variants: Sequence[tuple[str, dict[str, str]]] = (),
    other_trees: Sequence[tuple[str, str]] = (),
) -> list[Server]:
    mlflow_env = {"MLFLOW_TRACKING_URI": tracking_uri}
    modelyard_env = {
        **mlflow_env,
        "MODELYARD_MODEL_URI": model_uri,
        "MODELYARD_HOST": "127.0.0.1",
        "MODELYARD_LOG_LEVEL": "WARNING",
    }
    modelyard_cmd = [PY, "-m", "modelyard_serving"]
    port_arg: Callable[[int], list[str]] = lambda port: [str(port)]  # noqa: E731
    found = [
        Server(MODELYARD, modelyard_cmd, "/readyz", "/invocations", dataframe_split, modelyard_env),
        Server(
            MLFLOW_SERVE,
            [MLFLOW, "models", "serve", "-m", model_uri, "--env-manager", "local", "-h", "127.0.0.1", "-w", "1"],
            "/ping",
            "/invocations",
            dataframe_split,
            mlflow_env,
            lambda port: ["-p", str(port)],
        ),
        Server(
            BARE,
            [PY, str(HERE / "bare_server.py"), model_uri],
            "/ping",
            "/invocations",
            dataframe_split,
            mlflow_env,
            port_arg,
        ),
        Server(
            FLOOR,
            [PY, str(HERE / "raw_asgi_server.py"), model_uri],
            "/ping",
            "/invocations",
            dataframe_split,
            mlflow_env,
            port_arg,
        ),
    ]
    for i, (label, extra_env) in enumerate(variants):  # the same server with settings changed
        env = {**modelyard_env, **extra_env}
        found.insert(1 + i, Server(label, modelyard_cmd, "/readyz", "/invocations", dataframe_split, env))
    for i, (label, tree) in enumerate(other_trees):  # the same server from another code tree
        env = {**modelyard_env, "PYTHONPATH": tree}
        other = Server(f"modelyard ({label})", modelyard_cmd, "/readyz", "/invocations", dataframe_split, env)
        found.insert(1 + len(variants) + i, other)
    return found


def code_tree(value: str) -> tuple[str, str]:
    label, sep, tree = value.partition("=")
    if not sep or not label or not (Path(tree) / "modelyard_serving").is_dir():
        raise argparse.ArgumentTypeError(f"expected LABEL=DIR with DIR/modelyard_serving, got {value!r}")
    return label, str(Path(tree).resolve())


def start(server: Server, logs: Path) -> None:
    server.port = free_port()
    server.env["MODELYARD_PORT"] = str(server.port)
    started = time.monotonic()
    log = logs / f"{server.name.split()[0].strip(',')}-{server.port}.log"
    server.proc = spawn([*server.cmd, *server.port_args(server.port)], server.env, log)
    wait_ready(server.url(server.ready_path), server.proc, timeout=300)
    server.ready_seconds = time.monotonic() - started
    if not http_ok(server.url(server.predict_path), json.dumps(server.body([ROW])).encode()):
        raise RuntimeError(f"{server.name}: a valid single-row request failed")


def measure_rss(server: Server, total: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    assert server.proc is not None
    before = rss_mib(server.proc.pid)
    sent, samples = 0, []
    while sent < total:
        sent += int(server.load([ROW], 30, args.connections[-1], workdir)["requests"])
        samples.append((sent, round(rss_mib(server.proc.pid), 1)))
        print(f"  {sent:>9} requests: RSS {samples[-1][1]} MiB", file=sys.stderr)
    return {"requests": sent, "rss_before_mib": round(before, 1), "rss_after_mib": samples[-1][1], "samples": samples}


def table(found: list[Server], connections: int) -> str:
    runs = {s.name: s.runs[connections] for s in found}
    med = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
    base, floor = med[MLFLOW_SERVE], med[FLOOR]
    lines = [
        f"Single-row requests, {connections} connection{'s' if connections > 1 else ''}:\n",
        "| server | req/s | p50 ms | p99 ms | x mlflow serve | % of floor's req/s | server CPU us/req | x mlflow CPU "
        "| errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in found:
        m = med[s.name]
        lines.append(
            f"| {s.name} | {m['rps']:.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | {m['rps'] / base['rps']:.1f}x "
            f"| {100 * m['rps'] / floor['rps']:.0f}% | {m['cpu_us_per_request']:.0f} "
            f"| {base['cpu_us_per_request'] / m['cpu_us_per_request']:.1f}x "
            f"| {sum(r['errors'] for r in runs[s.name]):.0f} |"
        )
    # Per-round ratios to the floor: the two ran back to back, so background load that changes
    # between rounds hits both alike. CPU per request is the steadiest of the three.
    lines += [
        "\nPer round, against the floor's run of the same round:\n",
        "| server | req/s / floor's | floor's CPU / own CPU | p99 / floor's |",
        "|---|---|---|---|",
    ]
    for s in found:
        if s.name in (FLOOR, MLFLOW_SERVE):
            continue
        pairs = list(zip(runs[s.name], runs[FLOOR], strict=True))
        lines.append(
            f"| {s.name} | {_ratios(own['rps'] / fl['rps'] for own, fl in pairs)} "
            f"| {_ratios(fl['cpu_us_per_request'] / own['cpu_us_per_request'] for own, fl in pairs)} "
            f"| {_ratios(own['p99_ms'] / fl['p99_ms'] for own, fl in pairs)} |"
        )
    return "\n".join(lines)


def _ratios(values: Iterable[float]) -> str:
    ratios = list(values)
    return f"{', '.join(f'{r:.2f}' for r in ratios)} (median {statistics.median(ratios):.2f})"


def summary(found: list[Server], rss: dict[str, Any] | None, drift_us: float, connections: list[int]) -> str:
    lines = [
        "| server | start->ready s | batch-100 rows/s |",
        "|---|---:|---:|",
        *(f"| {s.name} | {s.ready_seconds:.1f} | {s.batch.get('rps', 0) * 100:.0f} |" for s in found),
    ]
    by_name = {s.name: s for s in found}
    if DRIFT_OFF in by_name:
        # Per-round ratios of paired runs: less exposed to load that changes between rounds.
        on_runs, off_runs = by_name[MODELYARD].runs[connections[-1]], by_name[DRIFT_OFF].runs[connections[-1]]
        pairs = list(zip(on_runs, off_runs, strict=True))
        rps = statistics.median(1 - on["rps"] / off["rps"] for on, off in pairs)
        cpu = statistics.median(on["cpu_us_per_request"] / off["cpu_us_per_request"] - 1 for on, off in pairs)
        lines.append(
            f"\nDrift tracking cost at {connections[-1]} connections (median of per-round pairs): "
            f"{100 * rps:.1f}% of single-row req/s, {100 * cpu:+.1f}% server CPU per request."
        )
    own_cpu = statistics.median(r["cpu_us_per_request"] for r in by_name[MODELYARD].runs[connections[-1]])
    lines.append(
        f"Drift bookkeeping measured in-process: {drift_us:.1f} us CPU per single-row request "
        f"({100 * drift_us / own_cpu:.1f}% of modelyard's {own_cpu:.0f} us at {connections[-1]} connections)."
    )
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    lines.append(
        f"\nMedians of {len(found[0].runs[connections[-1]])} interleaved rounds. Machine: {os.cpu_count()} CPUs, "
        f"load average {load} (1/5/15 min) at the end; wrk and the server under test share these CPUs."
    )
    if rss:
        lines.append(
            f"\nmodelyard RSS: {rss['rss_before_mib']} MiB when ready, {rss['rss_after_mib']} MiB after "
            f"{rss['requests']:,} requests."
        )
    return "\n".join(lines)


def connection_counts(value: str) -> list[int]:
    try:
        counts = [int(part) for part in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated connection counts, got {value!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"connection counts must be at least 1, got {value!r}")
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # Defaults keep one run of five servers at two connection counts under ~4 minutes on a 2-CPU machine.
    parser.add_argument("--duration", type=float, default=4, help="seconds per single-row run")
    parser.add_argument("--batch-duration", type=float, default=2, help="seconds per batch-100 run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument(
        "--connections", type=connection_counts, default=[1, 8], help="comma-separated wrk connection counts"
    )
    parser.add_argument("--drift-off", action="store_true", help="also run modelyard with drift tracking off")
    parser.add_argument(
        "--batching-off", action="store_true", help="also run modelyard with micro-batching off (max batch 1)"
    )
    parser.add_argument("--rss-requests", type=int, default=0, help="also measure modelyard RSS after N requests")
    parser.add_argument("--json", type=Path, help="write results here as JSON too")
    parser.add_argument(
        "--modelyard-tree",
        type=code_tree,
        action="append",
        default=[],
        metavar="LABEL=DIR",
        help="also run modelyard from another code tree (DIR holds modelyard_serving, e.g. an older commit's "
        "serving/ from git archive), as 'modelyard (LABEL)'; repeatable",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk not found: install it with `apt-get install -y wrk` (Debian/Ubuntu)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="modelyard-bench-"))
    found: list[Server] = []
    try:
        with mlflow_server(workdir) as tracking_uri:
            model_uri, profile = register_iris(tracking_uri)
            variants = [(DRIFT_OFF, {"MODELYARD_DRIFT_WINDOW": "0"})] if args.drift_off else []
            if args.batching_off:
                variants.append((BATCHING_OFF, {"MODELYARD_MAX_BATCH_SIZE": "1"}))
            found = servers(model_uri, tracking_uri, variants, args.modelyard_tree)
            for server in found:  # one at a time, so start-up times do not compete
                start(server, workdir)
                print(f"{server.name}: ready in {server.ready_seconds:.1f}s", file=sys.stderr)
            for server in found:
                server.load([ROW], 2, max(args.connections), workdir)  # warm-up
            for connections in args.connections:
                for round_ in range(args.rounds):  # interleaved, so background noise hits all servers alike
                    for server in found:
                        run = server.load([ROW], args.duration, connections, workdir)
                        server.runs.setdefault(connections, []).append(run)
                        print(f"{connections} conn, round {round_ + 1} {server.name}: {run}", file=sys.stderr)
            for server in found:
                server.batch = server.load([ROW] * 100, args.batch_duration, args.connections[-1], workdir)
            rss = measure_rss(found[0], args.rss_requests, args, workdir) if args.rss_requests else None
    except Exception:
        print(f"benchmark failed; server logs are in {workdir}", file=sys.stderr)
        raise
    finally:
        for server in found:
            stop(server.proc)
    for connections in args.connections:
        print(table(found, connections), end="\n\n")
    print(summary(found, rss, drift_microseconds(profile), args.connections))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "servers": {
                        s.name: {
                            "runs": {str(c): r for c, r in s.runs.items()},
                            "batch100": s.batch,
                            "ready_seconds": s.ready_seconds,
                        }
                        for s in found
                    },
                    "rss": rss,
                },
                indent=2,
            )
        )
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
