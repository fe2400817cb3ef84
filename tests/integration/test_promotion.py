"""Promotion policies end to end (issue 11): registry stages with archiving, champion/challenger
with a ModelDeployment following the champion, concurrent runs, and the digits example.

Real API server, local node running the training and serving images, real MLflow. Each test
registers its own model. Iris runs keep the suite lean on 2 cores: a strongly regularised
logistic regression (WEAK) is a valid but clearly worse model than the default one (GOOD).
"""

from __future__ import annotations

import copy
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.helpers import event_reasons, kubectl_apply, mlflow_client, wait_for

from .test_modeldeployment import (
    deployment_version,
    get_md,
    md_manifest,
    predict,
    ready_endpoints,
    served_versions,
    wait_serving,
)
from .test_trainingrun import RUN_TIMEOUT, model_name, tr_manifest, wait_phase

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "k8s" / "examples" / "trainingrun-digits-sweep.yaml"
GOOD = {"type": "logistic_regression", "hyperparameters": {"max_iter": 500}}
WEAK = {"type": "logistic_regression", "hyperparameters": {"max_iter": 500, "C": 0.001}}
POLL_SECONDS = 3  # MODELYARD_POLL_INTERVAL in the operator fixture


def challenge(target: dict[str, str], **rule: Any) -> dict[str, Any]:
    """Promote to ``target`` (alias or stage) only if better than its current holder."""
    return {**target, "metric": "accuracy", "compareTo": dict(target), **rule}


