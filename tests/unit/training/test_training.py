"""Real training runs against a temporary MLflow store (sqlite + local artifacts): what gets
logged, registered and promoted, and the exit codes of the failure paths."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from modelyard_training.__main__ import HTTP_DEFAULTS, apply_env_defaults, main, run
from modelyard_training.config import parse_config
from modelyard_training.sweep import trial_params

from tests.helpers import free_port

from .conftest import Store, make_config, unique

CLASSIFIER_METRICS = {"accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc"}


def configure(name: str, uid: str | None = None, mode: str = "single", **spec: Any) -> dict[str, Any]:
    spec.setdefault("model", {"name": name})
    config = make_config(**spec)
    config["mode"] = mode
    config["run"] = {"namespace": "ml", "name": f"{name}-run", "uid": uid or unique("uid")}
    return config


def train(store: Store, config: dict[str, Any], **env: str) -> tuple[int, dict[str, Any]]:
    return run(store.env(json.dumps(config), **env))


def versions_of(client: MlflowClient, name: str) -> list[str]:
    return sorted(str(v.version) for v in client.search_model_versions(f"name = '{name}'"))


def aliases(client: MlflowClient, name: str) -> dict[str, str]:
    return {alias: str(version) for alias, version in client.get_registered_model(name).aliases.items()}


def test_iris_run_logs_everything_registers_and_promotes(mlflow_store: Store, tmp_path: Path) -> None:
    name = unique("iris")
    config = configure(
        name,
        model={"name": name, "tags": {"team": "vision"}},
        promotion={"alias": "champion", "metric": "f1_macro", "minValue": 0.8},
    )
    code, message = train(mlflow_store, config)
    assert code == 0, message
    assert message["ok"] is True and message["modelName"] == name
    assert (message["version"], message["promoted"], message["alias"], message["trial"]) == (
        "1",
        True,
        "champion",
        None,
    )
    assert set(message["metrics"]) == CLASSIFIER_METRICS and message["metrics"]["accuracy"] > 0.85

    client = MlflowClient(mlflow_store.tracking_uri)
    mlflow_run = client.get_run(message["runId"])
    assert mlflow_run.info.experiment_id == message["experimentId"]
    assert client.get_experiment(message["experimentId"]).name == name  # experiment defaults to the model
    assert mlflow_run.data.metrics == pytest.approx(message["metrics"])
    params = mlflow_run.data.params
    assert params["estimator"] == "logistic_regression" and params["max_iter"] == "500"
    assert params["random_state"] == "42"  # the dataset seed, so reruns reproduce
    assert params["dataset.source"] == "sklearn.datasets.load_iris" and params["dataset.testSize"] == "0.2"
    tags = mlflow_run.data.tags
    run_ref = config["run"]
    assert tags["modelyard.io/namespace"] == "ml" and tags["modelyard.io/trainingrun"] == run_ref["name"]
    assert tags["modelyard.io/trainingrun-uid"] == run_ref["uid"] and tags["team"] == "vision"
    assert "modelyard.io/trial" not in tags

    artifacts = {a.path for a in client.list_artifacts(message["runId"])}
    assert {"confusion_matrix.png", "reference_profile.json"} <= artifacts
    png = mlflow.artifacts.download_artifacts(
        run_id=message["runId"],
        artifact_path="confusion_matrix.png",
        dst_path=str(tmp_path),
        tracking_uri=mlflow_store.tracking_uri,
    )
    assert Path(png).read_bytes().startswith(b"\x89PNG")

    assert mlflow_run.inputs is not None
    (dataset_input,) = mlflow_run.inputs.dataset_inputs
    assert dataset_input.dataset.name == "iris" and dataset_input.dataset.digest
    assert "sklearn.datasets.load_iris" in dataset_input.dataset.source
    assert {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"] == "training"

    version = client.get_model_version(name, "1")
    assert version.run_id == message["runId"]
    assert version.tags["modelyard.io/trainingrun-uid"] == run_ref["uid"]
    assert version.tags["modelyard.io/namespace"] == "ml" and version.tags["team"] == "vision"
    registered = client.get_registered_model(name)
    assert aliases(client, name) == {"champion": "1"} and registered.tags["team"] == "vision"

    info = mlflow.models.get_model_info(f"models:/{name}/1")
    assert info.signature.inputs.input_names()[0] == "sepal length (cm)"
    assert info.saved_input_example_info is not None
    assert info.metadata is not None
    profile = info.metadata["modelyard_profile"]
    assert profile["version"] == 1 and profile["sampleCount"] == 120 and profile["bins"] == 10
    assert [f["name"] for f in profile["features"]][:2] == ["sepal length (cm)", "sepal width (cm)"]

    model = mlflow.sklearn.load_model(f"models:/{name}@champion")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # fitted on an array: predicting on one must not warn
        assert model.predict(np.array([[5.1, 3.5, 1.4, 0.2]])).tolist() == [0]


def test_alias_moves_only_when_the_metric_passes_and_reruns_reuse_the_version(mlflow_store: Store) -> None:
    name = unique("iris")
    client = MlflowClient(mlflow_store.tracking_uri)
    passing = configure(name, promotion={"alias": "champion", "metric": "accuracy", "minValue": 0.5})
    code, first = train(mlflow_store, passing)
    assert (code, first["version"], first["promoted"]) == (0, "1", True)

    failing = configure(name, promotion={"alias": "champion", "metric": "accuracy", "minValue": 0.9999})
    code, second = train(mlflow_store, failing)
    assert (code, second["version"], second["promoted"], second["alias"]) == (0, "2", False, None)
    assert aliases(client, name) == {"champion": "1"}  # the worse run did not displace it

    # The same TrainingRun again (a retried pod): no new training run, no second version.
    runs_before = len(client.search_runs([first["experimentId"]]))
    code, again = train(mlflow_store, failing)
    assert (code, again["version"], again["runId"]) == (0, "2", second["runId"])
    assert versions_of(client, name) == ["1", "2"]
    assert len(client.search_runs([first["experimentId"]])) == runs_before


def test_regressor_metrics_and_max_value_promotion(mlflow_store: Store) -> None:
    name = unique("diabetes")
    config = configure(
        name,
        estimator={"type": "ridge", "hyperparameters": {"alpha": 0.5}},
        dataset={"builtin": "diabetes", "testSize": 0.25, "seed": 7},
        promotion={"alias": "prod", "metric": "rmse", "maxValue": 1000},
    )
    code, message = train(mlflow_store, config)
    assert code == 0, message
    assert set(message["metrics"]) == {"rmse", "mae", "r2"} and message["promoted"] is True
    client = MlflowClient(mlflow_store.tracking_uri)
    assert "confusion_matrix.png" not in {a.path for a in client.list_artifacts(message["runId"])}
    assert client.get_run(message["runId"]).data.params["dataset.seed"] == "7"


def test_csv_dataset_is_tracked_with_its_source(mlflow_store: Store, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"f1": rng.normal(size=80), "f2": rng.normal(size=80), "noise": rng.normal(size=80)})
    frame["label"] = np.where(frame["f1"] + frame["f2"] > 0, "yes", "no")
    path = tmp_path / "customers.csv"
    frame.to_csv(path, index=False)
    name = unique("csv")
    config = configure(
        name,
        estimator={"type": "knn_classifier", "hyperparameters": {"n_neighbors": 3}},
        dataset={"uri": str(path), "target": "label", "features": ["f1", "f2"]},
    )
    code, message = train(mlflow_store, config)
    assert code == 0, message
    mlflow_run = MlflowClient(mlflow_store.tracking_uri).get_run(message["runId"])
    assert mlflow_run.inputs is not None
    (dataset_input,) = mlflow_run.inputs.dataset_inputs
    assert dataset_input.dataset.name == "customers" and str(path) in dataset_input.dataset.source
    assert mlflow_run.data.params["dataset.features"] == "f1,f2"
    info = mlflow.models.get_model_info(f"models:/{name}/1")
    assert info.signature.inputs.input_names() == ["f1", "f2"]


def test_invalid_hyperparameter_exits_2_before_touching_mlflow(mlflow_store: Store) -> None:
    name = unique("badhp")
    code, message = train(mlflow_store, configure(name, estimator={"type": "svc", "hyperparameters": {"C": -1}}))
    assert code == 2
    assert message["reason"] == "InvalidHyperparameters"
    assert "The 'C' parameter of SVC must be a float in the range (0.0, inf]. Got -1 instead." in message["message"]
    assert MlflowClient(mlflow_store.tracking_uri).get_experiment_by_name(name) is None


def test_hyperparameter_rejected_at_fit_exits_2_and_marks_the_run_failed(mlflow_store: Store) -> None:
    name = unique("fitfail")
    config = configure(name, estimator={"type": "mlp_classifier", "hyperparameters": {"hidden_layer_sizes": [0]}})
    code, message = train(mlflow_store, config)
    assert (code, message["reason"]) == (2, "InvalidHyperparameters")
    assert "hidden_layer_sizes must be > 0" in message["message"]
    client = MlflowClient(mlflow_store.tracking_uri)
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None
    (failed,) = client.search_runs([experiment.experiment_id])
    assert failed.info.status == "FAILED"
    assert versions_of(client, name) == []


def test_missing_dataset_exits_3(mlflow_store: Store, tmp_path: Path) -> None:
    config = configure(unique("nodata"), dataset={"uri": str(tmp_path / "gone.csv"), "target": "y"})
    code, message = train(mlflow_store, config)
    assert (code, message["reason"]) == (3, "DatasetUnavailable")
    assert "gone.csv does not exist" in message["message"]


C_VALUES = [0.0005, 0.01, 1.0, 50.0]
SWEEP = {
    "trials": 4,
    "parallelism": 2,
    "space": {"C": {"values": C_VALUES}},
    "objective": {"metric": "accuracy", "direction": "maximize"},
}


def test_sweep_trials_then_select_registers_exactly_one_version(mlflow_store: Store) -> None:
    name, uid = unique("sweep"), unique("uid")
    promotion = {"alias": "champion", "metric": "accuracy", "minValue": 0.5}
    client = MlflowClient(mlflow_store.tracking_uri)
    trials = []
    for index in range(4):
        code, message = train(
            mlflow_store,
            configure(name, uid, mode="trial", sweep=SWEEP, promotion=promotion),
            JOB_COMPLETION_INDEX=str(index),
        )
        assert code == 0, message
        assert (message["trial"], message["version"], message["promoted"]) == (index, None, False)
        tags = client.get_run(message["runId"]).data.tags
        assert tags["modelyard.io/trial"] == str(index) and tags["modelyard.io/trainingrun-uid"] == uid
        assert client.get_run(message["runId"]).data.params["C"] == str(C_VALUES[index])
        trials.append(message)
    assert versions_of(client, name) == []  # trials never register

    best = max(trials, key=lambda m: (m["metrics"]["accuracy"], -m["trial"]))
    select = configure(name, uid, mode="select", sweep=SWEEP, promotion=promotion)
    code, selected = train(mlflow_store, select)
    assert code == 0, selected
    assert (selected["version"], selected["trial"], selected["runId"]) == ("1", best["trial"], best["runId"])
    assert selected["promoted"] is True and selected["alias"] == "champion"
    assert selected["metrics"] == pytest.approx(best["metrics"])

    code, again = train(mlflow_store, select)  # select is idempotent
    assert (code, again["version"], again["runId"]) == (0, "1", best["runId"])
    assert versions_of(client, name) == ["1"]
    assert client.get_model_version(name, "1").run_id == best["runId"]

    # A retried trial pod reuses its finished run instead of logging another.
    code, retried = train(mlflow_store, configure(name, uid, mode="trial", sweep=SWEEP), JOB_COMPLETION_INDEX="2")
    assert (code, retried["runId"]) == (0, trials[2]["runId"])


def test_random_trial_logs_the_deterministic_point(mlflow_store: Store) -> None:
    sweep = {
        "trials": 3,
        "strategy": "random",
        "space": {"C": {"min": 0.01, "max": 10, "log": True}, "max_iter": {"min": 100, "max": 300, "type": "int"}},
    }
    config = configure(unique("random"), mode="trial", sweep=sweep)
    code, message = train(mlflow_store, config, JOB_COMPLETION_INDEX="1")
    assert code == 0, message
    expected = trial_params(parse_config(config).spec.sweep, 1, 42)  # type: ignore[arg-type]
    params = MlflowClient(mlflow_store.tracking_uri).get_run(message["runId"]).data.params
    assert params["C"] == str(expected["C"]) and params["max_iter"] == str(expected["max_iter"])


def test_select_without_trials_fails_with_a_reason(mlflow_store: Store) -> None:
    code, message = train(mlflow_store, configure(unique("empty"), mode="select", sweep=SWEEP))
    assert (code, message["reason"]) == (1, "TrainingError")
    assert "no finished trial" in message["message"]


def test_trial_mode_needs_the_completion_index(mlflow_store: Store) -> None:
    code, message = train(mlflow_store, configure(unique("noidx"), mode="trial", sweep=SWEEP))
    assert (code, message["reason"]) == (2, "InvalidConfig") and "JOB_COMPLETION_INDEX" in message["message"]


def test_mlflow_unreachable_exits_4_within_seconds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The entrypoint's own retry defaults are under test: clear any the environment sets.
    for key in HTTP_DEFAULTS:
        monkeypatch.delenv(key, raising=False)
    termination = tmp_path / "termination-log"
    env = {
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
        "MODELYARD_TRAINING_CONFIG": json.dumps(configure(unique("down"))),
        "MODELYARD_TERMINATION_LOG": str(termination),
    }
    started = time.monotonic()
    code = main(env)
    elapsed = time.monotonic() - started
    assert code == 4
    assert elapsed < 15, f"took {elapsed:.1f}s"
    message = json.loads(termination.read_text())
    assert message["ok"] is False and message["reason"] == "MLflowUnavailable"
    assert "127.0.0.1" in message["message"]


def test_main_writes_the_termination_message(mlflow_store: Store) -> None:
    env = mlflow_store.env(json.dumps(configure(unique("term"))))
    assert main(env) == 0
    message = json.loads(Path(env["MODELYARD_TERMINATION_LOG"]).read_text())
    assert message["ok"] is True and message["version"] == "1"
    assert len(Path(env["MODELYARD_TERMINATION_LOG"]).read_bytes()) < 4096


def test_metrics_are_logged_once_and_linked_to_the_logged_model(mlflow_store: Store) -> None:
    code, message = train(mlflow_store, configure(unique("linked")))
    assert code == 0, message
    client = MlflowClient(mlflow_store.tracking_uri)
    (output,) = client.get_run(message["runId"]).outputs.model_outputs
    model_metrics = {m.key: m.value for m in client.get_logged_model(output.model_id).metrics or []}
    assert model_metrics == pytest.approx(message["metrics"])
    # One value per metric in the run: MLflow's copy onto the model is not a second logging.
    assert len(client.get_metric_history(message["runId"], "accuracy")) == 1


def test_env_defaults_quiet_libraries_and_single_threaded_blas_unless_the_pod_says_otherwise() -> None:
    env: dict[str, str] = {}
    apply_env_defaults(env)
    assert env["OPENBLAS_NUM_THREADS"] == "1" and env["GIT_PYTHON_REFRESH"] == "quiet"
    assert env["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "true"
    assert env.keys() >= HTTP_DEFAULTS.keys()
    env = {"OMP_NUM_THREADS": "4"}
    apply_env_defaults(env)
    assert env["OPENBLAS_NUM_THREADS"] == "4"  # OpenBLAS would follow OMP_NUM_THREADS itself
    env = {"OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "4"}
    apply_env_defaults(env)
    assert env["OPENBLAS_NUM_THREADS"] == "2"
