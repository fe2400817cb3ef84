"""Serving cold start: process start -> listening (/healthz 200) -> model loaded (/readyz 200).

Runs on 127.0.0.1 only: a throwaway MLflow tracking server (sqlite + served artifacts) with an
iris model registered the way modelyard training registers it, unless --tracking-uri and
--model-uri name an existing one. Each start is a fresh `python -m modelyard_serving`; the
server's CPU time until ready is reported beside wall time, because on a shared machine CPU
time moves far less with background load. One more start under `-X importtime` lists the
heaviest top-level imports.

`--config NAME=PYTHON[:PYTHONPATH]` (repeatable) compares interpreters/venvs and code trees,
e.g. a venv installed from the old lock running the old package against the new ones; starts
alternate between configurations so load changes hit them alike.

    .venv/bin/python tests/bench/bench_startup.py --runs 5
    .venv/bin/python tests/bench/bench_startup.py --tracking-uri http://127.0.0.1:5999 \\
        --config before=/tmp/v-before/bin/python:/tmp/before/serving --config after=/tmp/v-after/bin/python:serving
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
from dataclasses import dataclass, field
from pathlib import Path

from harness import PY, cpu_seconds, free_port, mlflow_server, spawn, stop

_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")


@dataclass
class Config:
    name: str
    python: str
    pythonpath: str | None
    listening: list[float] = field(default_factory=list)
    ready: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> Config:
        name, _, rest = text.partition("=")
        python, _, path = rest.partition(":")
        return cls(name, python, str(Path(path).resolve()) if path else None)


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


def one_start(config: Config, env: dict[str, str], log: Path, extra: list[str] | None = None) -> tuple[float, ...]:
    """Seconds from spawning the process to /healthz 200 and to /readyz 200, and its CPU seconds."""
    port = free_port()
    env = {**env, "MODELYARD_PORT": str(port)}
    if config.pythonpath:
        env["PYTHONPATH"] = config.pythonpath
    started = time.monotonic()
    proc = spawn([config.python, *(extra or []), "-m", "modelyard_serving"], env, log)
    listening = 0.0
    try:
        while time.monotonic() - started < 180:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}; see {log}")
            if not listening and _status(f"http://127.0.0.1:{port}/healthz") == 200:
                listening = time.monotonic() - started
            if listening and _status(f"http://127.0.0.1:{port}/readyz") == 200:
                return listening, time.monotonic() - started, cpu_seconds(proc.pid)
            time.sleep(0.01)
        raise TimeoutError(f"not ready after 180 s; see {log}")
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


def _spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})"


def measure(configs: list[Config], tracking_uri: str, model_uri: str, runs: int, workdir: Path) -> None:
    env = {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MODELYARD_MODEL_URI": model_uri,
        "MODELYARD_HOST": "127.0.0.1",
        "MODELYARD_LOG_LEVEL": "WARNING",
        "MODELYARD_ACCESS_LOG": "false",
    }
    for config in configs:  # page cache, as on a node that already runs the image
        one_start(config, env, workdir / f"{config.name}-warmup.log")
    for i in range(runs):
        for config in configs:
            listening, ready, cpu = one_start(config, env, workdir / f"{config.name}-{i}.log")
            config.listening.append(listening)
            config.ready.append(ready)
            config.cpu.append(cpu)
    for config in configs:
        profile_log = workdir / f"{config.name}-importtime.log"
        one_start(config, env, profile_log, ["-X", "importtime"])
        total, heaviest = import_profile(profile_log, 8)
        print(f"== {config.name} ({config.python}, PYTHONPATH={config.pythonpath}), {runs} starts")
        print(f"process start -> /healthz 200: {_spread(config.listening)}")
        print(f"process start -> /readyz 200:  {_spread(config.ready)}")
        print(f"server CPU until ready:        {_spread(config.cpu)}")
        print(f"imports (one start under -X importtime, top-level cumulative): {total:.2f} s")
        for seconds, name in heaviest:
            print(f"  {seconds:6.3f} s  {name}")
    print(f"load average at the end: {' / '.join(f'{x:.1f}' for x in os.getloadavg())} (1/5/15 min)")


def register(tracking_uri: str) -> str:
    from bench_serving import register_iris

    return register_iris(tracking_uri)[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="starts per configuration")
    parser.add_argument("--tracking-uri", help="an MLflow server already holding --model-uri")
    parser.add_argument("--model-uri", default="models:/iris/1")
    parser.add_argument("--config", action="append", type=Config.parse, default=[],
                        help="NAME=PYTHON[:PYTHONPATH]; default: this interpreter as it is")
    args = parser.parse_args()
    configs = args.config or [Config("this", PY, None)]
    workdir = Path(tempfile.mkdtemp(prefix="modelyard-startup-"))
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        if args.tracking_uri:
            measure(configs, args.tracking_uri, args.model_uri, args.runs, workdir)
        else:
            with mlflow_server(workdir) as tracking_uri:
                measure(configs, tracking_uri, register(tracking_uri), args.runs, workdir)
    except Exception:
        print(f"startup benchmark failed; logs are in {workdir}", file=sys.stderr)
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
