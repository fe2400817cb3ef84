"""Datasets tracked by DVC: a real git repository and a local DVC remote made by the test, read at
a pinned revision through DVC's Python API, with the commit and md5 in the run's lineage."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from modelyard_training.config import DatasetSpec
from modelyard_training.datasets import load_dataset
from modelyard_training.errors import DatasetUnavailable

from .conftest import Store, unique
from .test_training import configure, train


@dataclass(frozen=True)
class DvcRepo:
    path: Path
    remote: Path
    commits: dict[str, str]  # tag -> commit sha
    md5: dict[str, str]  # tag -> md5 of that revision's iris.csv


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def _frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"f1": rng.normal(size=rows), "f2": rng.normal(size=rows)})
    frame["label"] = (frame["f1"] > 0).astype(int)
    return frame


@pytest.fixture(scope="module", autouse=True)
def _site_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """DVC's per-machine cache (/var/tmp/dvc by default) in a temp dir, as the image puts it under /tmp."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DVC_SITE_CACHE_DIR", str(tmp_path_factory.mktemp("dvc-site-cache")))
        yield


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DvcRepo]:
    """Two tagged revisions of data/iris.csv (40 rows, then 60), pushed to a local remote; the
    work tree and DVC cache are emptied, so reading must go through the remote."""
    from dvc.repo import Repo

    root = tmp_path_factory.mktemp("dvc")
    repo, remote = root / "repo", root / "remote"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "test@modelyard.io")
    _git(repo, "config", "user.name", "test")
    dvc = Repo.init(str(repo))
    with dvc.config.edit() as conf:
        conf["core"]["remote"] = "store"
        conf["remote"]["store"] = {"url": str(remote)}
    (repo / "data").mkdir()
    commits, md5 = {}, {}
    for tag, rows in (("v1", 40), ("v2", 60)):
        csv = repo / "data" / "iris.csv"
        _frame(rows, seed=rows).to_csv(csv, index=False)
        md5[tag] = hashlib.md5(csv.read_bytes()).hexdigest()
        dvc.add(str(csv))
        dvc.push()
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", f"data {tag}")
        _git(repo, "tag", tag)
        commits[tag] = _git(repo, "rev-parse", "HEAD")
    dvc.close()
    subprocess.run(["rm", "-rf", str(repo / ".dvc" / "cache"), str(repo / "data" / "iris.csv")], check=True)
    yield DvcRepo(repo, remote, commits, md5)


def spec(repo: DvcRepo, rev: str, **dvc: Any) -> DatasetSpec:
    return DatasetSpec.model_validate({"dvc": {"repo": str(repo.path), "path": "data/iris.csv", "rev": rev, **dvc},
                                       "target": "label"})


@pytest.mark.parametrize(("rev", "rows"), [("v1", 40), ("v2", 60)])
def test_the_pinned_revision_is_read_from_the_remote(dvc_repo: DvcRepo, rev: str, rows: int) -> None:
    data = load_dataset(spec(dvc_repo, rev), "classification")
    assert len(data.frame) == rows and data.features == ["f1", "f2"]
    assert data.lineage == {
        "md5": dvc_repo.md5[rev], "dvc.repo": str(dvc_repo.path), "dvc.path": "data/iris.csv",
        "dvc.rev": dvc_repo.commits[rev], "dvc.revRequested": rev,
    }
    assert data.source == f"{dvc_repo.path}@{dvc_repo.commits[rev]}:data/iris.csv"
    assert data.name == "iris"


def test_a_commit_sha_and_a_named_remote_work_too(dvc_repo: DvcRepo) -> None:
    data = load_dataset(spec(dvc_repo, dvc_repo.commits["v1"], remote="store"), "classification")
    assert data.lineage["dvc.rev"] == dvc_repo.commits["v1"] and data.lineage["dvc.remote"] == "store"


@pytest.mark.parametrize(("fields", "expected"), [
    ({"rev": "v9"}, "spec.dataset.dvc: data/iris.csv in"),
    ({"rev": "v1", "path": "data/missing.csv"}, "no such file"),
    ({"rev": "v1", "remote": "nowhere"}, "spec.dataset.dvc"),
])
def test_unreadable_dvc_data_is_dataset_unavailable(dvc_repo: DvcRepo, fields: dict[str, str],
                                                    expected: str) -> None:
    raw = {"repo": str(dvc_repo.path), "path": "data/iris.csv", **fields}
    with pytest.raises(DatasetUnavailable, match=expected) as caught:
        load_dataset(DatasetSpec.model_validate({"dvc": raw, "target": "label"}), "classification")
    assert caught.value.exit_code == 3


def test_training_logs_the_dvc_lineage_with_the_dataset(dvc_repo: DvcRepo, mlflow_store: Store) -> None:
    name = unique("dvc")
    dataset = {"dvc": {"repo": str(dvc_repo.path), "path": "data/iris.csv", "rev": "v2"}, "target": "label"}
    code, message = train(mlflow_store, configure(name, dataset=dataset))
    assert code == 0, message
    client = MlflowClient(mlflow_store.tracking_uri)
    version = client.get_model_version(name, "1")
    run = client.get_run(version.run_id)
    assert run.inputs is not None
    (dataset_input,) = run.inputs.dataset_inputs
    tags = {t.key: t.value for t in dataset_input.tags}
    assert tags["dvc.rev"] == dvc_repo.commits["v2"] and tags["md5"] == dvc_repo.md5["v2"]
    assert tags["dvc.path"] == "data/iris.csv" and tags["mlflow.data.context"] == "training"
    assert dataset_input.dataset.digest and dvc_repo.commits["v2"] in dataset_input.dataset.source
    assert run.data.params["dataset.rows"] == "60"
