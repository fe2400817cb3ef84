"""The real ServiceMonitor and PrometheusRule CRDs, for tests on the local cluster.

They come from the prometheus-operator Go module: its zip ships
``example/prometheus-operator-crd/*.yaml``, so ``go mod download`` (through the Go module proxy,
or from an already-filled module cache when offline) is all that is needed. The two YAMLs are
copied to ``$MODELYARD_CACHE_DIR/prometheus-operator-<version>/`` (default
``~/.cache/modelyard``) and never into the repository.

    python k8s/local/prometheus_crds.py                 # print the cached CRD paths
    python k8s/local/prometheus_crds.py --apply --kubeconfig .cluster/kubeconfig
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

MODULE = "github.com/prometheus-operator/prometheus-operator"
# Pinned: the schemas tests validate against must not change under them.
VERSION = "v0.85.0"
CRD_DIR_IN_MODULE = "example/prometheus-operator-crd"
CRD_FILES = {
    "servicemonitors.monitoring.coreos.com": "monitoring.coreos.com_servicemonitors.yaml",
    "prometheusrules.monitoring.coreos.com": "monitoring.coreos.com_prometheusrules.yaml",
}


def cache_dir() -> Path:
    root = Path(os.environ.get("MODELYARD_CACHE_DIR", Path.home() / ".cache" / "modelyard"))
    return root / f"prometheus-operator-{VERSION}"


def crd_paths() -> list[Path]:
    """Paths of the cached CRD files, downloading the module first when they are missing."""
    override = os.environ.get("MODELYARD_PROMETHEUS_CRDS_DIR")
    if override:
        paths = [Path(override) / name for name in CRD_FILES.values()]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"MODELYARD_PROMETHEUS_CRDS_DIR lacks {', '.join(missing)}")
        return paths
    target = cache_dir()
    paths = [target / name for name in CRD_FILES.values()]
    if all(p.is_file() for p in paths):
        return paths
    source = download_module() / CRD_DIR_IN_MODULE
    target.mkdir(parents=True, exist_ok=True)
    for path in paths:
        # Copy then rename, so a concurrent test run never reads a half-written file.
        partial = path.with_suffix(".partial")
        shutil.copyfile(source / path.name, partial)
        partial.chmod(0o644)  # the module cache is read-only; the cache copy need not be
        partial.replace(path)
    return paths


def download_module() -> Path:
    """``go mod download`` the pinned module; returns its extracted directory."""
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("the Go toolchain is needed to fetch the prometheus-operator CRDs")
    # Run outside any module so that no go.mod/go.sum of the repository is touched.
    with tempfile.TemporaryDirectory(prefix="prometheus-crds-") as scratch:
        proc = subprocess.run(
            [go, "mod", "download", "-json", f"{MODULE}@{VERSION}"],
            cwd=scratch,
            env={**os.environ, "GO111MODULE": "on"},
            capture_output=True,
            text=True,
            check=False,
        )
    try:
        info = json.loads(proc.stdout)
    except json.JSONDecodeError:
        info = {}
    if proc.returncode != 0 or "Dir" not in info:
        detail = info.get("Error") or proc.stderr.strip() or f"exit code {proc.returncode}"
        raise RuntimeError(f"go mod download {MODULE}@{VERSION} failed: {detail}")
    return Path(info["Dir"])


def install(kubeconfig: Path, kubectl: str = "kubectl", timeout_s: int = 60) -> None:
    """Apply both CRDs (server-side: they exceed the client-side annotation limit) and wait
    until the apiserver serves them."""
    base = [kubectl, "--kubeconfig", str(kubeconfig)]
    for path in crd_paths():
        subprocess.run(
            [*base, "apply", "--server-side", "--force-conflicts", "-f", str(path)],
            check=True,
            capture_output=True,
            text=True,
        )
    subprocess.run(
        [
            *base,
            "wait",
            "--for=condition=Established",
            f"--timeout={timeout_s}s",
            *(f"crd/{name}" for name in CRD_FILES),
        ],
        check=True,
        capture_output=True,
        text=True,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apply", action="store_true", help="install the CRDs into a cluster")
    parser.add_argument("--kubeconfig", type=Path, help="kubeconfig of that cluster")
    parser.add_argument("--kubectl", default=os.environ.get("MODELYARD_KUBECTL", "kubectl"))
    args = parser.parse_args(argv)
    if args.apply:
        if args.kubeconfig is None:
            parser.error("--apply needs --kubeconfig")
        install(args.kubeconfig, args.kubectl)
    for path in crd_paths():
        print(path)


if __name__ == "__main__":
    main()
