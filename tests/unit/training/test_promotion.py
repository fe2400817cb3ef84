"""Promotion against a real temporary MLflow registry: stages with archiving, the
champion/challenger rule, and the compare-and-set under concurrent writers.

End-to-end tests train real models through the entrypoint. The compare-and-set tests register
versions directly and score them with a table, because the race, not the models, is under test.
"""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from mlflow import MlflowClient
from modelyard_training.__main__ import run
from modelyard_training.champion import ChampionScore
from modelyard_training.config import PromotionSpec
from modelyard_training.promotion import challenger_decision, promote

from .conftest import Store, make_config, unique

GOOD = {"type": "logistic_regression", "hyperparameters": {"max_iter": 500}}
# Strong regularisation on iris: a clearly worse, but valid, classifier.
WEAK = {"type": "logistic_regression", "hyperparameters": {"max_iter": 500, "C": 0.001}}


def train(store: Store, name: str, estimator: dict[str, Any], promotion: dict[str, Any], **spec: Any) -> dict[str, Any]:
    config = make_config(model={"name": name}, estimator=estimator, promotion=promotion, **spec)
    config["run"] = {"namespace": "ml", "name": unique("run"), "uid": unique("uid")}
    code, message = run(store.env(json.dumps(config)))
    assert code == 0, message
    return message


def stages(client: MlflowClient, name: str) -> dict[str, str]:
    return {str(v.version): str(v.current_stage) for v in client.search_model_versions(f"name = '{name}'")}


# -- the rule (pure) -------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("rule", "value", "held", "promoted", "reason"),
    [
        ({"metric": "f1_macro"}, 0.95, 0.90, True, "Promoted"),
        ({"metric": "f1_macro"}, 0.90, 0.90, False, "NotBetter"),  # a tie keeps the champion
        ({"metric": "f1_macro"}, 0.85, 0.90, False, "NotBetter"),
        ({"metric": "f1_macro", "minImprovement": 0.05}, 0.93, 0.90, False, "NotBetter"),
        ({"metric": "f1_macro", "minImprovement": 0.05}, 0.96, 0.90, True, "Promoted"),
        ({"metric": "f1_macro", "minValue": 0.97}, 0.96, 0.50, False, "BelowThreshold"),  # bars still apply
        ({"metric": "rmse"}, 40.0, 45.0, True, "Promoted"),  # lower is better for errors
        ({"metric": "rmse"}, 50.0, 45.0, False, "NotBetter"),
        ({"metric": "rmse", "maxValue": 30.0}, 40.0, 45.0, False, "BelowThreshold"),
    ],
)
def test_challenger_rule(rule: dict[str, Any], value: float, held: float, promoted: bool, reason: str) -> None:
    promotion = PromotionSpec.model_validate({"alias": "champion", "compareTo": {"alias": "champion"}, **rule})
    champion = ChampionScore("3", {rule["metric"]: held})
    decision = challenger_decision(promotion, {rule["metric"]: value}, champion)
    assert (decision.promoted, decision.reason) == (promoted, reason), decision.message
    if reason != "BelowThreshold":
        assert (decision.value, decision.champion_value) == (value, held)


def test_no_holder_leaves_the_threshold_rule_alone() -> None:
    promotion = PromotionSpec.model_validate({"alias": "c", "metric": "accuracy", "compareTo": {"alias": "c"}})
    decision = challenger_decision(promotion, {"accuracy": 0.5}, None)
    assert decision.promoted and "no version holds alias 'c' yet" in decision.message


def test_unevaluable_champion_blocks_promotion() -> None:
    promotion = PromotionSpec.model_validate({"alias": "c", "metric": "accuracy", "compareTo": {"stage": "Production"}})
    decision = challenger_decision(promotion, {"accuracy": 0.99}, ChampionScore("2", error="has other features"))
    assert (decision.promoted, decision.reason) == (False, "ChampionNotEvaluable")
    assert "version 2 (stage Production) cannot be evaluated: has other features" in decision.message


