"""Pure canary analysis: two metric snapshots (stable, candidate) and the gates -> a verdict.

No I/O here. A snapshot is what the serving pods of one side expose on /metrics, summed over
those pods (counters are cumulative per pod). The verdict carries every gate with the numbers
it compared, so status, Events and the rejection tag can all name them.

Gates (spec.rollout.analysis):
- ``minRequests``: each side served enough prediction requests (the candidate's counted from
  the start of the step). Until then nothing is decided: the verdict is ``wait``.
- ``errorRate``: candidate errors (5xx + model errors) per request <= maxErrorRate.
- ``errorRateVsStable``: candidate error rate <= stable's + errorRateMargin.
- ``latency``: candidate p99 <= stable p99 x maxLatencyRatio (from the latency histograms).
- ``divergence``: Jensen-Shannon divergence (base 2, 0..1) of the prediction distributions,
  by predicted class, or by output bin for regressors, <= maxDivergence.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from prometheus_client.parser import text_string_to_metric_families

PREFIX = "modelyard_serving"
PREDICTION_ROUTE_SUFFIXES = ("/predict", "/infer", "/invocations")

Result = Literal["Pass", "Fail", "Wait"]
Decision = Literal["pass", "fail", "wait"]
K = TypeVar("K", str, float)


@dataclass(frozen=True)
class MetricSnapshot:
    """One side's prediction traffic, summed over its pods."""

    requests: float = 0.0
    errors: float = 0.0
    # Latency histogram of prediction routes: upper bound -> cumulative count.
    latency: dict[float, float] = field(default_factory=dict)
    # Predicted rows by class; regressors: rows per output bin (keyed "le=<bound>").
    predictions: dict[str, float] = field(default_factory=dict)
    pods: int = 0

    def __add__(self, other: MetricSnapshot) -> MetricSnapshot:
        return MetricSnapshot(
            requests=self.requests + other.requests,
            errors=self.errors + other.errors,
            latency=_add(self.latency, other.latency),
            predictions=_add(self.predictions, other.predictions),
            pods=self.pods + other.pods,
        )

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def _add(a: dict[K, float], b: dict[K, float]) -> dict[K, float]:
    result = dict(a)
    for key, value in b.items():
        result[key] = result.get(key, 0.0) + value
    return result


def merge(snapshots: Iterable[MetricSnapshot]) -> MetricSnapshot:
    total = MetricSnapshot()
    for snap in snapshots:
        total = total + snap
    return total


def _is_prediction_route(route: str) -> bool:
    return route.endswith(PREDICTION_ROUTE_SUFFIXES)


def parse_metrics(text: str) -> MetricSnapshot:
    """The prediction traffic one server's /metrics text describes (a one-pod snapshot)."""
    requests = errors = 0.0
    latency: dict[float, float] = {}
    classes: dict[str, float] = {}
    outputs: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = s.labels
            if s.name == f"{PREFIX}_requests_total" and _is_prediction_route(labels.get("route", "")):
                requests += s.value
                if labels.get("status", "").startswith("5"):
                    errors += s.value
            elif s.name == f"{PREFIX}_model_errors_total":
                errors += s.value
            elif (s.name == f"{PREFIX}_request_duration_seconds_bucket"
                  and _is_prediction_route(labels.get("route", ""))):
                bound = float(labels["le"])
                latency[bound] = latency.get(bound, 0.0) + s.value
            elif s.name == f"{PREFIX}_predictions_total" and labels.get("class"):
                classes[labels["class"]] = classes.get(labels["class"], 0.0) + s.value
            elif s.name == f"{PREFIX}_prediction_value_bucket":
                bound = float(labels["le"])
                outputs[bound] = outputs.get(bound, 0.0) + s.value
    predictions = classes or _bins(outputs)
    return MetricSnapshot(requests, errors, latency, predictions, pods=1)


def _bins(cumulative: dict[float, float]) -> dict[str, float]:
    """Per-bin counts from a cumulative histogram, keyed by the bin's upper bound."""
    bins: dict[str, float] = {}
    previous = 0.0
    for bound in sorted(cumulative):
        count = cumulative[bound] - previous
        previous = cumulative[bound]
        if count > 0:
            bins[f"le={bound:g}"] = count
    return bins


