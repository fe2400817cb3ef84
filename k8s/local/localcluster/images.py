"""Build modelyard's container images here, with no registry, and load them into the node.

* The base is Python 3.11 from Debian packages: ``mmdebstrap --variant=minbase`` makes a rootfs
  tarball (cached, keyed by the package list and the apt sources), ``buildah from scratch``
  turns it into ``localhost/modelyard-python:3.11``.
* Every image is built from the one parameterised ``k8s/images/Dockerfile`` on that base, with
  buildah ``--layers`` (or Docker where an engine runs, on ``python:3.11-slim``). Layers live in
  buildah's storage under the cache, so a code change rebuilds only the last layers.
* The pause image is catatonit (Debian), in pause mode.
* ``load`` exports each image and imports it into containerd's ``k8s.io`` namespace, skipping
  images whose id has not changed since the last import.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import binaries

REPO = Path(__file__).resolve().parents[3]
DOCKERFILE = REPO / "k8s" / "images" / "Dockerfile"
TAG = os.environ.get("MODELYARD_TAG", "0.1.0")
BASE_IMAGE = "localhost/modelyard-python:3.11"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
DEBIAN_SUITE = "bookworm"
BASE_PACKAGES = ["python3.11", "python3.11-venv", "python-is-python3", "passwd", "ca-certificates"]
APT_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")


@dataclass(frozen=True)
class Image:
    name: str
    component: str  # folder (relative to the repo) holding requirements.lock
    package: str  # python package run as the entrypoint; "" for the MLflow server
    ports: str
    slim: bool = False  # the Dockerfile's SLIM: bytecode-only third-party code, stripped extensions

    @property
    def ref(self) -> str:
        return f"modelyard-{self.name}:{TAG}"

    @property
    def cri_ref(self) -> str:
        """How the kubelet names ``modelyard-x:tag`` once normalised."""
        return f"docker.io/library/{self.ref}"


IMAGES = {
    "operator": Image("operator", "operator", "modelyard_operator", "8080 8081 9090"),
    "serving": Image("serving", "serving", "modelyard_serving", "8080", slim=True),
    "training": Image("training", "training-image", "modelyard_training", "8080"),
    "mlflow": Image("mlflow", "k8s/images/mlflow", "", "5000"),
}


def _log(msg: str) -> None:
    print(f"[images] {msg}", flush=True)


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, text=True, **kw)  # type: ignore[call-overload]


def docker_engine() -> bool:
    """True where a Docker engine answers (not just the client binary)."""
    if os.environ.get("MODELYARD_BUILDER", "") == "buildah" or not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def _storage_args() -> list[str]:
    root = binaries.cache_root() / "containers" / "storage"
    # one run root per storage root, so two caches (e.g. a cold CI check) never share locks
    runroot = f"/run/modelyard-buildah-{hashlib.sha256(str(root).encode()).hexdigest()[:8]}"
    return ["--root", str(root), "--runroot", runroot, "--storage-driver", "overlay"]


def buildah(*args: str, capture: bool = False) -> str:
    env = {**os.environ, "BUILDAH_ISOLATION": "chroot"}
    cmd = ["buildah", *_storage_args(), *args]
    out = subprocess.run(cmd, check=True, text=True, env=env, stdout=subprocess.PIPE if capture else None)
    return (out.stdout or "").strip()


def _image_id(ref: str) -> str | None:
    env = {**os.environ, "BUILDAH_ISOLATION": "chroot"}
    res = subprocess.run(["buildah", *_storage_args(), "inspect", "--type", "image", "--format", "{{.FromImageID}}",
                          ref], capture_output=True, text=True, env=env)
    return res.stdout.strip() if res.returncode == 0 else None


def _base_key() -> str:
    sources = APT_SOURCES.read_text() if APT_SOURCES.exists() else "default"
    return hashlib.sha256(json.dumps([DEBIAN_SUITE, BASE_PACKAGES, sources]).encode()).hexdigest()[:16]


def base_rootfs() -> Path:
    """The minbase rootfs with python3.11, made once per package list and cached."""
    tar = binaries.cache_root() / "base" / f"python3.11-{DEBIAN_SUITE}-{_base_key()}.tar"
    if tar.exists():
        return tar
    tar.parent.mkdir(parents=True, exist_ok=True)
    _log(f"mmdebstrap {DEBIAN_SUITE} minbase + {' '.join(BASE_PACKAGES)} (about 2-3 minutes, once) ...")
    start = time.monotonic()
    tmp = tar.with_suffix(".tmp.tar")
    mirror = [str(APT_SOURCES)] if APT_SOURCES.exists() else []
    _run(["mmdebstrap", "--variant=minbase", "--quiet", f"--include={','.join(BASE_PACKAGES)}",
          '--aptopt=Acquire::Retries "3"',
          # documentation, manuals and translations are never read inside a container
          "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
          "--dpkgopt=path-exclude=/usr/share/locale/*", DEBIAN_SUITE, str(tmp), *mirror])
    tmp.rename(tar)
    _log(f"base rootfs {tar.stat().st_size / 1e6:.0f} MB in {time.monotonic() - start:.0f}s")
    return tar


def ensure_base() -> str:
    rootfs = base_rootfs()
    label = f"modelyard.base-key={_base_key()}"
    current = buildah("images", "--filter", f"label={label}", "--format", "{{.Name}}:{{.Tag}}", capture=True)
    if BASE_IMAGE in current.split():
        return BASE_IMAGE
    ctr = buildah("from", "scratch", capture=True)
    try:
        buildah("add", ctr, str(rootfs), "/")
        buildah("config", "--env", "LANG=C.UTF-8", "--env", "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                "--label", label, "--cmd", "python3", ctr)
        buildah("commit", "--quiet", ctr, BASE_IMAGE)
    finally:
        subprocess.run(["buildah", *_storage_args(), "rm", ctr], capture_output=True)
    return BASE_IMAGE


def ensure_pause() -> str:
    """The sandbox image: Debian's static catatonit, in pause mode."""
    if _image_id(PAUSE_IMAGE):
        return PAUSE_IMAGE
    catatonit = shutil.which("catatonit") or "/usr/bin/catatonit"
    ctr = buildah("from", "scratch", capture=True)
    try:
        buildah("copy", ctr, catatonit, "/pause")
        buildah("config", "--entrypoint", '["/pause", "-P"]', "--user", "65535:65535", ctr)
        buildah("commit", "--quiet", ctr, PAUSE_IMAGE)
    finally:
        subprocess.run(["buildah", *_storage_args(), "rm", ctr], capture_output=True)
    return PAUSE_IMAGE