# -- stages ----------------------------------------------------------------------------------

def test_production_stage_archives_the_previous_version_without_warning_users(mlflow_store: Store) -> None:
    name = unique("staged")
    promotion = {"stage": "Production", "metric": "accuracy", "minValue": 0.5}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = train(mlflow_store, name, GOOD, promotion)
        second = train(mlflow_store, name, GOOD, promotion)
    assert not [w for w in caught if issubclass(w.category, FutureWarning) and "stage" in str(w.message)]
    assert (first["promoted"], first["stage"], first["alias"]) == (True, "Production", None)
    assert second["promoted"] and second["stage"] == "Production"
    client = MlflowClient(mlflow_store.tracking_uri)
    assert stages(client, name) == {"1": "Archived", "2": "Production"}


def test_staging_keeps_others_unless_asked_and_alias_goes_along(mlflow_store: Store) -> None:
    name = unique("staging")
    train(mlflow_store, name, GOOD, {"stage": "Staging", "alias": "candidate", "metric": "accuracy"})
    train(mlflow_store, name, GOOD, {"stage": "Staging", "alias": "candidate", "metric": "accuracy"})
    client = MlflowClient(mlflow_store.tracking_uri)
    assert stages(client, name) == {"1": "Staging", "2": "Staging"}  # archiveExisting defaults false here
    assert str(client.get_model_version_by_alias(name, "candidate").version) == "2"
    train(mlflow_store, name, GOOD, {"stage": "Staging", "archiveExisting": True, "metric": "accuracy"})
    assert stages(client, name) == {"1": "Archived", "2": "Archived", "3": "Staging"}


# -- champion/challenger, end to end ---------------------------------------------------------

def test_worse_challenger_never_displaces_the_champion(mlflow_store: Store) -> None:
    name = unique("champ")
    promotion = {"alias": "champion", "metric": "f1_macro", "compareTo": {"alias": "champion"}}
    champion = train(mlflow_store, name, GOOD, promotion)
    assert champion["promoted"] and champion["promotion"]["championVersion"] is None
    challenger = train(mlflow_store, name, WEAK, promotion)

    summary = challenger["promotion"]
    assert challenger["promoted"] is False and summary["reason"] == "NotBetter", summary
    assert summary["championVersion"] == "1"
    assert summary["championValue"] == pytest.approx(champion["metrics"]["f1_macro"])
    assert summary["value"] == pytest.approx(challenger["metrics"]["f1_macro"])
    assert summary["value"] < summary["championValue"]
    client = MlflowClient(mlflow_store.tracking_uri)
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    logged = client.get_run(challenger["runId"])
    # The champion was scored on the challenger's own test split: same rows, same number.
    assert logged.data.metrics["champion_f1_macro"] == pytest.approx(champion["metrics"]["f1_macro"])
    assert logged.data.tags["modelyard.io/champion-version"] == "1"
    assert "not better" in logged.data.tags["modelyard.io/promotion"]


def test_better_challenger_takes_the_production_stage(mlflow_store: Store) -> None:
    name = unique("better")
    promotion = {"stage": "Production", "metric": "accuracy", "compareTo": {"stage": "Production"}}
    train(mlflow_store, name, WEAK, promotion)
    challenger = train(mlflow_store, name, GOOD, promotion)
    assert challenger["promoted"] and challenger["promotion"]["reason"] == "Promoted"
    assert challenger["promotion"]["championVersion"] == "1"
    client = MlflowClient(mlflow_store.tracking_uri)
    assert stages(client, name) == {"1": "Archived", "2": "Production"}
    assert "champion_accuracy" in client.get_run(challenger["runId"]).data.metrics


