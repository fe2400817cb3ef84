"""Benchmark plumbing: start/stop servers on 127.0.0.1, drive them with wrk, read /proc."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Run as a script from tests/bench: make the repo root importable for the shared test helpers.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.helpers import free_port

PY = sys.executable
MLFLOW = str(Path(PY).with_name("mlflow"))


def http_ok(url: str, body: bytes | None = None) -> bool:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}")
        if http_ok(url):
            return
        time.sleep(0.02)
    raise TimeoutError(f"{url} not ready after {timeout}s")


def spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    # Own session, so stopping it also stops any children (mlflow serve forks uvicorn).
    # The venv's bin first: `mlflow models serve` execs `uvicorn` by name.
    env = {**env, "PATH": f"{Path(PY).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[%s]==]
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%%d,"duration_us":%%d,"errors":%%d,"p50_us":%%d,"p99_us":%%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout + e.status,
    latency:percentile(50), latency:percentile(99)))
end
"""


def wrk(
    url: str, body: Any, seconds: float, connections: int, workdir: Path, pgid: int | None = None
) -> dict[str, float]:
    """One wrk run (1 thread); with ``pgid``, also the server's CPU time per request, which
    background load on a shared machine distorts far less than req/s."""
    script = workdir / "wrk.lua"
    script.write_text(WRK_SCRIPT % json.dumps(body))
    cpu_before = cpu_seconds(pgid) if pgid else 0.0
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cpu = cpu_seconds(pgid) - cpu_before if pgid else float("nan")
    raw = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    return {
        "requests": raw["requests"],
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "errors": raw["errors"],
        "cpu_us_per_request": 1e6 * cpu / max(1, raw["requests"]),
    }


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextlib.contextmanager
def mlflow_server(workdir: Path) -> Iterator[str]:
    port = free_port()
    proc = spawn(
        [
            MLFLOW,
            "server",
            "--backend-store-uri",
            f"sqlite:///{workdir / 'mlflow.db'}",
            "--artifacts-destination",
            (workdir / "artifacts").as_uri(),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        {},
        workdir / "mlflow-server.log",
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/health", proc, timeout=300)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def cpu_seconds(pgid: int) -> float:
    """user+system CPU of every process in the group (mlflow serve runs its worker as a child)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:  # fields[2] is pgrp; [11], [12] are utime, stime
                ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")
