"""The built images, run as pods on the local node (restricted namespace, read-only root).

Each image holds exactly what its requirements.lock gives it: these checks catch a dependency
the dev venv happens to have but the image lacks. The serving and training images are
exercised end to end by every ModelDeployment and TrainingRun test.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from tests.helpers import wait_for

from .test_local_cluster import pod_spec

pytestmark = pytest.mark.integration


def run_to_completion(cluster: Any, ns: str, name: str, image: str, code: str) -> tuple[str, str]:
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_pod(ns, {"metadata": {"name": name}, "spec": pod_spec(
        {"name": "c", "image": image, "command": ["python", "-c", code],
         "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]}, restartPolicy="Never")})
    phase = wait_for(lambda: (p := core.read_namespaced_pod(name, ns).status.phase) in ("Succeeded", "Failed") and p,
                     180, what=f"{name} finished")
    return phase, cluster.pod_log(ns, name, "c")


def test_operator_image_imports_every_module(cluster, namespace):
    code = ("import importlib, pkgutil, modelyard_operator as p\n"
            "for m in pkgutil.walk_packages(p.__path__, f'{p.__name__}.'): importlib.import_module(m.name)\n"
            "import modelyard_operator.__main__\nprint('imported')\n")
    phase, log = run_to_completion(cluster, namespace, "operator-imports", "modelyard-operator:0.1.0", code)
    assert phase == "Succeeded" and "imported" in log, log


def test_mlflow_image_carries_the_production_drivers(cluster, namespace):
    code = ("import mlflow, mlflow.server, psycopg, psycopg2, boto3, azure.storage.blob, google.cloud.storage\n"
            "print(mlflow.__version__)\n")
    phase, log = run_to_completion(cluster, namespace, "mlflow-drivers", "modelyard-mlflow:0.1.0", code)
    assert phase == "Succeeded", log
    from importlib.metadata import version

    assert log.strip().splitlines()[-1] == version("mlflow")


def test_training_image_reads_dvc_and_s3(cluster, namespace):
    # DVC on a read-only root filesystem: its site cache must land under /tmp (the image's env).
    code = ("import os, dvc.api, dvc_s3, pyarrow.fs\n"
            "from dvc.dirs import site_cache_dir\n"
            "assert site_cache_dir().startswith('/tmp/'), site_cache_dir()\n"
            "pyarrow.fs.S3FileSystem(region='us-east-1')\nprint('dvc ok')\n")
    phase, log = run_to_completion(cluster, namespace, "training-dvc", "modelyard-training:0.1.0", code)
    assert phase == "Succeeded" and "dvc ok" in log, log