def quantile(q: float, cumulative: dict[float, float]) -> float | None:
    """histogram_quantile over cumulative buckets (upper bound -> count); None when empty."""
    bounds = sorted(cumulative)
    if not bounds or cumulative[bounds[-1]] <= 0:
        return None
    rank = q * cumulative[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = cumulative[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            share = (rank - below) / (count - below) if count > below else 1.0
            return lower + (bound - lower) * share
        lower, below = bound, count
    return lower


def js_divergence(p: dict[str, float], q: dict[str, float]) -> float:
    """Jensen-Shannon divergence, base 2 (0 = identical, 1 = disjoint), of two count tables."""
    p_total, q_total = sum(p.values()), sum(q.values())
    if p_total <= 0 or q_total <= 0:
        return 0.0
    total = 0.0
    for key in set(p) | set(q):
        a, b = p.get(key, 0.0) / p_total, q.get(key, 0.0) / q_total
        m = (a + b) / 2
        if a > 0:
            total += a * math.log2(a / m) / 2
        if b > 0:
            total += b * math.log2(b / m) / 2
    return max(0.0, min(1.0, total))


@dataclass(frozen=True)
class Gates:
    max_error_rate: float = 0.01
    error_rate_margin: float = 0.005
    max_latency_ratio: float = 1.5
    max_divergence: float = 0.1
    min_requests: int = 100


@dataclass(frozen=True)
class GateResult:
    name: str
    result: Result
    value: float | None
    threshold: float | None
    message: str

    def as_status(self) -> dict[str, object]:
        entry: dict[str, object] = {"name": self.name, "result": self.result, "message": self.message}
        if self.value is not None:
            entry["value"] = round(self.value, 6)
        if self.threshold is not None:
            entry["threshold"] = round(self.threshold, 6)
        return entry


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    gates: tuple[GateResult, ...]

    @property
    def failed(self) -> list[GateResult]:
        return [g for g in self.gates if g.result == "Fail"]

    @property
    def summary(self) -> str:
        """The failing gates with their numbers (or why it waits, or that all passed)."""
        if self.decision == "fail":
            return "; ".join(f"{g.name}: {g.message}" for g in self.failed)
        if self.decision == "wait":
            return "; ".join(g.message for g in self.gates if g.result == "Wait")
        return "all gates passed"


def evaluate(
    stable: MetricSnapshot, candidate: MetricSnapshot, gates: Gates,
    candidate_step_requests: float | None = None,
) -> Verdict:
    """Decide one step. ``candidate_step_requests``: the candidate's requests in this step."""
    step_requests = candidate.requests if candidate_step_requests is None else candidate_step_requests
    enough = stable.requests >= gates.min_requests and step_requests >= gates.min_requests
    volume = GateResult(
        "minRequests", "Pass" if enough else "Wait", step_requests, gates.min_requests,
        f"{step_requests:.0f} candidate requests this step and {stable.requests:.0f} stable "
        f"(need {gates.min_requests} each)",
    )
    results = [volume, *_quality_gates(stable, candidate, gates)]
    if not enough:  # never decide on too little evidence, either way
        results = [volume, *(_waiting(g) for g in results[1:])]
        return Verdict("wait", tuple(results))
    if any(g.result == "Fail" for g in results):
        return Verdict("fail", tuple(results))
    if any(g.result == "Wait" for g in results):
        return Verdict("wait", tuple(results))
    return Verdict("pass", tuple(results))


def _waiting(gate: GateResult) -> GateResult:
    return GateResult(gate.name, "Wait", gate.value, gate.threshold, gate.message)


def _check(name: str, value: float, threshold: float, message: str) -> GateResult:
    return GateResult(name, "Pass" if value <= threshold else "Fail", value, threshold, message)


def _quality_gates(stable: MetricSnapshot, candidate: MetricSnapshot, gates: Gates) -> list[GateResult]:
    c_rate, s_rate = candidate.error_rate, stable.error_rate
    results = [
        _check("errorRate", c_rate, gates.max_error_rate,
               f"candidate error rate {c_rate:.4f} ({candidate.errors:.0f}/{candidate.requests:.0f}) "
               f"vs max {gates.max_error_rate}"),
        _check("errorRateVsStable", c_rate, s_rate + gates.error_rate_margin,
               f"candidate error rate {c_rate:.4f} vs stable {s_rate:.4f} + margin "
               f"{gates.error_rate_margin}"),
    ]
    c_p99, s_p99 = quantile(0.99, candidate.latency), quantile(0.99, stable.latency)
    if c_p99 is None or s_p99 is None:
        results.append(GateResult("latency", "Wait", c_p99, None, "no latency observations yet"))
    else:
        limit = s_p99 * gates.max_latency_ratio
        results.append(_check("latency", c_p99, limit,
                              f"candidate p99 {c_p99 * 1000:.2f}ms vs stable p99 "
                              f"{s_p99 * 1000:.2f}ms x {gates.max_latency_ratio}"))
    divergence = js_divergence(candidate.predictions, stable.predictions)
    top = ", ".join(f"{k}: {_share(candidate, k):.2f}/{_share(stable, k):.2f}"
                    for k in sorted(set(candidate.predictions) | set(stable.predictions))[:6])
    results.append(_check("divergence", divergence, gates.max_divergence,
                          f"prediction divergence {divergence:.4f} vs max {gates.max_divergence}"
                          + (f" (share candidate/stable {top})" if top else "")))
    return results


def _share(snapshot: MetricSnapshot, key: str) -> float:
    total = sum(snapshot.predictions.values())
    return snapshot.predictions.get(key, 0.0) / total if total else 0.0
