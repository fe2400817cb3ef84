"""The image contents, without Docker: each lock installed the way its Dockerfile does it.

A scratch venv gets `pip install --require-hashes --no-deps --only-binary=:all: -r
requirements.lock`, the same pruning as the Dockerfile, and the package on PYTHONPATH. Then the
operator imports all of its modules, and the model server loads and serves a real model. This
catches a dependency the dev venv happens to have but the image lacks.

Needs PyPI (the same registry the image build uses). The venvs are cached per lock hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def cache_root() -> Path:
    return Path(os.environ.get("MODELYARD_CACHE_DIR", Path.home() / ".cache" / "modelyard"))


def image_venv(component: str) -> Path:
    """A venv holding exactly what the component's image holds; returns its python.

    Cached outside the repo per lock-file hash: the same lock installs the same bytes, so a
    rebuild is only needed when the lock changes.
    """
    lock = REPO / component / "requirements.lock"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()[:16]
    venv = cache_root() / "image-venvs" / f"{component}-py{sys.version_info.major}{sys.version_info.minor}-{digest}"
    python = venv / "bin" / "python"
    if (venv / ".complete").is_file():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    proc = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--require-hashes", "--no-deps", "--only-binary=:all:", "-r", str(lock)],
        capture_output=True, text=True, check=False, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, f"{component}: the locked wheels do not install:\n{proc.stderr[-3000:]}"
    check = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True, check=False)
    assert check.returncode == 0, f"{component}: requirements.lock is not self-consistent:\n{check.stdout}"
    site = next((venv / "lib").glob("python3*/site-packages"))
    # The same pruning as the Dockerfiles.
    shutil.rmtree(site / "kubernetes" / "aio", ignore_errors=True)
    for package in ("numpy", "scipy", "sklearn"):
        for tests in sorted((site / package).rglob("tests"), reverse=True):
            shutil.rmtree(tests, ignore_errors=True)
    (venv / ".complete").touch()
    return python


def image_env(component: str) -> dict[str, str]:
    """Only what the image sets: the package on PYTHONPATH, HOME=/tmp, nothing from the dev venv."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "TMPDIR")}
    return {**keep, "PYTHONPATH": str(REPO / component), "HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1"}


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("images")


def test_operator_image_imports_every_module(image_root: Path) -> None:
    python = image_venv("operator")
    code = (
        "import importlib, pkgutil, modelyard_operator as p\n"
        "for m in pkgutil.walk_packages(p.__path__, f'{p.__name__}.'): importlib.import_module(m.name)\n"
        "import modelyard_operator.__main__\n"
    )
    proc = subprocess.run(
        [str(python), "-c", code], env=image_env("operator"), capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_serving_image_loads_and_serves_a_model(image_root: Path) -> None:
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    frame, target = load_iris(return_X_y=True, as_frame=True)
    estimator = LogisticRegression(max_iter=500).fit(frame.to_numpy(), target)
    model_dir = image_root / "model"
    mlflow.sklearn.save_model(
        estimator, str(model_dir), signature=infer_signature(frame, estimator.predict(frame.to_numpy()))
    )

    python = image_venv("serving")
    port = free_port()
    env = {
        **image_env("serving"),
        "MODELYARD_MODEL_URI": str(model_dir),
        "MODELYARD_MODEL_NAME": "iris",
        "MODELYARD_MODEL_VERSION": "1",
        "MODELYARD_HOST": "127.0.0.1",
        "MODELYARD_PORT": str(port),
        "MODELYARD_LOAD_RETRY_MAX_SECONDS": "0",
    }
    log = image_root / "serving.log"
    with log.open("wb") as out:
        server = subprocess.Popen([str(python), "-m", "modelyard_serving"], env=env, stdout=out, stderr=out)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        ready: dict[str, object] = {}
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=2) as response:
                    ready = json.loads(response.read())
                    break
            except urllib.error.HTTPError as error:
                ready = json.loads(error.read())
                if ready.get("status") == "failed":
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert ready.get("status") == "ready", f"the image cannot load a model: {ready}\n{log.read_text()[-2000:]}"
        request = urllib.request.Request(
            f"{base}/predict",
            data=json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read())
        assert answer["modelVersion"] == "1" and answer["predictions"] == [0]
    finally:
        server.terminate()
        server.wait(timeout=20)
