"""Find or obtain the control-plane binaries.

Lookup order (first hit wins, per binary):
1. a directory named by ``MODELYARD_K8S_BIN_DIR``;
2. the cache ``$MODELYARD_CACHE_DIR`` (default ``~/.cache/modelyard``) under ``k8s-<version>/``;
3. only when ``MODELYARD_DOWNLOAD=1``: the official release download (dl.k8s.io / the etcd
   GitHub release), kept only if it matches the SHA-256 published beside it;
4. a build from Go modules through the pinned wrapper module in ``k8s/local/gomod`` (go.sum
   verifies every module).
Only missing binaries are fetched or built. The add-ons (``gomod-addons``), helm (``gomod-helm``)
and versitygw (``gomod-s3``) have no release download here: the cache, else a build.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

K8S_VERSION = "1.35.4"
ETCD_VERSION = "3.6.5"  # the etcd that k8s.io/kubernetes v1.35.4 itself requires
HELM_VERSION = "3.22.0"
LOCAL_DIR = Path(__file__).resolve().parent.parent

# binary name -> Go package inside the wrapper module
K8S_PACKAGES = {
    "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
    "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
    "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
    "kubectl": "k8s.io/kubernetes/cmd/kubectl",
    "kubelet": "k8s.io/kubernetes/cmd/kubelet",
    "kube-proxy": "k8s.io/kubernetes/cmd/kube-proxy",
    "etcd": "go.etcd.io/etcd/server/v3",
}
HELM_PACKAGE = "helm.sh/helm/v3/cmd/helm"
# node add-ons, from their own wrapper module (k8s/local/gomod-addons) so their Kubernetes
# client versions never move the control plane's
COREDNS_VERSION = "1.15.0"
KWOK_VERSION = "0.8.0"
ADDON_PACKAGES = {
    "coredns": "modelyard.io/localaddons/coredns",
    "kwok": "sigs.k8s.io/kwok/cmd/kwok",
}
# The S3-compatible object store behind the production-like MLflow (postgres-s3), from its own
# wrapper module k8s/local/gomod-s3: its AWS SDK and HTTP stack would otherwise move the
# add-ons' shared dependencies (and with them the add-ons' cache key).
VERSITYGW_VERSION = "1.8.0"
VERSITYGW_PACKAGE = "github.com/versity/versitygw/cmd/versitygw"


@dataclass
class Obtained:
    name: str
    path: Path
    how: str
    seconds: float

    @property
    def size_mb(self) -> float:
        return self.path.stat().st_size / 1e6


def cache_root() -> Path:
    return Path(os.environ.get("MODELYARD_CACHE_DIR", Path.home() / ".cache" / "modelyard"))


def k8s_cache_dir() -> Path:
    return cache_root() / f"k8s-v{K8S_VERSION}"


def helm_cache_dir() -> Path:
    return cache_root() / f"helm-v{HELM_VERSION}"


def _module_digest(module: Path) -> str:
    return hashlib.sha256(b"".join(f.read_bytes() for f in sorted(module.rglob("*")) if f.is_file())).hexdigest()[:12]


def addons_cache_dir() -> Path:
    # keyed by the wrapper module's content too: CoreDNS's plugin set lives in its main.go
    digest = _module_digest(LOCAL_DIR / "gomod-addons")
    return cache_root() / f"addons-coredns-v{COREDNS_VERSION}-kwok-v{KWOK_VERSION}-{digest}"


def s3_cache_dir() -> Path:
    return cache_root() / f"versitygw-v{VERSITYGW_VERSION}-{_module_digest(LOCAL_DIR / 'gomod-s3')}"


def _log(msg: str) -> None:
    print(f"[binaries] {msg}", flush=True)


def _from_env_dir(name: str) -> Path | None:
    env_dir = os.environ.get("MODELYARD_K8S_BIN_DIR")
    if env_dir and (Path(env_dir) / name).is_file():
        return Path(env_dir) / name
    return None


K8S_RELEASES = "https://dl.k8s.io/release"
ETCD_RELEASES = "https://github.com/etcd-io/etcd/releases/download"
DOWNLOAD_ENV = "MODELYARD_DOWNLOAD"


class ChecksumMismatch(Exception):
    pass


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return bytes(resp.read())


def _verified(data: bytes, sums: str, filename: str) -> bytes:
    """``data`` if its SHA-256 is the one ``sums`` gives for ``filename``.

    ``sums`` is either a bare digest (dl.k8s.io's ``<binary>.sha256``) or ``sha256sum`` output
    (etcd's ``SHA256SUMS``).
    """
    lines = [line.split() for line in sums.splitlines() if line.strip()]
    if len(lines) == 1 and len(lines[0]) == 1:
        expected = lines[0][0]
    else:
        named = [fields[0] for fields in lines if len(fields) == 2 and fields[1].lstrip("*") == filename]
        if not named:
            raise ChecksumMismatch(f"{filename}: no published SHA-256")
        expected = named[0]
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected.lower():
        raise ChecksumMismatch(f"{filename}: SHA-256 {actual}, published {expected}")
    return data


def _download(name: str, dest: Path) -> bool:
    """The official release, when asked for (``MODELYARD_DOWNLOAD=1``) and only if its checksum
    matches; anything else falls through to the Go build. Off by default, so a machine without
    internet access (or a CI runner) never reaches outside for it."""
    if os.environ.get(DOWNLOAD_ENV) != "1":
        return False
    arch = "amd64" if os.uname().machine in ("x86_64", "amd64") else "arm64"
    try:
        if name == "etcd":
            archive = f"etcd-v{ETCD_VERSION}-linux-{arch}.tar.gz"
            base = f"{ETCD_RELEASES}/v{ETCD_VERSION}"
            data = _verified(_fetch(f"{base}/{archive}"), _fetch(f"{base}/SHA256SUMS").decode(), archive)
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                extracted = tar.extractfile(f"etcd-v{ETCD_VERSION}-linux-{arch}/etcd")
                assert extracted is not None
                dest.write_bytes(extracted.read())
        else:
            url = f"{K8S_RELEASES}/v{K8S_VERSION}/bin/linux/{arch}/{name}"
            dest.write_bytes(_verified(_fetch(url), _fetch(f"{url}.sha256").decode(), name))
    except ChecksumMismatch as exc:
        _log(f"{exc}; not used, building from Go modules")
        dest.unlink(missing_ok=True)
        return False
    except Exception as exc:  # noqa: BLE001 - any failure means "not available online"
        _log(f"{name}: release download unavailable ({type(exc).__name__}); building from Go modules")
        dest.unlink(missing_ok=True)
        return False
    dest.chmod(0o755)
    return True


def _version_ldflags() -> str:
    """Stamp the release version, as the official build does; clients (helm, kubectl) read it."""
    major, minor, _ = K8S_VERSION.split(".")
    values = {"gitVersion": f"v{K8S_VERSION}", "gitMajor": major, "gitMinor": minor,
              "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z"}
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {pkg}.{key}={value}" for key, value in values.items()]
    return " ".join(flags)


def _helm_ldflags() -> str:
    """Helm's own version, and the Kubernetes version it assumes when no cluster is asked."""
    major, minor, _ = K8S_VERSION.split(".")
    flags = [f"-X helm.sh/helm/v3/internal/version.version=v{HELM_VERSION}"]
    for pkg in ("helm.sh/helm/v3/pkg/chartutil", "helm.sh/helm/v3/pkg/lint/rules"):
        flags += [f"-X {pkg}.k8sVersionMajor={major}", f"-X {pkg}.k8sVersionMinor={minor}"]
    return " ".join(flags)


def _versitygw_ldflags() -> str:
    """The release tag, as versitygw's own Makefile stamps it (`versitygw --version`)."""
    return f"-X main.Version=v{VERSITYGW_VERSION}"


def _go_build(module_dir: Path, packages: dict[str, str], out_dir: Path) -> None:
    """One `go build` for all missing packages, so shared dependencies compile once."""
    if not shutil.which("go"):
        raise RuntimeError("Go toolchain not found: install Go >= 1.25 to build the binaries")
    tmp = out_dir / ".build"
    tmp.mkdir(parents=True, exist_ok=True)
    if HELM_PACKAGE in packages.values():
        stamp = _helm_ldflags()
    elif VERSITYGW_PACKAGE in packages.values():
        stamp = _versitygw_ldflags()
    else:
        stamp = _version_ldflags()
    cmd = ["go", "build", "-trimpath", f"-ldflags=-s -w {stamp}", "-o", str(tmp) + "/",
           *packages.values()]
    _log(f"go build {' '.join(packages)} (cold builds take several minutes) ...")
    env = {**os.environ, "CGO_ENABLED": "0"}
    subprocess.run(cmd, cwd=module_dir, env=env, check=True)
    for name, pkg in packages.items():
        # go names the binary after the last path element, skipping a major-version suffix (/v3)
        parts = pkg.rstrip("/").split("/")
        built_name = parts[-2] if re.fullmatch(r"v\d+", parts[-1]) else parts[-1]
        (tmp / built_name).rename(out_dir / name)
    shutil.rmtree(tmp, ignore_errors=True)


def _ensure(names: dict[str, str], cache: Path, module_dir: Path, downloadable: bool) -> dict[str, Obtained]:
    cache.mkdir(parents=True, exist_ok=True)
    found: dict[str, Obtained] = {}
    missing: dict[str, str] = {}
    for name, pkg in names.items():
        start = time.monotonic()
        if (path := _from_env_dir(name)) is not None:
            found[name] = Obtained(name, path, "env dir", 0.0)
        elif (cache / name).is_file():
            found[name] = Obtained(name, cache / name, "cache", 0.0)
        elif downloadable and _download(name, cache / name):
            found[name] = Obtained(name, cache / name, "download", time.monotonic() - start)
        else:
            missing[name] = pkg
    if missing:
        start = time.monotonic()
        _go_build(module_dir, missing, cache)
        took = time.monotonic() - start
        for name in missing:
            found[name] = Obtained(name, cache / name, "go build", took)
    return found


def ensure_k8s() -> dict[str, Path]:
    found = _ensure(K8S_PACKAGES, k8s_cache_dir(), LOCAL_DIR / "gomod", downloadable=True)
    _summary(found)
    return {name: o.path for name, o in found.items()}


def ensure_helm() -> Path:
    if env := os.environ.get("MODELYARD_HELM"):
        return Path(env)
    found = _ensure({"helm": HELM_PACKAGE}, helm_cache_dir(), LOCAL_DIR / "gomod-helm", downloadable=False)
    _summary(found)
    return found["helm"].path


def ensure_addons() -> dict[str, Path]:
    found = _ensure(ADDON_PACKAGES, addons_cache_dir(), LOCAL_DIR / "gomod-addons", downloadable=False)
    _summary(found)
    return {name: o.path for name, o in found.items()}


def ensure_s3() -> Path:
    """versitygw, the S3-compatible server of the postgres-s3 MLflow backend."""
    found = _ensure({"versitygw": VERSITYGW_PACKAGE}, s3_cache_dir(), LOCAL_DIR / "gomod-s3", downloadable=False)
    _summary(found)
    return found["versitygw"].path


def _summary(found: dict[str, Obtained]) -> None:
    for o in found.values():
        extra = f", {o.seconds:.0f}s" if o.seconds else ""
        _log(f"{o.name:<24} {o.size_mb:7.1f} MB  ({o.how}{extra})  {o.path}")


def main() -> None:
    ensure_k8s()
    ensure_addons()
    ensure_helm()
    ensure_s3()


if __name__ == "__main__":
    main()