def train(cluster: Any, namespace: str, name: str, model: str, estimator: dict[str, Any],
          promotion: dict[str, Any], timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
    kubectl_apply(cluster, namespace, tr_manifest(name, model, estimator=estimator, promotion=promotion))
    status: dict[str, Any] = wait_phase(cluster, namespace, name, timeout=timeout)["status"]
    assert status["phase"] == "Succeeded", status
    return status


def stages(cluster: Any, model: str) -> dict[str, str]:
    return {str(v.version): str(v.current_stage)
            for v in mlflow_client(cluster).search_model_versions(f"name = '{model}'")}


def champion_of(cluster: Any, model: str) -> str:
    return str(mlflow_client(cluster).get_model_version_by_alias(model, "champion").version)


def test_stage_promotion_archives_the_previous_production_version(
    cluster: Any, namespace: str, operator: Any,
) -> None:
    model = model_name(namespace, "staged")
    promotion = {"stage": "Production", "metric": "accuracy", "minValue": 0.5}
    first = train(cluster, namespace, "first", model, GOOD, promotion)
    second = train(cluster, namespace, "second", model, GOOD, promotion)

    assert (first["promoted"], first["stage"]) == (True, "Production")
    assert (second["promoted"], second["stage"], second["modelVersion"]) == (True, "Production", "2")
    assert stages(cluster, model) == {"1": "Archived", "2": "Production"}
    assert second["promotion"]["decision"] == "Promoted"
    # Lineage: the links lead to this run's page and this version's page in the MLflow UI.
    base = cluster.mlflow_uri.rstrip("/")
    assert second["mlflow"] == {
        "runUrl": f"{base}/#/experiments/{second['experimentId']}/runs/{second['runId']}",
        "modelVersionUrl": f"{base}/#/models/{model}/versions/2"}
    with urllib.request.urlopen(second["mlflow"]["runUrl"], timeout=10) as page:
        assert page.status == 200
    table = cluster.kubectl("get", "tr", "second", "-n", namespace, "-o", "wide").stdout
    assert "Production" in table and "Promoted" in table, table
    # The deprecated stage API's FutureWarning stays out of the user's training log.
    logs = cluster.kubectl("logs", "-n", namespace, "job/second-train").stdout
    assert "stages will be removed" not in logs, logs


def test_worse_challenger_is_not_promoted_and_the_deployment_keeps_the_champion(
    cluster: Any, namespace: str, operator: Any,
) -> None:
    model = model_name(namespace, "keep")
    rule = challenge({"alias": "champion"})
    champion = train(cluster, namespace, "champion", model, GOOD, rule)
    assert champion["promoted"] and "championVersion" not in champion["promotion"]
    kubectl_apply(cluster, namespace, md_manifest("serve", {"name": model, "alias": "champion"}))
    wait_serving(cluster, namespace, "serve", "1")

    challenger = train(cluster, namespace, "challenger", model, WEAK, rule)
    decided = challenger["promotion"]
    assert challenger["promoted"] is False and challenger["modelVersion"] == "2"
    assert (decided["decision"], decided["reason"], decided["championVersion"]) == ("NotPromoted", "NotBetter", "1")
    # Both values, measured on the same test split: the champion scores what it scored itself.
    assert decided["championValue"] == pytest.approx(champion["metrics"]["accuracy"])
    assert decided["value"] == pytest.approx(challenger["metrics"]["accuracy"])
    assert decided["value"] < decided["championValue"]
    logged = mlflow_client(cluster).get_run(challenger["runId"]).data.metrics
    assert logged["champion_accuracy"] == pytest.approx(decided["championValue"])
    wait_for(lambda: "NotPromoted" in event_reasons(cluster, namespace, "challenger", "TrainingRun"), 15,
             what="NotPromoted event")

    assert champion_of(cluster, model) == "1"
    time.sleep(3 * POLL_SECONDS)  # the watcher has polled the registry since
    assert get_md(cluster, namespace, "serve")["status"]["resolvedVersion"] == "1"
    assert deployment_version(cluster, namespace, "serve") == "1"
    assert served_versions(cluster, namespace, "serve") == {"1"}


def test_better_challenger_takes_production_and_the_deployment_rolls(
    cluster: Any, namespace: str, operator: Any,
) -> None:
    model = model_name(namespace, "roll")
    rule = challenge({"stage": "Production"})
    first = train(cluster, namespace, "weak", model, WEAK, rule)
    assert (first["promoted"], first["stage"]) == (True, "Production")
    kubectl_apply(cluster, namespace, md_manifest("serve", {"name": model, "stage": "Production"}))
    wait_serving(cluster, namespace, "serve", "1")

    better = train(cluster, namespace, "strong", model, GOOD, rule)
    decided = better["promotion"]
    assert (better["promoted"], better["stage"], decided["reason"]) == (True, "Production", "Promoted")
    assert decided["championVersion"] == "1" and decided["value"] > decided["championValue"]
    assert stages(cluster, model) == {"1": "Archived", "2": "Production"}
    wait_for(lambda: "Promoted" in event_reasons(cluster, namespace, "strong", "TrainingRun"), 15,
             what="Promoted event")
    wait_serving(cluster, namespace, "serve", "2")
    assert served_versions(cluster, namespace, "serve") == {"2"}


def test_two_concurrent_runs_end_with_the_better_one_as_champion(
    cluster: Any, namespace: str, operator: Any,
) -> None:
    model = model_name(namespace, "race")
    rule = challenge({"alias": "champion"})
    # Applied back to back: the same dataset and estimator cost, so they finish together.
    kubectl_apply(cluster, namespace, tr_manifest("strong", model, estimator=GOOD, promotion=rule))
    kubectl_apply(cluster, namespace, tr_manifest("weak", model, estimator=WEAK, promotion=rule))
    strong = wait_phase(cluster, namespace, "strong")["status"]
    weak = wait_phase(cluster, namespace, "weak")["status"]
    assert strong["phase"] == weak["phase"] == "Succeeded", (strong, weak)
    assert strong["metrics"]["accuracy"] > weak["metrics"]["accuracy"]

    assert strong["promoted"] is True, strong["promotion"]
    assert champion_of(cluster, model) == strong["modelVersion"]
    if weak["promotion"]["decision"] == "NotPromoted":
        # It met the strong one as champion (before or after writing) and backed off.
        assert weak["promotion"]["reason"] == "NotBetter"
        assert weak["promotion"]["championVersion"] == strong["modelVersion"]


def digits_example(model: str, trials: int) -> list[dict[str, Any]]:
    """The example's TrainingRun and ModelDeployment, on this test's model, with a small sweep."""
    docs = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
    docs = copy.deepcopy(docs)
    run = next(d for d in docs if d["kind"] == "TrainingRun")
    run["spec"]["model"]["name"] = model
    run["spec"]["sweep"].update({"trials": trials, "parallelism": 2})
    run["spec"]["sweep"]["space"]["max_iter"] = {"min": 40, "max": 80, "type": "int"}
    for doc in docs:
        if doc["kind"] == "ModelDeployment":
            doc["spec"]["model"]["name"] = model
            doc["spec"]["registry"]["pollInterval"] = POLL_SECONDS
    return docs


def test_digits_example_end_to_end(cluster: Any, namespace: str, operator: Any) -> None:
    from sklearn.datasets import load_digits

    model = model_name(namespace, "digits")
    run_doc, md_doc = digits_example(model, trials=3)
    kubectl_apply(cluster, namespace, run_doc)
    kubectl_apply(cluster, namespace, md_doc)
    name, md = run_doc["metadata"]["name"], md_doc["metadata"]["name"]

    status = wait_phase(cluster, namespace, name, timeout=RUN_TIMEOUT * 3)["status"]
    assert status["phase"] == "Succeeded", status
    assert len(status["trialRunIds"]) == 3 and status["modelVersion"] == "1"
    assert (status["promoted"], status["stage"]) == (True, "Production"), status.get("promotion")
    assert status["promotion"]["reason"] == "Promoted" and status["objectiveMetric"] == "f1_macro"
    assert status["mlflow"]["modelVersionUrl"].endswith(f"/#/models/{model}/versions/1")
    assert stages(cluster, model) == {"1": "Production"}

    wait_serving(cluster, namespace, md, "1")
    digits = load_digits()
    rows, labels = digits.data[:20].astype(float).tolist(), digits.target[:20].tolist()
    (ip, *_) = ready_endpoints(cluster, namespace, md)
    body = predict(ip, rows)
    assert body["modelVersion"] == "1" and body["classes"] == list(range(10))
    assert all(len(p) == 10 and sum(p) == pytest.approx(1.0) for p in body["probabilities"])
    assert body["predictions"] == [int(np.argmax(p)) for p in body["probabilities"]]
    assert body["confidences"] == pytest.approx([max(p) for p in body["probabilities"]])
    assert sum(p == y for p, y in zip(body["predictions"], labels, strict=True)) >= 16


@pytest.mark.parametrize(("promotion", "says"), [
    ({"metric": "accuracy", "minValue": 0.5}, "set alias, stage or both"),
    ({"alias": "c", "metric": "accuracy"}, "set minValue, maxValue or compareTo"),
    ({"alias": "c", "metric": "accuracy", "compareTo": {"alias": "c", "stage": "Production"}},
     "set exactly one of alias or stage"),
    ({"alias": "c", "metric": "accuracy", "compareTo": {"alias": "c"}, "minImprovement": -0.1},
     "minImprovement"),
    ({"alias": "c", "metric": "accuracy", "minValue": 0.5, "archiveExisting": True},
     "archiveExisting applies only with spec.promotion.stage"),
])
def test_api_server_rejects_inconsistent_promotions(cluster: Any, namespace: str, promotion: dict[str, Any],
                                                    says: str) -> None:
    result = kubectl_apply(cluster, namespace, tr_manifest("bad", "bad", promotion=promotion), check=False)
    assert result.returncode != 0 and says in result.stderr, result.stderr
