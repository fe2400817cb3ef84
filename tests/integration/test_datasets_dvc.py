"""A TrainingRun reads a DVC-tracked dataset: the git repository over http from the host (dulwich's
smart-HTTP server), the data from the repository's DVC remote on S3 (the local versitygw), at a
pinned tag, with keys from a Secret. The MLflow run names the commit and the md5.

The dev venv has no dvc-s3 (see training-image/pyproject.toml), so the test pushes to a local
DVC remote and uploads that remote's files to the bucket with pyarrow; the training image reads
them back through dvc-s3, exactly as from a remote that `dvc push` filled.
"""

from __future__ import annotations

import hashlib
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from kubernetes import client

from tests.helpers import kubectl_apply, mlflow_client

from .test_trainingrun import model_name, tr_manifest, wait_phase

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class ServedRepo:
    url: str
    commit: str
    md5: str


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def _make_repo(root: Path, s3_store: Any, prefix: str) -> tuple[Path, str, str]:
    """git + DVC repository with data/iris.csv tagged v1; its default remote is s3://datasets/<prefix>."""
    from dvc.repo import Repo
    from pyarrow import fs
    from sklearn.datasets import load_iris

    repo, local = root / "repo", root / "local-remote"
    repo.mkdir(parents=True)
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "test@modelyard.io")
    _git(repo, "config", "user.name", "test")
    dvc = Repo.init(str(repo))
    with dvc.config.edit() as conf:
        conf["core"]["remote"] = "s3store"
        conf["remote"]["s3store"] = {"url": f"s3://datasets/{prefix}"}
    (repo / "data").mkdir()
    csv = repo / "data" / "iris.csv"
    load_iris(as_frame=True).frame.to_csv(csv, index=False)
    dvc.add(str(csv))
    dvc.close()
    # Fill the S3 remote as `dvc push` would: the content-addressed files under the prefix.
    _push_to_local(repo, local)
    s3 = fs.S3FileSystem(access_key=s3_store.access_key_id, secret_key=s3_store.secret_access_key,
                         region=s3_store.region, endpoint_override=s3_store.endpoint)
    for path in local.rglob("*"):
        if path.is_file():
            with s3.open_output_stream(f"datasets/{prefix}/{path.relative_to(local).as_posix()}") as out:
                out.write(path.read_bytes())
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "iris v1")
    _git(repo, "tag", "v1")
    return repo, _git(repo, "rev-parse", "HEAD"), hashlib.md5(csv.read_bytes()).hexdigest()


def _push_to_local(repo: Path, local: Path) -> None:
    from dvc.repo import Repo

    dvc = Repo(str(repo))
    with dvc.config.edit() as conf:
        conf["remote"]["local"] = {"url": str(local)}
    dvc.push(remote="local")
    with dvc.config.edit() as conf:
        del conf["remote"]["local"]
    dvc.close()


@pytest.fixture
def served_repo(cluster: Any, s3_store: Any, tmp_path: Path) -> Iterator[ServedRepo]:
    from dulwich.repo import Repo
    from dulwich.server import DictBackend
    from dulwich.web import make_wsgi_chain

    repo, commit, md5 = _make_repo(tmp_path, s3_store, f"dvc-{uuid.uuid4().hex[:6]}")
    app = make_wsgi_chain(DictBackend({"/": Repo(str(repo))}))
    # On the host address pods reach (the pod bridge), like MLflow and versitygw.
    server: WSGIServer = make_server(cluster.host_ip, 0, app, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    try:
        yield ServedRepo(f"http://{cluster.host_ip}:{server.server_port}/", commit, md5)
    finally:
        server.shutdown()
        server.server_close()


def test_training_reads_a_dvc_dataset_from_an_s3_remote(
    cluster: Any, namespace: str, s3_store: Any, served_repo: ServedRepo, secrets_allowed: Any
) -> None:
    client.CoreV1Api(cluster.api).create_namespaced_secret(namespace, {
        "metadata": {"name": "dvc-s3"},
        "stringData": {"AWS_ACCESS_KEY_ID": s3_store.access_key_id,
                       "AWS_SECRET_ACCESS_KEY": s3_store.secret_access_key, "AWS_REGION": s3_store.region}})
    model = model_name(namespace, "iris-dvc")
    dataset = {"dvc": {"repo": served_repo.url, "path": "data/iris.csv", "rev": "v1"}, "target": "target",
               "credentialsSecret": "dvc-s3", "endpoint": s3_store.endpoint}
    kubectl_apply(cluster, namespace, tr_manifest("iris-dvc", model, dataset=dataset))
    run = wait_phase(cluster, namespace, "iris-dvc")
    assert run["status"]["phase"] == "Succeeded", run["status"]

    mlflow_run = mlflow_client(cluster).get_run(run["status"]["runId"])
    assert mlflow_run.inputs is not None
    (dataset_input,) = mlflow_run.inputs.dataset_inputs
    tags = {t.key: t.value for t in dataset_input.tags}
    assert tags["dvc.rev"] == served_repo.commit and tags["dvc.revRequested"] == "v1"
    assert tags["md5"] == served_repo.md5 and tags["dvc.path"] == "data/iris.csv"
    assert served_repo.commit in dataset_input.dataset.source