def test_champion_with_another_signature_blocks_promotion(mlflow_store: Store) -> None:
    name = unique("sig")
    promotion = {"alias": "champion", "metric": "accuracy", "compareTo": {"alias": "champion"}}
    train(mlflow_store, name, GOOD, promotion)
    features = {"builtin": "iris", "features": ["petal length (cm)", "petal width (cm)"]}
    challenger = train(mlflow_store, name, GOOD, promotion, dataset=features)
    summary = challenger["promotion"]
    assert challenger["promoted"] is False and summary["reason"] == "ChampionNotEvaluable"
    assert "sepal length (cm)" in summary["message"] and summary["championValue"] is None
    assert str(MlflowClient(mlflow_store.tracking_uri).get_model_version_by_alias(name, "champion").version) == "1"


# -- compare-and-set -------------------------------------------------------------------------

def registered(store: Store, count: int) -> tuple[MlflowClient, str]:
    client = MlflowClient(store.tracking_uri, registry_uri=store.tracking_uri)
    name = unique("cas")
    client.create_registered_model(name)
    for _ in range(count):
        client.create_model_version(name, source=str(store.root / "no-artifacts"))
    return client, name


def table(scores: dict[str, float], hook: Callable[[str], None] | None = None) -> Callable[[str], ChampionScore]:
    def score(version: str) -> ChampionScore:
        if hook is not None:
            hook(version)
        return ChampionScore(version, {"accuracy": scores[version]})

    return score


CAS_RULE = PromotionSpec.model_validate({"alias": "champion", "metric": "accuracy", "compareTo": {"alias": "champion"}})


def test_holder_that_moves_during_evaluation_is_re_evaluated(mlflow_store: Store) -> None:
    client, name = registered(mlflow_store, 3)
    client.set_registered_model_alias(name, "champion", "1")
    scores = {"1": 0.80, "2": 0.90, "3": 0.95}
    # While version 2 scores the old champion, a better run (version 3) takes the alias.
    moved = table(scores, lambda v: client.set_registered_model_alias(name, "champion", "3") if v == "1" else None)
    decision = promote(client, CAS_RULE, name, "2", {"accuracy": 0.90}, moved, settle_seconds=0)
    assert (decision.promoted, decision.reason, decision.champion and decision.champion.version) == (
        False, "NotBetter", "3")
    assert str(client.get_model_version_by_alias(name, "champion").version) == "3"


def test_a_retried_pod_keeps_its_own_promotion(mlflow_store: Store) -> None:
    client, name = registered(mlflow_store, 2)
    client.set_registered_model_alias(name, "champion", "2")
    decision = promote(client, CAS_RULE, name, "2", {"accuracy": 0.5}, table({}), settle_seconds=0)
    assert decision.promoted and "already holds" in decision.message


def test_two_concurrent_runs_end_with_the_better_one_as_champion(mlflow_store: Store) -> None:
    client, name = registered(mlflow_store, 3)
    client.set_registered_model_alias(name, "champion", "1")
    scores = {"1": 0.80, "2": 0.95, "3": 0.90}
    both_decided = threading.Barrier(2, timeout=30)
    worse_writes_last = threading.Event()

    def first_write_waits(version: str) -> Callable[[], None]:
        calls = []

        def hook() -> None:
            calls.append(1)
            if len(calls) == 1:
                # Both have re-read the old champion: the worst interleaving, a lost update.
                both_decided.wait()
                if version == "3":
                    worse_writes_last.wait(10)
                    threading.Event().wait(0.2)
                else:
                    worse_writes_last.set()

        return hook

    results: dict[str, Any] = {}

    def contender(version: str, settle: float) -> None:
        own = MlflowClient(mlflow_store.tracking_uri, registry_uri=mlflow_store.tracking_uri)
        results[version] = promote(own, CAS_RULE, name, version, {"accuracy": scores[version]}, table(scores),
                                   settle_seconds=settle, before_write=first_write_waits(version))

    threads = [threading.Thread(target=contender, args=("2", 0.5)), threading.Thread(target=contender, args=("3", 1.5))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert str(client.get_model_version_by_alias(name, "champion").version) == "2"
    assert results["2"].promoted
    assert (results["3"].promoted, results["3"].reason) == (False, "NotBetter")
