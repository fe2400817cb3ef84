"""The postgres-s3 MLflow backend on its own: PostgreSQL, versitygw and `mlflow server` started by
the harness's CLI on loopback (no cluster), then a model logged, registered and loaded back
through the served-artifacts path; the stores' outages heal without restarting MLflow.

Everything binds 127.0.0.1 on free ports, in a state directory of the test's own, so this runs
beside a running cluster without touching it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import free_port, version_artifact_location, wait_for

# A hung download must fail the test, not wait for the suite-wide 900 s.
pytestmark = [pytest.mark.stores, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Stores:
    """A standalone postgres-s3 MLflow: its URI, the S3 endpoint and keys, the harness env."""

    mlflow_uri: str
    s3_endpoint: str
    s3_key: str
    s3_secret: str
    state: Path
    env: dict[str, str]
    timings: dict[str, float]

    def cli(self, *args: str) -> float:
        """Run `python -m localcluster ARGS` against this state; returns the seconds it took."""
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "localcluster", *args], env=self.env, capture_output=True,
                              text=True, timeout=600, check=False)
        assert proc.returncode == 0, f"localcluster {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
        return time.monotonic() - started

    def s3(self) -> Any:
        """A pyarrow S3 filesystem on the store (pyarrow is in the dev venv and the training image)."""
        from pyarrow import fs

        return fs.S3FileSystem(access_key=self.s3_key, secret_key=self.s3_secret, region="us-east-1",
                               endpoint_override=self.s3_endpoint)


@pytest.fixture(scope="module")
def stores() -> Iterator[Stores]:
    # Not pytest's tmp_path: that lies under a 0700 directory, and PostgreSQL runs as its own
    # account, which must reach its data directory.
    state = Path(tempfile.mkdtemp(prefix="modelyard-stores-"))
    state.chmod(0o755)
    ports = {name: free_port() for name in ("MLFLOW", "POSTGRES", "S3")}
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "k8s" / "local"), os.environ.get("PYTHONPATH", "")]),
        "MODELYARD_CLUSTER_DIR": str(state),
        "MODELYARD_MLFLOW_BACKEND": "postgres-s3",
        "MODELYARD_HOST_IP": "127.0.0.1",
        **{f"MODELYARD_{name}_PORT": str(port) for name, port in ports.items()},
    }
    keys = state / "s3" / "credentials.json"
    s = Stores(f"http://127.0.0.1:{ports['MLFLOW']}", f"http://127.0.0.1:{ports['S3']}", "", "", state, env, {})
    try:
        s.timings["postgres+s3+mlflow start (cold state)"] = s.cli("mlflow-start")
        stored = json.loads(keys.read_text())
        s.s3_key, s.s3_secret = stored["accessKeyId"], stored["secretAccessKey"]
        yield s
    finally:
        for command in ("mlflow-stop", "postgres-stop", "s3-stop"):
            subprocess.run([sys.executable, "-m", "localcluster", command], env=env, check=False, timeout=60)
        shutil.rmtree(state, ignore_errors=True)
        print(f"\nstore timings: {json.dumps({k: round(v, 1) for k, v in s.timings.items()})}")


def _log_iris(uri: str, model: str) -> tuple[Any, Any]:
    import mlflow
    import mlflow.sklearn
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    estimator = LogisticRegression(max_iter=500).fit(x, y)
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run():
        mlflow.sklearn.log_model(estimator, name="model", registered_model_name=model,
                                 serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE)
    return estimator, x


def test_models_round_trip_through_served_artifacts(stores: Stores) -> None:
    import mlflow
    import mlflow.sklearn

    estimator, x = _log_iris(stores.mlflow_uri, "iris-pg")
    client = mlflow.MlflowClient(stores.mlflow_uri)
    # Clients see only the server's artifact proxy: no s3:// URI, so no store credentials needed.
    location = version_artifact_location(client, "iris-pg", "1")
    assert location.startswith("mlflow-artifacts:/"), location
    # The bytes live in the S3 bucket, and sqlite was never used.
    bucket = stores.state / "s3" / "root" / "mlflow" / "artifacts"
    assert list(bucket.rglob("MLmodel")), "no MLmodel in the S3 bucket"
    assert not (stores.state / "mlflow" / "mlflow.db").exists()
    loaded = mlflow.sklearn.load_model("models:/iris-pg/1")
    assert (loaded.predict(x) == estimator.predict(x)).all()


def test_store_outages_heal_without_restarting_mlflow(stores: Stores, monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    import mlflow
    import mlflow.sklearn
    from mlflow.exceptions import MlflowException

    _log_iris(stores.mlflow_uri, "iris-outage")
    client = mlflow.MlflowClient(stores.mlflow_uri)
    mlflow_pid = (stores.state / "pids" / "mlflow").read_text()
    # The client retries 5xx replies for minutes by default; an outage should show at once.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")

    stores.timings["postgres stop"] = stores.cli("postgres-stop")
    with pytest.raises(MlflowException):
        client.get_registered_model("iris-outage")
    stores.timings["postgres start (warm)"] = stores.cli("postgres-start")
    wait_for(lambda: client.get_registered_model("iris-outage"), 60, 0.5, "the registry after postgres returned")

    stores.cli("s3-stop")
    with pytest.raises(Exception):  # noqa: B017 - whatever the download path raises, it must fail
        mlflow.sklearn.load_model("models:/iris-outage/1", dst_path=str(tmp_path))
    stores.timings["s3 start (warm)"] = stores.cli("s3-start")
    wait_for(lambda: mlflow.sklearn.load_model("models:/iris-outage/1"), 60, 1, "artifacts after versitygw returned")
    assert (stores.state / "pids" / "mlflow").read_text() == mlflow_pid, "MLflow was restarted"


def test_mlflow_restart_on_a_migrated_database(stores: Stores) -> None:
    """A warm start (schema already there) is what the outage tests and `switch_backend` pay."""
    import mlflow

    stores.cli("mlflow-stop")
    stores.timings["mlflow start (warm, migrated db)"] = stores.cli("mlflow-start")
    assert mlflow.MlflowClient(stores.mlflow_uri).get_registered_model("iris-pg").name == "iris-pg"
