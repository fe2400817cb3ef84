"""A TrainingRun reads its dataset from S3 (the local versitygw) with keys from a Secret.

The Secret reaches the training container alone through envFrom (dataset.credentialsSecret),
the endpoint comes from dataset.endpoint, and the run's MLflow dataset input names the object
and its md5. The operator's policy refuses Secrets in specs by default, so this test runs the
session operator with MODELYARD_ALLOW_SECRET_REFS=true, as `config.policy.secretRefs` does.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from typing import Any

import pytest
from kubernetes import client

from tests.helpers import condition, kubectl_apply, mlflow_client

from .test_trainingrun import model_name, pods_of, tr_manifest, wait_phase

pytestmark = pytest.mark.integration


def _upload_iris_csv(s3_store: Any, key: str) -> bytes:
    from pyarrow import fs
    from sklearn.datasets import load_iris

    buffer = io.StringIO()
    load_iris(as_frame=True).frame.to_csv(buffer, index=False)
    data = buffer.getvalue().encode()
    s3 = fs.S3FileSystem(access_key=s3_store.access_key_id, secret_key=s3_store.secret_access_key,
                         region=s3_store.region, endpoint_override=s3_store.endpoint)
    with s3.open_output_stream(f"datasets/{key}") as out:
        out.write(data)
    return data


def test_training_reads_an_s3_dataset_with_keys_from_a_secret(
    cluster: Any, namespace: str, s3_store: Any, secrets_allowed: Any
) -> None:
    key = f"iris-{uuid.uuid4().hex[:6]}.csv"
    data = _upload_iris_csv(s3_store, key)
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_secret(namespace, {"metadata": {"name": "s3-readers"}, "stringData": {
        "AWS_ACCESS_KEY_ID": s3_store.access_key_id, "AWS_SECRET_ACCESS_KEY": s3_store.secret_access_key,
        "AWS_REGION": s3_store.region}})
    model = model_name(namespace, "iris-s3")
    dataset = {"uri": f"s3://datasets/{key}", "target": "target", "credentialsSecret": "s3-readers",
               "endpoint": s3_store.endpoint}
    kubectl_apply(cluster, namespace, tr_manifest("iris-s3", model, dataset=dataset))
    run = wait_phase(cluster, namespace, "iris-s3")
    assert run["status"]["phase"] == "Succeeded", run["status"]

    (pod,) = pods_of(cluster, namespace, "iris-s3")
    (train,) = pod.spec.containers
    assert [ref.secret_ref.name for ref in train.env_from or []] == ["s3-readers"]
    assert not [e.name for e in train.env or [] if e.name.startswith("AWS_")]  # no literal keys

    mlf = mlflow_client(cluster)
    mlflow_run = mlf.get_run(run["status"]["runId"])
    assert mlflow_run.inputs is not None
    (dataset_input,) = mlflow_run.inputs.dataset_inputs
    assert f"s3://datasets/{key}" in dataset_input.dataset.source
    tags = {t.key: t.value for t in dataset_input.tags}
    assert tags["md5"] == hashlib.md5(data).hexdigest()


def test_a_wrong_key_fails_the_run_at_once_as_dataset_unavailable(
    cluster: Any, namespace: str, s3_store: Any, secrets_allowed: Any
) -> None:
    key = f"iris-{uuid.uuid4().hex[:6]}.csv"
    _upload_iris_csv(s3_store, key)
    client.CoreV1Api(cluster.api).create_namespaced_secret(namespace, {
        "metadata": {"name": "s3-wrong"},
        "stringData": {"AWS_ACCESS_KEY_ID": s3_store.access_key_id, "AWS_SECRET_ACCESS_KEY": "not-the-key"}})
    dataset = {"uri": f"s3://datasets/{key}", "target": "target", "credentialsSecret": "s3-wrong",
               "endpoint": s3_store.endpoint}
    kubectl_apply(cluster, namespace, tr_manifest("wrong", model_name(namespace, "wrong"), dataset=dataset))
    run = wait_phase(cluster, namespace, "wrong")
    failed = condition(run, "Failed")
    assert (run["status"]["phase"], failed["reason"]) == ("Failed", "DatasetUnavailable"), run["status"]
    assert f"s3://datasets/{key}" in failed["message"]
    assert len(pods_of(cluster, namespace, "wrong")) == 1  # exit 3: no retry
