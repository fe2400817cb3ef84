"""TrainingRun status about promotion: stage, the champion/challenger decision with both values,
the Event that explains it, and the MLflow UI links (lineage)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from modelyard_operator.settings import Settings
from modelyard_operator.trainingrun.models import InvalidSpecError, TrainingRun, parse_run
from modelyard_operator.trainingrun.promotion import model_version_url, run_url
from modelyard_operator.trainingrun.reconcile import phase_events
from modelyard_operator.trainingrun.status import job_status

CHALLENGE = {"stage": "Production", "metric": "f1_macro", "compareTo": {"stage": "Production"},
             "minImprovement": 0.01}
SPEC: dict[str, Any] = {"model": {"name": "digits"}, "estimator": {"type": "mlp_classifier"},
                        "dataset": {"builtin": "digits"}, "promotion": CHALLENGE}
UI = "https://mlflow.example.com"
NOW = "2025-01-01T00:10:00Z"
OK = {"ok": True, "runId": "r1", "experimentId": "e1", "trial": None,
      "metrics": {"accuracy": 0.97, "f1_macro": 0.965}}
JOB = {"metadata": {"name": "digits-train", "uid": "job-1"},
       "status": {"startTime": "2025-01-01T00:00:00Z", "completionTime": "2025-01-01T00:05:01Z",
                  "conditions": [{"type": "Complete", "status": "True"}]}}


def run(spec: dict[str, Any] = SPEC) -> TrainingRun:
    return parse_run({"apiVersion": "modelyard.io/v1alpha1", "kind": "TrainingRun",
                      "metadata": {"name": "digits", "namespace": "ml", "uid": "u", "generation": 1},
                      "spec": spec})


def pod(result: dict[str, Any]) -> dict[str, Any]:
    terminated = {"exitCode": 0, "finishedAt": "2025-01-01T00:05:00Z", "message": json.dumps(result)}
    return {"metadata": {"name": "p", "ownerReferences": [{"uid": "job-1"}]},
            "status": {"phase": "Succeeded",
                       "containerStatuses": [{"name": "train", "state": {"terminated": terminated}}]}}


def decided(promoted: bool, reason: str, message: str, champion: float | None = 0.95) -> dict[str, Any]:
    return {**OK, "modelName": "digits", "version": "4", "promoted": promoted, "alias": None,
            "stage": "Production" if promoted else None,
            "promotion": {"reason": reason, "message": message, "metric": "f1_macro", "value": 0.965,
                          "championVersion": "3" if champion is not None else None,
                          "championValue": champion}}


def succeeded(result: dict[str, Any], ui: str | None = UI) -> dict[str, Any]:
    return job_status(run(), JOB, [pod(result)], NOW, ui_base=ui)


def test_better_challenger_status_shows_both_values_and_the_stage() -> None:
    status = succeeded(decided(True, "Promoted", "promoted: f1_macro=0.965 vs champion version 3 0.95"))
    assert (status["promoted"], status["stage"], status["alias"]) == (True, "Production", None)
    assert status["promotion"] == {
        "decision": "Promoted", "reason": "Promoted", "metric": "f1_macro", "value": 0.965,
        "championVersion": "3", "championValue": 0.95,
        "message": "promoted: f1_macro=0.965 vs champion version 3 0.95"}
    assert status["message"].endswith("; promoted to stage Production")


def test_worse_challenger_keeps_the_champion_and_an_event_says_why() -> None:
    status = succeeded(decided(False, "NotBetter", "not promoted: f1_macro=0.965 vs champion version 3 0.97"))
    assert status["promoted"] is False and status["stage"] is None
    assert (status["promotion"]["decision"], status["promotion"]["championValue"]) == ("NotPromoted", 0.95)
    assert "not promoted (NotBetter): champion kept" in status["message"]
    events = phase_events({"phase": "Running"}, status, run())
    assert [e.reason for e in events] == ["Succeeded", "NotPromoted"]
    assert "champion version 3 0.97" in events[1].message and "version 4" in events[1].message


def test_promoted_event_names_the_target() -> None:
    status = succeeded(decided(True, "Promoted", "promoted: better by 0.015"))
    events = phase_events({"phase": "Running"}, status, run())
    assert events[1].reason == "Promoted"
    assert events[1].message.startswith("digits version 4 is now stage Production: promoted: better by 0.015")


def test_no_holder_has_no_champion_fields() -> None:
    status = succeeded(decided(True, "Promoted", "promoted; no version holds stage Production yet", None))
    assert "championValue" not in status["promotion"] and "championVersion" not in status["promotion"]


def test_lineage_links_come_from_the_ui_base_url() -> None:
    status = succeeded(decided(True, "Promoted", "x"))
    assert status["mlflow"] == {"runUrl": f"{UI}/#/experiments/e1/runs/r1",
                                "modelVersionUrl": f"{UI}/#/models/digits/versions/4"}
    assert "mlflow" not in {k for k, v in succeeded(decided(True, "Promoted", "x"), ui=None).items() if v}


def test_urls_quote_names() -> None:
    assert model_version_url("http://m", "a b/c", "2") == "http://m/#/models/a%20b%2Fc/versions/2"
    assert run_url("http://m", "1", "abc") == "http://m/#/experiments/1/runs/abc"


def test_ui_base_url_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_MLFLOW_TRACKING_URI", "http://mlflow.ml:5000/")
    assert Settings().ui_base_url == "http://mlflow.ml:5000"
    monkeypatch.setenv("MODELYARD_MLFLOW_UI_URL", "https://mlflow.example.com/")
    assert Settings().ui_base_url == "https://mlflow.example.com"
    monkeypatch.setenv("MODELYARD_MLFLOW_UI_URL", "")  # helm renders unset values empty
    assert Settings().ui_base_url == "http://mlflow.ml:5000"


@pytest.mark.parametrize(("promotion", "field"), [
    ({"metric": "f1_macro", "minValue": 0.5}, "spec.promotion"),
    ({"alias": "c", "metric": "f1_macro", "compareTo": {}}, "spec.promotion.compareTo"),
    ({"alias": "c", "metric": "f1_macro", "compareTo": {"alias": "c", "stage": "Production"}},
     "spec.promotion.compareTo"),
    ({"stage": "Archived", "metric": "f1_macro", "minValue": 0.5}, "spec.promotion.stage"),
    ({"alias": "c", "metric": "f1_macro", "compareTo": {"alias": "c"}, "minImprovement": -0.1},
     "spec.promotion.minImprovement"),
])
def test_invalid_promotions_name_the_field(promotion: dict[str, Any], field: str) -> None:
    body = {"metadata": {"name": "r", "namespace": "n", "uid": "u"}, "spec": {**SPEC, "promotion": promotion}}
    with pytest.raises(InvalidSpecError, match=f"^{field}"):
        parse_run(body)
