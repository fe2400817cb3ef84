"""The production-like MLflow's stores, as host processes: Debian's PostgreSQL and versitygw.

PostgreSQL keeps its data under ``<state>/postgres`` and listens on loopback, for MLflow on the
host, and on the host address pods reach, for an MLflow that the chart runs in a pod (its own
database, ``create_database``). versitygw serves ``<state>/s3/root`` (each directory there is a
bucket) on the host address too, so a training pod can read ``s3://`` datasets from it.
Credentials are generated once per cluster state and kept beside the data.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from . import binaries, network, procs

POSTGRES_PORT = procs.env_port("POSTGRES", 15432)
S3_PORT = procs.env_port("S3", 7070)
PG_DATABASE = "mlflow"
PG_USER = "mlflow"
# PostgreSQL refuses to run as root; Debian's package creates this account.
PG_ACCOUNT = os.environ.get("MODELYARD_POSTGRES_USER", "postgres")
S3_REGION = "us-east-1"
# Buckets that exist from the start: MLflow's artifacts, and datasets for training tests.
BUCKETS = ("mlflow", "datasets")


@dataclass(frozen=True)
class S3Credentials:
    endpoint: str
    access_key_id: str
    secret_access_key: str
    region: str = S3_REGION

    def env(self) -> dict[str, str]:
        """The standard AWS variables (boto3, pyarrow and DVC all read them)."""
        return {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
                "AWS_DEFAULT_REGION": self.region, "AWS_REGION": self.region, "AWS_ENDPOINT_URL": self.endpoint}


def _log(msg: str) -> None:
    print(f"[stores] {msg}", flush=True)


def _secret(path: Path) -> str:
    """A random secret kept in ``path`` (created on first use, readable by root only)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def _wait(what: str, check: object, timeout: float, log: Path) -> None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        with contextlib.suppress(Exception):
            if check():  # type: ignore[operator]
                _log(f"{what} ready (+{time.monotonic() - start:.1f}s)")
                return
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    raise RuntimeError(f"{what} did not become ready within {timeout:.0f}s\n{tail}")


# -- PostgreSQL -------------------------------------------------------------------------------

def postgres_bin_dir() -> Path:
    """``$MODELYARD_POSTGRES_BIN_DIR``, else the newest Debian server (/usr/lib/postgresql/N/bin)."""
    if env := os.environ.get("MODELYARD_POSTGRES_BIN_DIR"):
        return Path(env)
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise RuntimeError("PostgreSQL not found: `make host-deps` installs Debian's postgresql package")
    return found[-1].parent


def _pg_account() -> str | None:
    """The account PostgreSQL runs as: PG_ACCOUNT when we are root, else ourselves."""
    return PG_ACCOUNT if os.geteuid() == 0 else None


def postgres_uri(state: Path, database: str = PG_DATABASE, host: str = "127.0.0.1") -> str:
    password = _secret(state / "postgres" / "password")
    return f"postgresql://{PG_USER}:{password}@{host}:{POSTGRES_PORT}/{database}"


def create_database(state: Path, name: str) -> str:
    """Create database ``name`` (if new); its URI as pods reach it."""
    env = {**os.environ, "PGPASSWORD": _secret(state / "postgres" / "password")}
    made = subprocess.run([str(postgres_bin_dir() / "createdb"), "-h", "127.0.0.1", "-p", str(POSTGRES_PORT),
                           "-U", PG_USER, name], env=env, capture_output=True, text=True, check=False)
    if made.returncode != 0 and "already exists" not in made.stderr:
        raise RuntimeError(f"createdb {name} failed: {made.stderr}")
    return postgres_uri(state, name, network.host_ip())


def _pg_ready(bin_dir: Path) -> bool:
    probe = [str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(POSTGRES_PORT)]
    return subprocess.run(probe, check=False).returncode == 0


def _initdb(state: Path, bin_dir: Path) -> None:
    root, data = state / "postgres", state / "postgres" / "data"
    account = _pg_account()
    password = _secret(root / "password")
    pwfile = root / "initdb.pw"
    pwfile.write_text(password)
    data.mkdir(parents=True, exist_ok=True)
    data.chmod(0o700)
    if account is not None:
        for path in (root, data, pwfile):
            shutil.chown(path, account)
    try:
        subprocess.run([str(bin_dir / "initdb"), "-D", str(data), "-U", PG_USER, f"--pwfile={pwfile}",
                        "--auth=scram-sha-256", "-E", "UTF8", "--no-sync", "--no-instructions"],
                       check=True, capture_output=True, user=account, cwd=root)
    finally:
        pwfile.unlink(missing_ok=True)
    # initdb admits loopback only; an MLflow pod connects from the pod network.
    with (data / "pg_hba.conf").open("a") as hba:
        hba.write(f"host all all {network.POD_CIDR} scram-sha-256\n")


def start_postgres(state: Path) -> None:
    bin_dir = postgres_bin_dir()
    data = state / "postgres" / "data"
    fresh = not (data / "PG_VERSION").exists()
    if fresh:
        started = time.monotonic()
        _initdb(state, bin_dir)
        _log(f"postgres: initdb {data} ({time.monotonic() - started:.1f}s)")
    if not procs.running("postgres", state):
        listen = ",".join(dict.fromkeys(["127.0.0.1", network.host_ip()]))
        procs.start("postgres", [
            str(bin_dir / "postgres"), "-D", str(data), "-p", str(POSTGRES_PORT),
            "-c", f"listen_addresses={listen}",
            "-c", "unix_socket_directories=",  # TCP only: no socket directory to own or clean up
            # Test data: durability is not wanted, speed is.
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
        ], state, user=_pg_account())
    _wait("postgres", lambda: _pg_ready(bin_dir), 60, state / "logs" / "postgres.log")
    marker = state / "postgres" / "database-created"
    if not marker.exists():
        create_database(state, PG_DATABASE)
        marker.write_text("")


def stop_postgres(state: Path) -> None:
    # SIGINT is PostgreSQL's "fast" shutdown: SIGTERM would wait for MLflow's pooled
    # connections to close, which they never do on their own.
    procs.stop("postgres", state, sig=signal.SIGINT)


# -- versitygw (S3) ---------------------------------------------------------------------------

def s3_credentials(state: Path) -> S3Credentials:
    path = state / "s3" / "credentials.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"accessKeyId": "modelyard", "secretAccessKey": secrets.token_urlsafe(24)}))
        path.chmod(0o600)
    stored = json.loads(path.read_text())
    return S3Credentials(f"http://{network.host_ip()}:{S3_PORT}", stored["accessKeyId"], stored["secretAccessKey"])


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return bool(resp.status == 200)


def start_s3(state: Path) -> None:
    creds = s3_credentials(state)
    root = state / "s3" / "root"
    for bucket in BUCKETS:  # the posix backend's buckets are the root's directories
        (root / bucket).mkdir(parents=True, exist_ok=True)
    if not procs.running("s3", state):
        procs.start("s3", [
            str(binaries.ensure_s3()), "--port", f"{network.host_ip()}:{S3_PORT}", "--health", "/health",
            "--region", creds.region, "--quiet", "posix", str(root),
        ], state, env={
            # the root account's keys go through the environment, not argv (visible in ps)
            "ROOT_ACCESS_KEY_ID": creds.access_key_id, "ROOT_SECRET_ACCESS_KEY": creds.secret_access_key,
        })
    _wait("s3 (versitygw)", lambda: _http_ok(f"{creds.endpoint}/health"), 30, state / "logs" / "s3.log")


def stop_s3(state: Path) -> None:
    procs.stop("s3", state)
