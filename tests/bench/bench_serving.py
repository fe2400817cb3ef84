"""Serving benchmark: modelyard vs `mlflow models serve` vs bare FastAPI vs a raw ASGI floor (`make bench-serving`).

Everything runs on 127.0.0.1: a throwaway MLflow tracking server (sqlite + served artifacts) gets an
iris LogisticRegression registered the way modelyard training registers it; then each server is
started from that registry (one uvicorn worker each) and loaded with wrk, one at a time, 8
connections, single-row requests. Every server gets the same request on the same route: `POST
/invocations` with MLflow's `dataframe_split` body. The floor is predict_proba behind a raw ASGI
callable (raw_asgi_server.py): what any server on this Python stack must spend at least. Reports
req/s, p50/p99 latency, ratios, start->ready time and batch-100 rows/s as a markdown table (and
JSON with --json). `--rss-requests N` also measures the modelyard server's resident memory after
N requests (issue 6 asks for 1M).

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
from collections.abc import Callable, Sequence
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
    runs: list[dict[str, float]] = field(default_factory=list)
    batch: dict[str, float] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def load(
        self, rows: list[list[float]], seconds: float, args: argparse.Namespace, workdir: Path
    ) -> dict[str, float]:
        assert self.proc is not None
        return wrk(self.url(self.predict_path), self.body(rows), seconds, args.connections, workdir, self.proc.pid)


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


def servers(
    model_uri: str, tracking_uri: str, with_drift_off: bool, other_trees: Sequence[tuple[str, str]] = ()
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
        Server("modelyard", modelyard_cmd, "/readyz", "/invocations", dataframe_split, modelyard_env),
        Server(
            MLFLOW_SERVE,
            [MLFLOW, "models", "serve", "-m", model_uri, "--env-manager", "local", "-h", "127.0.0.1", "-w", "1"],
            "/ping",
            "/invocations",
            dataframe_split,
            mlflow_env,
            lambda port: ["-p", str(port)],
        ),
        Server(BARE, [PY, str(HERE / "bare_server.py"), model_uri], "/ping", "/invocations", dataframe_split,
               mlflow_env, port_arg),
        Server(FLOOR, [PY, str(HERE / "raw_asgi_server.py"), model_uri], "/ping", "/invocations",
               dataframe_split, mlflow_env, port_arg),
    ]
    if with_drift_off:
        off = {**modelyard_env, "MODELYARD_DRIFT_WINDOW": "0"}
        found.insert(1, Server("modelyard, drift off", modelyard_cmd, "/readyz", "/invocations", dataframe_split, off))
    for i, (label, tree) in enumerate(other_trees):  # the same server from another code tree
        env = {**modelyard_env, "PYTHONPATH": tree}
        other = Server(f"modelyard ({label})", modelyard_cmd, "/readyz", "/invocations", dataframe_split, env)
        found.insert(1 + i, other)
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
        sent += int(server.load([ROW], 30, args, workdir)["requests"])
        samples.append((sent, round(rss_mib(server.proc.pid), 1)))
        print(f"  {sent:>9} requests: RSS {samples[-1][1]} MiB", file=sys.stderr)
    return {"requests": sent, "rss_before_mib": round(before, 1), "rss_after_mib": samples[-1][1], "samples": samples}


def table(found: list[Server], rss: dict[str, Any] | None, drift_us: float) -> str:
    med = {s.name: {k: statistics.median(r[k] for r in s.runs) for k in s.runs[0]} for s in found}
    base, floor = med[MLFLOW_SERVE], med[FLOOR]
    lines = [
        "| server | req/s | p50 ms | p99 ms | x mlflow serve | % of floor's req/s | server CPU us/req | x mlflow CPU "
        "| errors | start->ready s | batch-100 rows/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in found:
        m = med[s.name]
        lines.append(
            f"| {s.name} | {m['rps']:.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | {m['rps'] / base['rps']:.1f}x "
            f"| {100 * m['rps'] / floor['rps']:.0f}% | {m['cpu_us_per_request']:.0f} "
            f"| {base['cpu_us_per_request'] / m['cpu_us_per_request']:.1f}x | {sum(r['errors'] for r in s.runs):.0f} "
            f"| {s.ready_seconds:.1f} | {s.batch.get('rps', 0) * 100:.0f} |"
        )
    by_name = {s.name: s for s in found}
    if "modelyard, drift off" in by_name:
        # Per-round ratios of paired runs: less exposed to load that changes between rounds.
        pairs = list(zip(by_name["modelyard"].runs, by_name["modelyard, drift off"].runs, strict=True))
        rps = statistics.median(1 - on["rps"] / off["rps"] for on, off in pairs)
        cpu = statistics.median(on["cpu_us_per_request"] / off["cpu_us_per_request"] - 1 for on, off in pairs)
        lines.append(
            f"\nDrift tracking cost (median of per-round pairs): {100 * rps:.1f}% of single-row req/s, "
            f"{100 * cpu:+.1f}% server CPU per request."
        )
    own_cpu = statistics.median(r["cpu_us_per_request"] for r in by_name["modelyard"].runs)
    lines.append(
        f"Drift bookkeeping measured in-process: {drift_us:.1f} us CPU per single-row request "
        f"({100 * drift_us / own_cpu:.1f}% of modelyard's {own_cpu:.0f} us)."
    )
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    lines.append(
        f"\nMedians of {len(found[0].runs)} interleaved rounds. Machine: {os.cpu_count()} CPUs, load average "
        f"{load} (1/5/15 min) at the end; wrk and the server under test share these CPUs."
    )
    if rss:
        lines.append(
            f"\nmodelyard RSS: {rss['rss_before_mib']} MiB when ready, {rss['rss_after_mib']} MiB after "
            f"{rss['requests']:,} requests."
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # Defaults keep one run of five servers under ~3 minutes on a 2-CPU machine.
    parser.add_argument("--duration", type=float, default=4, help="seconds per single-row run")
    parser.add_argument("--batch-duration", type=float, default=2, help="seconds per batch-100 run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--drift-off", action="store_true", help="also run modelyard with drift tracking off")
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
            found = servers(model_uri, tracking_uri, args.drift_off, args.modelyard_tree)
            for server in found:  # one at a time, so start-up times do not compete
                start(server, workdir)
                print(f"{server.name}: ready in {server.ready_seconds:.1f}s", file=sys.stderr)
            for server in found:
                server.load([ROW], 2, args, workdir)  # warm-up
            for round_ in range(args.rounds):  # interleaved, so background noise hits all servers alike
                for server in found:
                    server.runs.append(server.load([ROW], args.duration, args, workdir))
                    print(f"round {round_ + 1} {server.name}: {server.runs[-1]}", file=sys.stderr)
            for server in found:
                server.batch = server.load([ROW] * 100, args.batch_duration, args, workdir)
            rss = measure_rss(found[0], args.rss_requests, args, workdir) if args.rss_requests else None
    except Exception:
        print(f"benchmark failed; server logs are in {workdir}", file=sys.stderr)
        raise
    finally:
        for server in found:
            stop(server.proc)
    print(table(found, rss, drift_microseconds(profile)))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "servers": {
                        s.name: {"runs": s.runs, "batch100": s.batch, "ready_seconds": s.ready_seconds} for s in found
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
