"""Pure status pieces about what happened in the registry: the promotion decision the training
pod reported, the Event that explains it, and the MLflow UI links (lineage)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from modelyard_operator.events import Event
from modelyard_operator.trainingrun.models import TrainingResult, TrainingRun


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    return f"{base}/#/experiments/{quote(experiment_id, safe='')}/runs/{quote(run_id, safe='')}"


def model_version_url(base: str, model: str, version: str) -> str:
    return f"{base}/#/models/{quote(model, safe='')}/versions/{quote(version, safe='')}"


def mlflow_links(base: str | None, result: TrainingResult, model: str) -> dict[str, str]:
    """status.mlflow: the run page and the model-version page, for whatever the result names."""
    if not base:
        return {}
    links: dict[str, str] = {}
    if result.experiment_id and result.run_id:
        links["runUrl"] = run_url(base, result.experiment_id, result.run_id)
    if result.version:
        links["modelVersionUrl"] = model_version_url(base, result.model_name or model, result.version)
    return links


def promotion_status(run: TrainingRun, result: TrainingResult) -> dict[str, Any] | None:
    """status.promotion: the decision and both values (None without a promotion rule)."""
    if run.spec.promotion is None:
        return None
    reported = result.promotion
    if reported is None:
        # A training image older than the decision summary: only the outcome is known.
        reason = "Promoted" if result.promoted else "BelowThreshold"
        return {"decision": "Promoted" if result.promoted else "NotPromoted", "reason": reason,
                "metric": run.spec.promotion.metric}
    status: dict[str, Any] = {
        "decision": "Promoted" if result.promoted else "NotPromoted",
        "reason": reported.reason or ("Promoted" if result.promoted else "NotPromoted"),
        "message": reported.message,
        "metric": reported.metric or run.spec.promotion.metric,
        "value": reported.value,
        "championVersion": reported.champion_version,
        "championValue": reported.champion_value,
    }
    return {key: value for key, value in status.items() if value is not None}


def promotion_summary(run: TrainingRun, status: dict[str, Any]) -> str:
    """The status-message suffix about promotion."""
    promotion = run.spec.promotion
    decided = status.get("promotion") or {}
    if promotion is None or not decided:
        return ""
    if status.get("promoted"):
        return f"; promoted to {promotion.describe()}"
    if decided.get("reason") in ("NotBetter", "ChampionNotEvaluable", "Contended"):
        return f"; not promoted ({decided['reason']}): champion kept"
    return f"; promotion rule for {promotion.describe()} not met"


def promotion_event(run: TrainingRun, status: dict[str, Any]) -> Event | None:
    """Promoted or NotPromoted, saying why (with the champion's value when one was compared)."""
    decided = status.get("promotion") or {}
    if run.spec.promotion is None or not decided:
        return None
    model, version = run.spec.model.name, status.get("modelVersion")
    if status.get("promoted"):
        detail = decided.get("message") or f"{run.spec.promotion.metric} passes"
        return Event("Normal", "Promoted", f"{model} version {version} is now "
                     f"{run.spec.promotion.describe()}: {detail}")
    detail = decided.get("message") or f"{decided.get('reason')}"
    return Event("Normal", "NotPromoted", f"{model} version {version} was not promoted "
                 f"({decided.get('reason')}): {detail}")
