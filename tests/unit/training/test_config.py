"""Config validation: a bad TrainingRun spec is rejected with a message naming the field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from modelyard_training.__main__ import run
from modelyard_training.config import parse_config
from modelyard_training.errors import EXIT_INVALID, InvalidConfig

from .conftest import make_config

SWEEP: dict[str, Any] = {
    "trials": 4,
    "space": {"C": {"values": [0.1, 1.0]}},
    "objective": {"metric": "accuracy", "direction": "maximize"},
}


def error_of(config: dict[str, Any]) -> str:
    with pytest.raises(InvalidConfig) as caught:
        parse_config(config)
    return caught.value.message


def test_minimal_config_gets_the_documented_defaults() -> None:
    config = parse_config(make_config())
    assert config.mode == "single"
    assert config.spec.model.experiment_name == "iris"  # experiment defaults to the model name
    assert config.spec.dataset.test_size == 0.2
    assert config.spec.dataset.seed == 42
    assert config.spec.promotion is None and config.spec.sweep is None


def test_sweep_defaults_and_camel_case_fields() -> None:
    config = parse_config(
        make_config(
            sweep={"trials": 2, "space": {"C": {"min": 0.01, "max": 10, "log": True}}},
            promotion={"alias": "champion", "metric": "f1_macro", "minValue": 0.9},
            dataset={"uri": "https://example.com/data.csv", "target": "y", "testSize": 0.3},
        )
    )
    assert config.spec.sweep is not None
    assert (config.spec.sweep.parallelism, config.spec.sweep.strategy) == (1, "grid")
    objective = config.spec.sweep.objective_for("classification")
    assert (objective.metric, objective.maximize) == ("accuracy", True)
    assert config.spec.promotion is not None and config.spec.promotion.min_value == 0.9
    assert config.spec.dataset.test_size == 0.3
    assert config.spec.dataset.file_format == "csv"


def test_pod_level_fields_are_accepted_and_ignored() -> None:
    config = parse_config(
        make_config(
            resources={"cpu": "1", "memory": "2Gi", "gpu": 1},
            nodeSelector={"pool": "train"},
            tolerations=[{"key": "k", "operator": "Exists"}],
            image="modelyard-training:dev",
            backoffLimit=2,
            activeDeadlineSeconds=600,
            ttlSecondsAfterFinished=60,
            volumes=[{"name": "data", "emptyDir": {}}],
            volumeMounts=[{"name": "data", "mountPath": "/data"}],
            env=[{"name": "X", "value": "1"}],
        )
    )
    assert config.spec.backoff_limit == 2


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"sweep": {**SWEEP, "trials": 0}}, "spec.sweep.trials: Input should be greater than or equal to 1"),
        ({"sweep": {**SWEEP, "parallelism": 0}}, "spec.sweep.parallelism: Input should be greater than or equal to 1"),
        ({"sweep": {**SWEEP, "strategy": "bayes"}}, "spec.sweep.strategy: Input should be 'grid' or 'random'"),
        ({"estimator": {"type": "xgboost"}}, "spec.estimator.type: Input should be"),
        ({"dataset": {"builtin": "mnist"}}, "spec.dataset.builtin: Input should be"),
        ({"dataset": {"builtin": "iris", "testSize": 1.5}}, "spec.dataset.testSize: Input should be less than 1"),
        ({"dataset": {"builtin": "iris", "foo": 1}}, "spec.dataset.foo: Extra inputs are not permitted"),
        ({"model": {}}, "spec.model.name: Field required"),
        ({"model": None}, "spec.model: Field required"),
        (
            {"promotion": {"alias": "bad alias!", "metric": "accuracy"}},
            "spec.promotion.alias: String should match pattern",
        ),
        ({"promotion": {"alias": "latest", "metric": "accuracy"}}, "spec.promotion.alias: 'latest' is reserved"),
        ({"promotion": {"alias": "v3", "metric": "accuracy"}}, "spec.promotion.alias: 'v3' is reserved"),
    ],
)
def test_field_errors_name_the_field(overrides: dict[str, Any], expected: str) -> None:
    assert expected in error_of(make_config(**overrides))


DVC = {"repo": "https://git.example.com/data.git", "path": "iris.csv", "rev": "v1"}


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"dataset": {"builtin": "iris", "uri": "/data/x.csv", "target": "y"}}, "spec.dataset: set exactly one"),
        ({"dataset": {}}, "spec.dataset: set exactly one"),
        ({"dataset": {"uri": "/data/x.csv"}}, "spec.dataset.target: is required when uri is set"),
        ({"dataset": {"uri": "data/x.csv", "target": "y"}}, "spec.dataset.uri: must be http(s)://"),
        ({"dataset": {"uri": "gs://bucket/x.csv", "target": "y"}}, "spec.dataset.uri: must be http(s)://, s3://"),
        ({"dataset": {"uri": "s3:///x.csv", "target": "y"}}, "spec.dataset.uri: an s3:// uri names a bucket"),
        ({"dataset": {"uri": "s3://b/x.csv", "dvc": DVC, "target": "y"}}, "spec.dataset: set exactly one"),
        ({"dataset": {"dvc": DVC}}, "spec.dataset.target: is required when dvc is set"),
        ({"dataset": {"dvc": {**DVC, "path": "data/x"}, "target": "y"}}, "spec.dataset.format: cannot be inferred"),
        ({"dataset": {"dvc": {"repo": "r", "path": "x.csv"}, "target": "y"}}, "spec.dataset.dvc.rev: Field required"),
        (
            {"dataset": {"uri": "https://h/x.csv", "target": "y", "credentialsSecret": "s3"}},
            "spec.dataset.credentialsSecret: applies only to an s3:// uri or a dvc dataset",
        ),
        (
            {"dataset": {"builtin": "iris", "endpoint": "http://s3:9000"}},
            "spec.dataset.endpoint: applies only to an s3:// uri or a dvc dataset",
        ),
        (
            {"dataset": {"uri": "s3://b/x.csv", "target": "y", "endpoint": "s3.local:9000"}},
            "spec.dataset.endpoint: must be an http(s):// URL",
        ),
        ({"dataset": {"uri": "/data/x.json", "target": "y"}}, "spec.dataset.format: cannot be inferred"),
        ({"dataset": {"builtin": "iris", "target": "species"}}, "spec.dataset.target: built-in datasets"),
        ({"dataset": {"builtin": "diabetes"}}, "spec.estimator.type: built-in 'diabetes' has a continuous target"),
        (
            {"promotion": {"alias": "champion", "metric": "rmse"}},
            "spec.promotion.metric: 'rmse' is not a metric of a classifier",
        ),
        (
            {"sweep": {**SWEEP, "objective": {"metric": "r2"}}},
            "spec.sweep.objective.metric: 'r2' is not a metric of a classifier",
        ),
        ({"sweep": {**SWEEP, "space": {"C": {"min": 2, "max": 1}}}}, "spec.sweep.space.C.min: must not exceed max"),
        (
            {"sweep": {**SWEEP, "space": {"C": {"min": 0, "max": 1, "log": True}}}},
            "spec.sweep.space.C.min: must be > 0",
        ),
        ({"sweep": {**SWEEP, "space": {"C": {"max": 1}}}}, "spec.sweep.space.C: set values, or both min and max"),
        ({"sweep": {**SWEEP, "space": {"C": {"values": [1], "min": 0}}}}, "spec.sweep.space.C: set either values"),
        (
            {"sweep": {**SWEEP, "space": {"C": {"values": []}}}},
            "spec.sweep.space.C.values: List should have at least 1",
        ),
        (
            {"sweep": {**SWEEP, "space": {"n": {"min": 0.2, "max": 0.8, "type": "int"}}}},
            "spec.sweep.space.n: no integer",
        ),
    ],
)
def test_cross_field_errors_name_the_field(overrides: dict[str, Any], expected: str) -> None:
    assert expected in error_of(make_config(**overrides))


def test_regressor_metric_and_uri_format_override_are_valid() -> None:
    config = parse_config(
        make_config(
            estimator={"type": "ridge"},
            dataset={"uri": "https://example.com/export?id=3", "format": "parquet", "target": "price"},
            promotion={"alias": "champion", "metric": "rmse", "maxValue": 50},
        )
    )
    assert config.spec.dataset.file_format == "parquet"


def test_object_storage_datasets_are_valid() -> None:
    s3 = parse_config(make_config(dataset={"uri": "s3://datasets/iris.csv", "target": "target",
                                           "credentialsSecret": "s3-creds", "endpoint": "http://10.0.0.1:7070"}))
    assert s3.spec.dataset.file_format == "csv" and s3.spec.dataset.is_object_storage
    dvc = parse_config(make_config(dataset={"dvc": {**DVC, "path": "data/iris.parquet", "remote": "store"},
                                            "target": "target", "credentialsSecret": "s3-creds"}))
    assert dvc.spec.dataset.file_format == "parquet"
    assert dvc.spec.dataset.dvc is not None and dvc.spec.dataset.dvc.remote == "store"


def test_trial_and_select_modes_require_a_sweep() -> None:
    config = make_config()
    config["mode"] = "trial"
    assert "spec.sweep: is required in mode 'trial'" in error_of(config)


def test_all_errors_are_reported_together() -> None:
    message = error_of(make_config(sweep={**SWEEP, "trials": 0}, dataset={"builtin": "iris", "seed": "x"}))
    assert "spec.sweep.trials" in message and "spec.dataset.seed" in message


def test_run_reference_is_required() -> None:
    config = make_config()
    del config["run"]["uid"]
    assert "run.uid: Field required" in error_of(config)


def test_invalid_json_and_non_object() -> None:
    with pytest.raises(InvalidConfig, match="not valid JSON"):
        parse_config("{nope")
    with pytest.raises(InvalidConfig, match="JSON object"):
        parse_config("[1, 2]")


def test_entrypoint_exits_2_with_the_field_in_the_termination_message(tmp_path: Any) -> None:
    config = make_config(sweep={**SWEEP, "trials": 0})
    code, message = run({"MODELYARD_TRAINING_CONFIG": json.dumps(config), "MLFLOW_TRACKING_URI": "http://unused"})
    assert code == EXIT_INVALID == 2
    assert message["ok"] is False and message["reason"] == "InvalidConfig"
    assert "spec.sweep.trials: Input should be greater than or equal to 1" in message["message"]


def test_entrypoint_reads_a_config_file_and_requires_a_tracking_uri(tmp_path: Any) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(make_config()))
    code, message = run({"MODELYARD_TRAINING_CONFIG_FILE": str(path)})
    assert (code, message["reason"]) == (2, "InvalidConfig")
    assert "MLFLOW_TRACKING_URI" in message["message"]
    code, message = run({"MODELYARD_TRAINING_CONFIG_FILE": str(tmp_path / "missing.json")})
    assert (code, message["reason"]) == (2, "InvalidConfig")
    code, message = run({})
    assert "MODELYARD_TRAINING_CONFIG" in message["message"]
