"""Promotion: the rules that decide (thresholds, champion/challenger) and applying the decision
to the registry (alias, stage with archiving) with an optimistic compare-and-set.

MLflow has no atomic compare-and-set for aliases or stages. Two TrainingRuns finishing together
would each compare against the same old champion and the last writer would win, however bad.
So `promote` re-reads the holder right before writing, re-evaluates when it moved, and after
writing waits a moment and checks again: a run that lost a race finds the winner in its place
and contests it like any other champion, so the better model ends up holding the target.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag

from .champion import ChampionScore, current_holder, stage_api
from .config import PromotionSpec

log = logging.getLogger("modelyard_training")

# How long a writer waits before checking that nobody wrote over it; a concurrent writer that
# read the old holder writes within milliseconds of its read, well inside this window.
SETTLE_SECONDS = 2.0
MAX_ROUNDS = 6
CHAMPION_PREFIX = "champion_"
TAG_CHAMPION_VERSION = "modelyard.io/champion-version"
TAG_PROMOTION = "modelyard.io/promotion"

Scorer = Callable[[str], ChampionScore]


@dataclass(frozen=True)
class Decision:
    """What promotion decided and why; `reason` is a CamelCase word for status and Events."""

    promoted: bool
    reason: str
    message: str
    metric: str
    value: float | None = None
    champion: ChampionScore | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def champion_value(self) -> float | None:
        return self.champion.metrics.get(self.metric) if self.champion is not None else None

    def summary(self) -> dict[str, Any]:
        """The termination-message form (contracts.md)."""
        return {
            "reason": self.reason,
            "message": self.message,
            "metric": self.metric,
            "value": self.value,
            "championVersion": self.champion.version if self.champion is not None else None,
            "championValue": self.champion_value,
        }


def threshold_decision(promotion: PromotionSpec, metrics: Mapping[str, float]) -> Decision:
    """minValue/maxValue alone (also the rule when there is no champion to beat)."""
    metric = promotion.metric
    value = metrics.get(metric)
    if value is None:
        return Decision(False, "MetricMissing", f"not promoted: metric {metric} was not logged", metric)
    shown = f"{metric}={value:.4g}"
    if promotion.min_value is not None and value < promotion.min_value:
        message = f"not promoted: {shown} is below minValue {promotion.min_value:g}"
        return Decision(False, "BelowThreshold", message, metric, value)
    if promotion.max_value is not None and value > promotion.max_value:
        message = f"not promoted: {shown} is above maxValue {promotion.max_value:g}"
        return Decision(False, "BelowThreshold", message, metric, value)
    return Decision(True, "Promoted", f"promoted: {shown} passes; {promotion.describe()}", metric, value)


def challenger_decision(
    promotion: PromotionSpec, metrics: Mapping[str, float], champion: ChampionScore | None
) -> Decision:
    """Thresholds first, then the champion: the challenger must be strictly better, by at
    least minImprovement, in the metric's direction. A tie never displaces the champion."""
    passed = threshold_decision(promotion, metrics)
    if not passed.promoted or promotion.compare_to is None:
        return passed
    target = promotion.compare_to.describe()
    if champion is None:
        message = f"{passed.message}; no version holds {target} yet"
        return Decision(True, "Promoted", message, passed.metric, passed.value)
    metric, value = passed.metric, passed.value
    assert value is not None
    held = champion.metrics.get(metric)
    if champion.error is not None or held is None:
        why = champion.error or f"it does not report {metric} on this data"
        message = f"not promoted: champion version {champion.version} ({target}) cannot be evaluated: {why}"
        return Decision(False, "ChampionNotEvaluable", message, metric, value, champion)
    improvement = value - held if promotion.maximize else held - value
    comparison = f"{metric}={value:.4g} vs champion version {champion.version} ({target}) {held:.4g}"
    if improvement <= 0 or improvement < promotion.min_improvement:
        needed = f" by at least {promotion.min_improvement:g}" if promotion.min_improvement > 0 else ""
        message = f"not promoted: {comparison}; not better{needed}"
        return Decision(False, "NotBetter", message, metric, value, champion)
    message = f"promoted: {comparison}; better by {improvement:.4g}; {promotion.describe()}"
    return Decision(True, "Promoted", message, metric, value, champion)


def apply(client: MlflowClient, promotion: PromotionSpec, model_name: str, version: str) -> None:
    """Point the alias and/or move the stage to ``version`` (both idempotent)."""
    if promotion.stage is not None:
        with stage_api():
            client.transition_model_version_stage(
                model_name, version, promotion.stage, archive_existing_versions=promotion.archive
            )
    if promotion.alias is not None:
        client.set_registered_model_alias(model_name, promotion.alias, version)


def promote(
    client: MlflowClient,
    promotion: PromotionSpec,
    model_name: str,
    version: str,
    metrics: Mapping[str, float],
    scorer: Scorer,
    *,
    settle_seconds: float = SETTLE_SECONDS,
    before_write: Callable[[], None] | None = None,
) -> Decision:
    """Decide and apply. Nothing is written unless the rules pass, so a failing run leaves the
    alias and stage where they were; with compareTo, a model worse than the current holder
    never displaces it, even when another run promotes at the same time.

    ``scorer`` evaluates a holder version on this run's test split (called once per version).
    ``before_write`` runs between the re-read and the write, for tests of the lost-update race.
    """
    target = promotion.compare_to
    if target is None:
        passed = threshold_decision(promotion, metrics)
        if passed.promoted:
            apply(client, promotion, model_name, version)
        return passed
    scores: dict[str, ChampionScore] = {}
    decision: Decision | None = None
    for _ in range(MAX_ROUNDS):
        holder = current_holder(client, model_name, target)
        if holder == version:
            if decision is None:
                # A retried pod whose earlier attempt promoted: finish the write, keep the win.
                apply(client, promotion, model_name, version)
                return Decision(True, "Promoted", f"promoted: version {version} already holds "
                                f"{target.describe()}", promotion.metric, metrics.get(promotion.metric))
            time.sleep(settle_seconds)
            if current_holder(client, model_name, target) == version:
                return decision
            log.info("%s moved after this run promoted; contesting the new holder", target.describe())
            continue
        champion = None if holder is None else scores.setdefault(holder, scorer(holder))
        decision = challenger_decision(promotion, metrics, champion)
        if not decision.promoted:
            return decision
        if current_holder(client, model_name, target) != holder:
            log.info("%s moved while this run was deciding; re-evaluating", target.describe())
            continue
        if before_write is not None:
            before_write()
        apply(client, promotion, model_name, version)
    if decision is not None and current_holder(client, model_name, target) == version:
        return decision
    return Decision(
        False, "Contended", f"not promoted: {target.describe()} kept moving during {MAX_ROUNDS} "
        "attempts; another run is promoting at the same time", promotion.metric, metrics.get(promotion.metric),
        decision.champion if decision is not None else None,
    )


def record(client: MlflowClient, run_id: str, decision: Decision) -> None:
    """Log the champion's metrics (prefixed) and the decision on the challenger's run, in one
    request rather than one per metric and tag."""
    champion = decision.champion
    metrics: list[Metric] = []
    tags = [RunTag(TAG_PROMOTION, decision.message[:5000])]
    if champion is not None:
        timestamp = int(time.time() * 1000)
        metrics = [Metric(f"{CHAMPION_PREFIX}{name}", value, timestamp, 0) for name, value in champion.metrics.items()]
        tags.append(RunTag(TAG_CHAMPION_VERSION, champion.version))
    client.log_batch(run_id, metrics=metrics, tags=tags)
