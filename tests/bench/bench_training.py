"""Training entrypoint benchmark: `python -m modelyard_training` on a TrainingRun example (the
iris one by default) against a throwaway MLflow server on 127.0.0.1.

Every run is a fresh process, as in a pod; reported are its wall time (spawn to exit) and CPU
time (user + system). CPU time is the steadier figure on a shared machine: load stretches wall
time, not the work done. With --compare REF the package at that git ref runs in the same
rounds, interleaved, so load falls on both alike. --rootfs runs inside an unpacked training
image (chroot as uid 10001 with the image's ENV): the closest to a pod without a cluster.
--phases runs the steps under a timer instead and counts the requests to MLflow.

    python tests/bench/bench_training.py --rounds 10 --compare main
    sudo python tests/bench/bench_training.py --rootfs /tmp/training-rootfs --compare main --phases
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import yaml
from harness import PY, mlflow_server

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "modelyard_training"

# Runs inside the measured process: the entrypoint's own steps, each timed where it is bound.
PHASES = r"""
import functools, importlib, json, os, sys, time
rows, requests_seen = [], [0]
def timed(name, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        wall, cpu, seen = time.perf_counter(), time.process_time(), requests_seen[0]
        try:
            return fn(*args, **kwargs)
        finally:
            rows.append([name, time.perf_counter() - wall, time.process_time() - cpu, requests_seen[0] - seen])
    return wrapper
entry = importlib.import_module("modelyard_training.__main__")
getattr(entry, "apply_env_defaults", getattr(entry, "apply_http_defaults", None))(os.environ)
prepare = getattr(entry, "_import_training", None)  # run() imports the same way, then finds it done
timed("imports (scikit-learn, MLflow, ...)", prepare or (lambda: importlib.import_module("modelyard_training.train")))()
import requests
send = requests.Session.request
def counted(self, *args, **kwargs):
    requests_seen[0] += 1
    return send(self, *args, **kwargs)
requests.Session.request = counted
train = sys.modules["modelyard_training.train"]
for name in ["load_dataset", "fit", "evaluate", "confusion_matrix_figure", "_log_model", "register", "_finish"]:
    if hasattr(train, name):
        setattr(train, name, timed(name, getattr(train, name)))
import mlflow
for name in ["start_run", "log_params", "log_input", "log_metrics", "log_figure", "log_dict"]:
    setattr(mlflow, name, timed("mlflow." + name, getattr(mlflow, name)))
code, _ = timed("run() after imports", entry.run)(os.environ)
rows.append(["process total", time.perf_counter() - T0, time.process_time(), requests_seen[0]])
print("PHASES " + json.dumps({"code": code, "rows": rows}))
"""


def image_env(rootfs: bool) -> dict[str, str]:
    """The runtime stage's ENV from k8s/images/Dockerfile (its one home), adapted off-image."""
    text = (REPO / "k8s" / "images" / "Dockerfile").read_text()
    runtime = text[text.index("FROM ${PYTHON_IMAGE}\n") :].replace("\\\n", " ")
    line = next(row for row in runtime.splitlines() if row.startswith("ENV "))
    env = dict(pair.split("=", 1) for pair in line[4:].split())
    env["PATH"] = env["PATH"].replace("$PATH", "/usr/local/bin:/usr/bin:/bin")
    if not rootfs:  # the venv's python and a writable HOME/font cache instead of the image's
        env = {k: v for k, v in env.items() if k not in ("PATH", "PYTHONPATH", "HOME", "MPLCONFIGDIR")}
    return env


def checkout(ref: str | None, dest: Path) -> Path:
    """The training package of the working tree (ref None) or of a git ref, under dest."""
    dest.mkdir(parents=True)
    if ref is None:
        shutil.copytree(REPO / "training-image" / PACKAGE, dest / PACKAGE)
    else:
        tar = subprocess.run(
            ["git", "-C", str(REPO), "archive", ref, f"training-image/{PACKAGE}"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "x", "--strip-components=1", "-C", str(dest)], input=tar, check=True)
    return dest


class Runner:
    def __init__(self, args: argparse.Namespace, tracking_uri: str, work: Path) -> None:
        self.args, self.tracking_uri, self.work = args, tracking_uri, work
        spec = yaml.safe_load((REPO / args.example).read_text())["spec"]
        self.spec, self.name = spec, Path(args.example).stem
        self.rootfs: Path | None = args.rootfs
        if self.rootfs is not None:
            (self.rootfs / "tmp").chmod(0o1777)  # HOME for uid 10001, as the pod's emptyDir

    def install(self, label: str, ref: str | None) -> str:
        """Copy the package where the interpreter will find it, with bytecode as the image has."""
        base = self.rootfs / "tmp" / f"bench-training-{label}" if self.rootfs else self.work / label
        shutil.rmtree(base, ignore_errors=True)
        checkout(ref, base)
        (base / "bench_phases.py").write_text("import time\nT0 = time.perf_counter()\n" + PHASES)
        inside = f"/{base.relative_to(self.rootfs)}" if self.rootfs else str(base)
        self.python(["-m", "compileall", "-q", inside], {}, check=True)
        return inside

    def python(self, argv: list[str], env: dict[str, str], check: bool = False) -> subprocess.CompletedProcess[str]:
        if self.rootfs is None:
            return subprocess.run([PY, *argv], env={**os.environ, **env}, capture_output=True, text=True, check=check)
        chroot = shutil.which("chroot") or "/usr/sbin/chroot"  # looked up here: env is the image's
        command = [chroot, "--userspec=10001:10001", str(self.rootfs), "/opt/venv/bin/python", *argv]
        if not env:  # compileall: as root, like the image build
            command = [chroot, str(self.rootfs), "/opt/venv/bin/python", *argv]
        return subprocess.run(command, env=env or None, capture_output=True, text=True, check=check)

    def once(self, package_dir: str, phases: bool) -> tuple[float, float, str]:
        config = {
            "mode": "single",
            "spec": self.spec,
            "run": {"namespace": "bench", "name": self.name, "uid": str(uuid.uuid4())},
        }
        home = "/tmp" if self.rootfs else str(self.work)
        env = {
            **image_env(self.rootfs is not None),
            "PYTHONPATH": package_dir,
            "HOME": home,
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "MODELYARD_TRAINING_CONFIG": json.dumps(config),
            "MODELYARD_TERMINATION_LOG": f"{home}/termination-log",
        }
        if self.rootfs is None:
            env["MPLCONFIGDIR"] = str(self.work / "mplconfig")
        argv = [f"{package_dir}/bench_phases.py"] if phases else ["-m", PACKAGE]
        before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        done = self.python(argv, env)
        wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise RuntimeError(f"training exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, done.stdout


def summarise_phases(outputs: list[str]) -> list[str]:
    """Median wall/CPU/requests per phase over the runs of one variant."""
    runs = [json.loads(re.findall(r"^PHASES (.*)$", out, re.M)[-1])["rows"] for out in outputs]
    names = list(dict.fromkeys(row[0] for run in runs for row in run))
    lines = [f"  {'phase':40s} {'wall s':>7s} {'CPU s':>6s} {'requests':>8s}"]
    for name in names:
        rows = [row for run in runs for row in run if row[0] == name]
        wall, cpu, sent = (statistics.median(row[i] for row in rows) for i in (1, 2, 3))
        lines.append(f"  {name:40s} {wall:7.2f} {cpu:6.2f} {sent:8.0f}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--example", default="k8s/examples/trainingrun-basic.yaml")
    parser.add_argument("--compare", metavar="REF", help="also run the package at this git ref, interleaved")
    parser.add_argument("--rootfs", type=Path, help="an unpacked training image to chroot into (needs root)")
    parser.add_argument("--phases", action="store_true", help="time the steps inside the process")
    args = parser.parse_args()
    load = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} CPUs, {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} "
        f"GiB, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp, mlflow_server(Path(tmp)) as tracking_uri:
        runner = Runner(args, tracking_uri, Path(tmp))
        variants = {"working tree": runner.install("tree", None)}
        if args.compare:
            variants[args.compare] = runner.install("ref", args.compare)
        results: dict[str, list[tuple[float, float, str]]] = {label: [] for label in variants}
        for round_ in range(args.rounds):
            for label, package_dir in reversed(variants.items()):
                wall, cpu, out = runner.once(package_dir, args.phases)
                results[label].append((wall, cpu, out))
                print(f"round {round_ + 1}: {label:14s} wall {wall:6.2f} s  CPU {cpu:5.2f} s", flush=True)
        for label, rows in reversed(results.items()):
            walls, cpus = [r[0] for r in rows], [r[1] for r in rows]
            print(
                f"{label}: median wall {statistics.median(walls):.2f} s (min {min(walls):.2f}), "
                f"median CPU {statistics.median(cpus):.2f} s (min {min(cpus):.2f}), n={len(rows)}"
            )
            if args.phases:
                print("\n".join(summarise_phases([r[2] for r in rows])))
        if runner.rootfs is not None:
            for label in ("tree", "ref"):
                shutil.rmtree(runner.rootfs / "tmp" / f"bench-training-{label}", ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