def _build_args(image: Image) -> list[str]:
    return ["--build-arg", f"COMPONENT={image.component}", "--build-arg", f"PACKAGE={image.package}",
            "--build-arg", f"PORTS={image.ports}", "--build-arg", f"SLIM={'1' if image.slim else ''}"]


def build(names: list[str] | None = None) -> dict[str, float]:
    """Build the images (all by default); returns seconds per image."""
    took: dict[str, float] = {}
    use_docker = docker_engine()
    base = None if use_docker else ensure_base()
    for name in names or list(IMAGES):
        image = IMAGES[name]
        start = time.monotonic()
        if use_docker:
            _run(["docker", "build", "-f", str(DOCKERFILE), *_build_args(image), "-t", image.ref, str(REPO)])
        else:
            _log(f"buildah bud {image.ref}")
            # The host's CA bundle lets pip inside the build trust this network's package proxy.
            buildah("bud", "--quiet", "--layers", "--build-arg", f"PYTHON_IMAGE={base}", *_build_args(image),
                    "-v", "/etc/ssl/certs:/etc/ssl/certs:ro", "-f", str(DOCKERFILE), "-t", image.ref, str(REPO))
        took[name] = time.monotonic() - start
        _log(f"{image.ref} ready in {took[name]:.0f}s")
    if not use_docker:
        ensure_pause()
    return took


def sizes() -> dict[str, str]:
    """Uncompressed image sizes, as the builder reports them."""
    out = {}
    for name, image in IMAGES.items():
        if docker_engine():
            res = subprocess.run(["docker", "image", "ls", "--format", "{{.Size}}", image.ref],
                                 capture_output=True, text=True)
            out[name] = res.stdout.strip()
        elif _image_id(image.ref):
            out[name] = buildah("images", "--format", "{{.Size}}", image.ref, capture=True)
    return out


def load(ctr_address: str, stamp_dir: Path, names: list[str] | None = None) -> None:
    """Import images into containerd's k8s.io namespace, unless this id was imported before."""
    stamp_dir.mkdir(parents=True, exist_ok=True)
    refs = {n: (IMAGES[n].ref, IMAGES[n].cri_ref) for n in names or list(IMAGES)}
    refs["pause"] = (PAUSE_IMAGE, PAUSE_IMAGE)
    for name, (ref, cri_ref) in refs.items():
        image_id = _image_id(ref)
        if image_id is None:
            _log(f"{ref} is not built (make images): pods using it cannot start")
            continue
        stamp = stamp_dir / name
        listed = subprocess.run(["ctr", "--address", ctr_address, "-n", "k8s.io", "images", "ls", "-q",
                                 f"name=={cri_ref}"], capture_output=True, text=True).stdout.split()
        if stamp.exists() and stamp.read_text() == image_id and cri_ref in listed:
            continue
        start = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="modelyard-image-") as tmp:
            archive = Path(tmp) / "image.tar"
            buildah("push", "--quiet", ref, f"docker-archive:{archive}:{cri_ref}")
            _run(["ctr", "--address", ctr_address, "-n", "k8s.io", "images", "import",
                  str(archive)], stdout=subprocess.DEVNULL)
        stamp.write_text(image_id)
        _log(f"{cri_ref} imported into containerd in {time.monotonic() - start:.0f}s")
