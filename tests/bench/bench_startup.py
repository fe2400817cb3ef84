"""Serving cold start: process start -> listening (/healthz 200) -> model loaded (/readyz 200).

Runs on 127.0.0.1 only: a throwaway MLflow tracking server (sqlite + served artifacts) with an
iris model registered the way modelyard training registers it, unless --tracking-uri and
--model-uri name an existing one. Each run is a fresh `python -m modelyard_serving`; one more
run under `-X importtime` reports the import time in total and the heaviest top-level imports.

    .venv/bin/python tests/bench/bench_startup.py --runs 5
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from harness import PY, free_port, mlflow_server, spawn, stop

_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


def one_start(env: dict[str, str], log: Path, extra: list[str] | None = None) -> tuple[float, float]:
    """Seconds from spawning the process to /healthz 200 and to /readyz 200."""
    port = free_port()
    started = time.monotonic()
    proc = spawn([PY, *(extra or []), "-m", "modelyard_serving"], {**env, "MODELYARD_PORT": str(port)}, log)
    listening = 0.0
    try:
        while time.monotonic() - started < 120:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}; see {log}")
            if not listening and _status(f"http://127.0.0.1:{port}/healthz") == 200:
                listening = time.monotonic() - started
            if listening and _status(f"http://127.0.0.1:{port}/readyz") == 200:
                return listening, time.monotonic() - started
            time.sleep(0.01)
        raise TimeoutError(f"not ready after 120 s; see {log}")
    finally:
        stop(proc)


def import_profile(log: Path, top: int) -> tuple[float, list[tuple[float, str]]]:
    """Total top-level import time (s) of one start, and its ``top`` heaviest top-level imports."""
    heaviest: list[tuple[float, str]] = []
    for line in log.read_text(errors="replace").splitlines():
        match = _IMPORT_LINE.match(line)
        if match and not match[3]:  # no indentation: a top-level import
            heaviest.append((int(match[2]) / 1e6, match[4]))
    heaviest.sort(reverse=True)
    return sum(s for s, _ in heaviest), heaviest[:top]


def measure(tracking_uri: str, model_uri: str, runs: int, workdir: Path) -> None:
    env = {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MODELYARD_MODEL_URI": model_uri,
        "MODELYARD_HOST": "127.0.0.1",
        "MODELYARD_LOG_LEVEL": "WARNING",
        "MODELYARD_ACCESS_LOG": "false",
    }
    one_start(env, workdir / "warmup.log")  # page cache and bytecode, as on a node that has the image
    times = [one_start(env, workdir / f"run{i}.log") for i in range(runs)]
    profile_log = workdir / "importtime.log"
    one_start(env, profile_log, ["-X", "importtime"])
    total, heaviest = import_profile(profile_log, 12)
    listening = [t[0] for t in times]
    ready = [t[1] for t in times]
    print(f"runs: {runs}; process start -> /healthz 200: median {statistics.median(listening):.2f} s "
          f"(min {min(listening):.2f}, max {max(listening):.2f})")
    print(f"process start -> /readyz 200: median {statistics.median(ready):.2f} s "
          f"(min {min(ready):.2f}, max {max(ready):.2f})")
    print(f"imports (one run under -X importtime, top-level cumulative): {total:.2f} s")
    for seconds, name in heaviest:
        print(f"  {seconds:6.3f} s  {name}")


def register(tracking_uri: str) -> str:
    from bench_serving import register_iris

    return register_iris(tracking_uri)[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tracking-uri", help="an MLflow server already holding --model-uri")
    parser.add_argument("--model-uri", default="models:/iris/1")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="modelyard-startup-"))
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        if args.tracking_uri:
            measure(args.tracking_uri, args.model_uri, args.runs, workdir)
        else:
            with mlflow_server(workdir) as tracking_uri:
                measure(tracking_uri, register(tracking_uri), args.runs, workdir)
    except Exception:
        print(f"startup benchmark failed; logs are in {workdir}", file=sys.stderr)
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
