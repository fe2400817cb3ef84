"""The local cluster's MLflow tracking server, on one of two backends.

``MODELYARD_MLFLOW_BACKEND`` chooses:

- ``sqlite`` (default): a sqlite file and artifacts under ``<state>/mlflow``, run from the dev
  venv. Quick to start, enough for most tests.
- ``postgres-s3``: PostgreSQL for runs and the registry, artifacts in versitygw (S3), as in
  production (stores.py). This server runs from a venv made from the MLflow image's own lock
  (k8s/images/mlflow/requirements.lock), so it has exactly the image's drivers; boto3 cannot live
  in the dev venv, whose kubernetes client needs a python-dateutil that botocore refuses.

Both serve artifacts (``--serve-artifacts``): clients see ``mlflow-artifacts:`` URIs and never
hold store credentials. Either way MLflow answers at the same address, so switching backends
restarts MLflow alone (``switch_backend``) and leaves the cluster as it is.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from . import binaries, network, procs, stores

MLFLOW_PORT = procs.env_port("MLFLOW", 5000)
BACKENDS = ("sqlite", "postgres-s3")
IMAGE_LOCK = Path(__file__).resolve().parents[2] / "images" / "mlflow" / "requirements.lock"
ARTIFACTS_BUCKET = "mlflow"


def _log(msg: str) -> None:
    print(f"[mlflow] {msg}", flush=True)


def configured_backend() -> str:
    backend = os.environ.get("MODELYARD_MLFLOW_BACKEND", "sqlite") or "sqlite"
    if backend not in BACKENDS:
        raise ValueError(f"MODELYARD_MLFLOW_BACKEND={backend!r}: use one of {', '.join(BACKENDS)}")
    return backend


def running_backend(state: Path) -> str | None:
    """The backend of the MLflow that runs now (None when none runs)."""
    marker = state / "mlflow-backend"
    if not procs.running("mlflow", state) or not marker.exists():
        return None
    return marker.read_text().strip()


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return bool(resp.status == 200)


def _webhook_key(state: Path) -> str:
    key_file = state / "mlflow-webhook.key"
    if not key_file.exists():
        from cryptography.fernet import Fernet

        key_file.write_bytes(Fernet.generate_key())
    return key_file.read_text().strip()


def _common_env(state: Path) -> dict[str, str]:
    return {
        "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": _webhook_key(state),
        # The operator's receiver is plain http on the pod bridge (a private address),
        # which MLflow refuses by default; and webhook lists are cached for 60 s.
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        "MLFLOW_WEBHOOK_CACHE_TTL": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # The job runner (GenAI evaluation, trace roll-ups) is unused here and starts half a
        # dozen worker processes that each import MLflow: tens of CPU-seconds per start on two
        # cores. Webhooks are delivered by the server's own threads, not by jobs.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }


def start_mlflow(state: Path, wait: bool = True, backend: str | None = None) -> None:
    backend = backend or configured_backend()
    host = network.host_ip()
    if not procs.running("mlflow", state):
        if backend == "postgres-s3":
            argv, env = _postgres_s3(state)
        else:
            argv, env = _sqlite(state)
        argv += ["--serve-artifacts", "--host", host, "--port", str(MLFLOW_PORT), "--workers", "1"]
        procs.start("mlflow", argv, state, env={**_common_env(state), **env})
        (state / "mlflow-backend").write_text(backend)
    if wait:
        started = time.monotonic()
        deadline = started + 120
        log = state / "logs" / "mlflow.log"
        while time.monotonic() < deadline:
            try:
                if _http_ok(f"http://{host}:{MLFLOW_PORT}/health"):
                    _log(f"ready on {backend} (+{time.monotonic() - started:.1f}s)")
                    return
            except OSError:
                pass
            if not procs.running("mlflow", state):
                break
            time.sleep(0.2)
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise RuntimeError(f"MLflow ({backend}) did not become ready\n{tail}")


def stop_mlflow(state: Path) -> None:
    procs.stop("mlflow", state)


def stop_stores(state: Path) -> None:
    stores.stop_postgres(state)
    stores.stop_s3(state)


def switch_backend(state: Path, backend: str) -> None:
    """Restart MLflow alone on ``backend`` (the cluster keeps running)."""
    if running_backend(state) == backend:
        return
    _log(f"switching the backend to {backend}")
    stop_mlflow(state)
    if backend != "postgres-s3":
        stop_stores(state)
    start_mlflow(state, backend=backend)


def _sqlite(state: Path) -> tuple[list[str], dict[str, str]]:
    mlflow_dir = state / "mlflow"
    (mlflow_dir / "artifacts").mkdir(parents=True, exist_ok=True)
    db = mlflow_dir / "mlflow.db"
    if not db.exists():
        shutil.copyfile(_sqlite_template(), db)
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    return [str(mlflow_bin), "server", "--backend-store-uri", f"sqlite:///{db}",
            "--artifacts-destination", str(mlflow_dir / "artifacts")], {}


def _postgres_s3(state: Path) -> tuple[list[str], dict[str, str]]:
    stores.start_postgres(state)
    stores.start_s3(state)
    creds = stores.s3_credentials(state)
    env = {
        # Through the environment: argv (and so `ps`) never shows the database password.
        "MLFLOW_BACKEND_STORE_URI": stores.postgres_uri(state),
        "MLFLOW_S3_ENDPOINT_URL": creds.endpoint,
        "AWS_ACCESS_KEY_ID": creds.access_key_id,
        "AWS_SECRET_ACCESS_KEY": creds.secret_access_key,
        "AWS_DEFAULT_REGION": creds.region,
    }
    mlflow_bin = server_venv() / "bin" / "mlflow"
    return [str(mlflow_bin), "server", "--artifacts-destination", f"s3://{ARTIFACTS_BUCKET}/artifacts"], env


def server_venv() -> Path:
    """A venv holding exactly the MLflow image's lock, made once per lock and cached."""
    digest = hashlib.sha256(IMAGE_LOCK.read_bytes()).hexdigest()[:12]
    venv = binaries.cache_root() / f"mlflow-server-{digest}"
    # Scripts in a venv name its interpreter by absolute path, so it is built in place; the
    # marker tells a finished venv from one an interrupted run left behind.
    done = venv / ".complete"
    if done.exists():
        return venv
    started = time.monotonic()
    shutil.rmtree(venv, ignore_errors=True)
    _log(f"creating {venv} from {IMAGE_LOCK.name} (once per lock; a few minutes cold)")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                    "--require-hashes", "--no-deps", "--only-binary=:all:", "-r", str(IMAGE_LOCK)], check=True)
    done.write_text("")
    _log(f"{venv.name} ready ({time.monotonic() - started:.0f}s)")
    return venv


def _sqlite_template() -> Path:
    """An empty, fully migrated MLflow database, made once per MLflow version and cached.

    Creating the schema runs every alembic migration, which is most of a cold server start.
    """
    from importlib.metadata import version

    template = binaries.cache_root() / f"mlflow-{version('mlflow')}-empty.db"
    if not template.exists():
        template.parent.mkdir(parents=True, exist_ok=True)
        tmp = template.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        code = ("from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as S; "
                f"S('sqlite:///{tmp}', '/tmp/unused-artifacts')")
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        tmp.rename(template)
    return template
