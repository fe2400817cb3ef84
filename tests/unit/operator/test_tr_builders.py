"""Golden-dict tests for the TrainingRun Job builder (pure, no cluster)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from modelyard_operator.settings import Settings
from modelyard_operator.trainingrun.builders import build_job, job_name
from modelyard_operator.trainingrun.models import InvalidSpecError, TrainingRun, parse_run

UID = "0b6f7f3e-1111-2222-3333-444455556666"
SETTINGS = Settings(
    mlflow_tracking_uri="http://127.0.0.1:5000",
    pod_mlflow_tracking_uri="http://10.88.0.1:5000",
    training_image="modelyard-training:0.1.0",
)
LABELS = {
    "app.kubernetes.io/managed-by": "modelyard",
    "app.kubernetes.io/part-of": "modelyard",
    "modelyard.io/trainingrun": "iris-1",
}
SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
# the image's uid (k8s/images/Dockerfile), as Pod Security "restricted" wants it
POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"}}
TMP_VOLUME = {"name": "tmp", "emptyDir": {}}
TMP_MOUNT = {"name": "tmp", "mountPath": "/tmp"}
FAILURE_POLICY = {
    "rules": [
        {"action": "FailJob",
         "onExitCodes": {"containerName": "train", "operator": "In", "values": [2, 3]}},
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
    ]
}
BASIC_SPEC: dict[str, Any] = {
    "model": {"name": "iris"},
    "estimator": {"type": "logistic_regression", "hyperparameters": {"max_iter": 500}},
    "dataset": {"builtin": "iris", "testSize": 0.2, "seed": 42},
    "backoffLimit": 2,
}


def make_run(spec: dict[str, Any], name: str = "iris-1") -> TrainingRun:
    return parse_run({
        "apiVersion": "modelyard.io/v1alpha1", "kind": "TrainingRun",
        "metadata": {"name": name, "namespace": "ml", "uid": UID, "generation": 1},
        "spec": spec,
    })


def config_env(mode: str, spec: dict[str, Any]) -> dict[str, str]:
    config = {"mode": mode, "run": {"namespace": "ml", "name": "iris-1", "uid": UID}, "spec": spec}
    return {"name": "MODELYARD_TRAINING_CONFIG",
            "value": json.dumps(config, sort_keys=True, separators=(",", ":"))}


def container(mode: str, spec: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return {
        "name": "train",
        "image": "modelyard-training:0.1.0",
        "imagePullPolicy": "IfNotPresent",
        "env": [config_env(mode, spec), {"name": "MLFLOW_TRACKING_URI", "value": "http://10.88.0.1:5000"}],
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": SECURITY,
        "volumeMounts": [TMP_MOUNT],
        **overrides,
    }


def job(name: str, mode: str, pod_spec_extra: dict[str, Any], container_: dict[str, Any],
        **spec_extra: Any) -> dict[str, Any]:
    labels = {**LABELS, "modelyard.io/training-mode": mode}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": "ml", "labels": labels},
        "spec": {
            "backoffLimit": 2,
            "podFailurePolicy": FAILURE_POLICY,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": POD_SECURITY,
                    "containers": [container_],
                    "volumes": [TMP_VOLUME],
                    **pod_spec_extra,
                },
            },
            **spec_extra,
        },
    }


def test_basic_job_golden() -> None:
    expected = job("iris-1-train", "single", {}, container("single", BASIC_SPEC))
    assert build_job(make_run(BASIC_SPEC), SETTINGS) == expected


SWEEP_SPEC: dict[str, Any] = {
    **BASIC_SPEC,
    "estimator": {"type": "random_forest_classifier"},
    "sweep": {
        "trials": 4, "parallelism": 2, "strategy": "grid",
        "space": {"n_estimators": {"values": [10, 50]}, "max_depth": {"values": [2, None]}},
        "objective": {"metric": "f1_macro", "direction": "maximize"},
    },
    "ttlSecondsAfterFinished": 600,
    "activeDeadlineSeconds": 1800,
}


def test_sweep_is_one_indexed_job_without_ttl() -> None:
    expected = job(
        "iris-1-sweep", "trial", {}, container("trial", SWEEP_SPEC),
        completionMode="Indexed", completions=4, parallelism=2, activeDeadlineSeconds=1800,
    )
    assert build_job(make_run(SWEEP_SPEC), SETTINGS) == expected


def test_select_job_runs_once_with_ttl() -> None:
    expected = job(
        "iris-1-select", "select", {}, container("select", SWEEP_SPEC),
        activeDeadlineSeconds=1800, ttlSecondsAfterFinished=600,
    )
    assert build_job(make_run(SWEEP_SPEC), SETTINGS, "select") == expected


def test_sweep_parallelism_never_exceeds_trials() -> None:
    spec = {**SWEEP_SPEC, "sweep": {**SWEEP_SPEC["sweep"], "trials": 1, "parallelism": 8}}
    assert build_job(make_run(spec), SETTINGS)["spec"]["parallelism"] == 1


GPU_SPEC: dict[str, Any] = {
    **BASIC_SPEC,
    "resources": {"cpu": "2", "memory": "4Gi", "gpu": 2},
    "nodeSelector": {"pool": "a100"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
}


def test_gpu_job_golden() -> None:
    resources = {"requests": {"cpu": "2", "memory": "4Gi"},
                 "limits": {"memory": "4Gi", "nvidia.com/gpu": 2}}
    placement = {
        "nodeSelector": {"nvidia.com/gpu.present": "true", "pool": "a100"},
        "tolerations": [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
        ],
    }
    expected = job("iris-1-train", "single", placement,
                   container("single", GPU_SPEC, resources=resources))
    assert build_job(make_run(GPU_SPEC), SETTINGS) == expected


def test_gpu_user_selector_wins_and_toleration_not_duplicated() -> None:
    gpu_toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    spec = {**BASIC_SPEC, "resources": {"gpu": 1},
            "nodeSelector": {"nvidia.com/gpu.present": "yes"}, "tolerations": [gpu_toleration]}
    pod = build_job(make_run(spec), SETTINGS)["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "yes"}
    assert pod["tolerations"] == [gpu_toleration]


def test_no_gpu_means_no_gpu_placement() -> None:
    pod = build_job(make_run({**BASIC_SPEC, "resources": {"gpu": 0}}), SETTINGS)["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["limits"]


CSV_SPEC: dict[str, Any] = {
    **BASIC_SPEC,
    "dataset": {"uri": "/data/houses.csv", "format": "csv", "target": "price",
                "features": ["rooms", "area"], "testSize": 0.25, "seed": 7},
    "estimator": {"type": "ridge", "hyperparameters": {"alpha": 0.5}},
    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "datasets"}}],
    "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True}],
    "env": [{"name": "OMP_NUM_THREADS", "value": "1"},
            {"name": "MLFLOW_TRACKING_URI", "value": "http://elsewhere:5000"}],
    "image": "registry.example.com/custom-training:1.2",
}


def test_csv_job_with_volumes_golden() -> None:
    ours = container("single", CSV_SPEC)
    expected = job(
        "iris-1-train", "single",
        {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "datasets"}}, TMP_VOLUME]},
        {
            **ours,
            "image": "registry.example.com/custom-training:1.2",
            # user env first; the operator's own variables win over user duplicates
            "env": [{"name": "OMP_NUM_THREADS", "value": "1"}, *ours["env"]],
            "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True}, TMP_MOUNT],
        },
    )
    assert build_job(make_run(CSV_SPEC), SETTINGS) == expected


def test_credentials_come_from_secret_never_literals() -> None:
    settings = SETTINGS.model_copy(update={"mlflow_credentials_secret": "mlflow-creds"})
    c = build_job(make_run(BASIC_SPEC), settings)["spec"]["template"]["spec"]["containers"][0]
    assert c["envFrom"] == [{"secretRef": {"name": "mlflow-creds", "optional": True}}]
    assert not any("PASSWORD" in e["name"] or "TOKEN" in e["name"] for e in c["env"])


S3_SPEC = {**BASIC_SPEC, "dataset": {"uri": "s3://datasets/iris.csv", "target": "species",
                                     "credentialsSecret": "s3-readers", "endpoint": "http://10.88.0.1:7070"}}


def test_dataset_credentials_reach_only_the_training_container_through_env_from() -> None:
    settings = SETTINGS.model_copy(update={"mlflow_credentials_secret": "mlflow-creds"})
    pod = build_job(make_run(S3_SPEC), settings)["spec"]["template"]["spec"]
    (train,) = pod["containers"]
    # MLflow's first, the dataset's last: on a clash of keys, the dataset's own win.
    assert train["envFrom"] == [{"secretRef": {"name": "mlflow-creds", "optional": True}},
                                {"secretRef": {"name": "s3-readers", "optional": True}}]
    assert not pod.get("initContainers")
    assert not [e for e in train["env"] if e["name"].startswith("AWS_")]
    # The endpoint travels in the config, which training reads; no literal keys anywhere.
    config = json.loads(train["env"][-2]["value"])
    assert config["spec"]["dataset"]["endpoint"] == "http://10.88.0.1:7070"
    alone = build_job(make_run(S3_SPEC), SETTINGS)["spec"]["template"]["spec"]["containers"][0]
    assert alone["envFrom"] == [{"secretRef": {"name": "s3-readers", "optional": True}}]


def test_dvc_dataset_parses() -> None:
    spec = {**BASIC_SPEC, "dataset": {"dvc": {"repo": "https://git.example.com/d.git", "path": "iris.csv",
                                              "rev": "v1"}, "target": "species"}}
    run = make_run(spec)
    assert run.spec.dataset.dvc is not None and run.spec.dataset.dvc.rev == "v1"
    assert "envFrom" not in build_job(run, SETTINGS)["spec"]["template"]["spec"]["containers"][0]


def test_pod_uri_falls_back_to_operator_uri() -> None:
    settings = Settings(mlflow_tracking_uri="http://mlflow.ml:5000")
    env = build_job(make_run(BASIC_SPEC), settings)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow.ml:5000"} in env


def test_config_carries_the_raw_camel_case_spec() -> None:
    env = build_job(make_run(SWEEP_SPEC), SETTINGS)["spec"]["template"]["spec"]["containers"][0]["env"]
    config = json.loads(env[0]["value"])
    assert config == {"mode": "trial", "run": {"namespace": "ml", "name": "iris-1", "uid": UID},
                      "spec": SWEEP_SPEC}


def test_job_names_are_deterministic() -> None:
    run = make_run(SWEEP_SPEC)
    assert [job_name(run, m) for m in ("single", "trial", "select")] == [
        "iris-1-train", "iris-1-sweep", "iris-1-select"]
    assert build_job(run, SETTINGS) == build_job(make_run(SWEEP_SPEC), SETTINGS)


@pytest.mark.parametrize(("spec", "field"), [
    ({**BASIC_SPEC, "estimator": {"type": "xgboost"}}, "spec.estimator"),
    ({**BASIC_SPEC, "dataset": {"builtin": "iris", "uri": "http://x/y.csv"}}, "spec.dataset"),
    ({**BASIC_SPEC, "dataset": {"uri": "http://x/y.csv"}}, "spec.dataset"),
    ({**BASIC_SPEC, "dataset": {"uri": "s3://b/y.csv", "dvc": {"repo": "r", "path": "p", "rev": "v"},
                                "target": "t"}}, "spec.dataset"),
    ({**BASIC_SPEC, "dataset": {"dvc": {"repo": "r", "path": "p.csv"}, "target": "t"}}, "spec.dataset.dvc.rev"),
    ({**BASIC_SPEC, "resources": {"gpu": -1}}, "spec.resources.gpu"),
    ({**BASIC_SPEC, "sweep": {"trials": 0, "space": {}}}, "spec.sweep.trials"),
    ({k: v for k, v in BASIC_SPEC.items() if k != "model"}, "spec.model"),
])
def test_invalid_specs_name_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidSpecError, match=field.replace(".", r"\.")):
        make_run(spec)


def test_a_user_mount_at_tmp_replaces_the_operator_emptydir() -> None:
    spec = {**BASIC_SPEC, "volumes": [{"name": "scratch", "emptyDir": {"medium": "Memory"}}],
            "volumeMounts": [{"name": "scratch", "mountPath": "/tmp"}]}
    pod = build_job(make_run(spec), SETTINGS)["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "scratch", "emptyDir": {"medium": "Memory"}}]
    assert pod["containers"][0]["volumeMounts"] == [{"name": "scratch", "mountPath": "/tmp"}]
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
