"""k8s/examples/trainingrun-digits-sweep.yaml through the real entrypoint (a 2-trial cut of
its sweep): the best trial reaches Production, and a rerun only replaces it when it is better."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml
from mlflow import MlflowClient
from modelyard_training.__main__ import run
from modelyard_training.config import parse_config

from .conftest import Store, unique

EXAMPLE = Path(__file__).resolve().parents[3] / "k8s" / "examples" / "trainingrun-digits-sweep.yaml"


def example_spec(model: str, trials: int) -> dict[str, Any]:
    spec = copy.deepcopy(next(d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d["kind"] == "TrainingRun")["spec"])
    spec["model"]["name"] = spec["model"]["experiment"] = model
    spec["sweep"]["trials"] = trials
    spec["sweep"]["space"]["max_iter"] = {"min": 30, "max": 60, "type": "int"}  # seconds, not minutes
    return spec


def sweep(store: Store, spec: dict[str, Any]) -> dict[str, Any]:
    ref = {"namespace": "ml", "name": unique("digits"), "uid": unique("uid")}
    for index in range(spec["sweep"]["trials"]):
        config = {"mode": "trial", "run": ref, "spec": spec}
        code, message = run(store.env(json.dumps(config), JOB_COMPLETION_INDEX=str(index)))
        assert code == 0, message
    code, message = run(store.env(json.dumps({"mode": "select", "run": ref, "spec": spec})))
    assert code == 0, message
    return message


def test_the_example_is_a_valid_training_config() -> None:
    parse_config({"mode": "select", "run": {"namespace": "ml", "name": "d", "uid": "u"},
                  "spec": example_spec("digits", 10)})


def test_digits_sweep_goes_to_production_and_a_rerun_must_beat_it(mlflow_store: Store) -> None:
    model = unique("digits")
    first = sweep(mlflow_store, example_spec(model, 2))
    assert (first["promoted"], first["stage"]) == (True, "Production"), first
    assert first["promotion"]["championVersion"] is None and first["metrics"]["f1_macro"] > 0.9

    # The same sweep again scores the same: a tie (and minImprovement) keeps version 1.
    second = sweep(mlflow_store, example_spec(model, 2))
    assert second["promoted"] is False and second["promotion"]["reason"] == "NotBetter", second["promotion"]
    assert second["promotion"]["championValue"] == first["metrics"]["f1_macro"]
    client = MlflowClient(mlflow_store.tracking_uri)
    stages = {str(v.version): v.current_stage for v in client.search_model_versions(f"name = '{model}'")}
    assert stages == {"1": "Production", "2": "None"}
    assert client.get_run(second["runId"]).data.metrics["champion_f1_macro"] == first["metrics"]["f1_macro"]
