"""Prometheus metrics (prefix ``modelyard_serving_``) in a registry owned by one app.

A private registry (not the process-global one) keeps apps created by tests independent.
Labelled children are cached in dicts: ``.labels()`` takes a lock and builds a key on every
call, which is measurable at thousands of requests per second.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .drift import DriftSnapshot

PREFIX = "modelyard_serving"
# Predictions take well under a millisecond, so resolution is where the time is spent:
# sub-ms to 10 ms finely, then coarse buckets to catch stalls and huge batches.
LATENCY_BUCKETS: Sequence[float] = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.004,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)

# Regressor outputs, binned so a canary's output distribution can be compared with stable's
# (the operator's divergence gate). Symmetric 1-2.5-5 steps cover typical targets from 0.01 to
# 10^4 either side of zero; everything beyond lands in the outermost bins.
_POSITIVE_OUTPUT_BOUNDS = (*(m * 10.0**e for e in range(-2, 4) for m in (1.0, 2.5, 5.0)), 1e4)
OUTPUT_BUCKETS: Sequence[float] = (
    *(-b for b in reversed(_POSITIVE_OUTPUT_BOUNDS)),
    0.0,
    *_POSITIVE_OUTPUT_BOUNDS,
)

# Requests per estimator call: powers of two up to the largest batch a server is likely to form.
BATCH_BUCKETS: Sequence[float] = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServingMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            f"{PREFIX}_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "HTTP request latency by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # A plain int the middleware bumps, read by the gauge at scrape time: Gauge.inc/dec take a
        # lock and check observability on every call, twice per request.
        self.in_flight = 0
        self.in_flight_gauge = Gauge(f"{PREFIX}_requests_in_flight", "Requests being handled right now.", registry=r)
        self.in_flight_gauge.set_function(lambda: self.in_flight)
        self.predictions = Counter(
            f"{PREFIX}_predictions",
            "Predicted rows by predicted class ('' for regressors).",
            ["model_name", "model_version", "class"],
            registry=r,
        )
        self.outputs = Histogram(
            f"{PREFIX}_prediction_value",
            "Regressor outputs (classifiers count by class in _predictions instead).",
            ["model_name", "model_version"],
            buckets=OUTPUT_BUCKETS,
            registry=r,
        )
        # Observed once per estimator call, so _count is the number of calls and _sum the requests.
        self.batch_requests = Histogram(
            f"{PREFIX}_batch_requests",
            "Micro-batching: requests served by one estimator call.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.model_errors = Counter(
            f"{PREFIX}_model_errors",
            "Requests whose validated input the model failed to predict (answered 422).",
            ["model_name", "model_version"],
            registry=r,
        )
        self.model_info = Gauge(
            f"{PREFIX}_model_info",
            "1 for the model this server loaded.",
            ["model_name", "model_version", "flavor"],
            registry=r,
        )
        self.model_ready = Gauge(f"{PREFIX}_model_ready", "1 once the model is loaded and serving.", registry=r)
        self.load_seconds = Gauge(f"{PREFIX}_model_load_seconds", "Seconds the last successful load took.", registry=r)
        self.load_failures = Counter(f"{PREFIX}_model_load_failures", "Failed model load attempts.", registry=r)
        self.shadow_batches = Counter(
            f"{PREFIX}_shadow_batches",
            "Shadow mirroring: batches of sampled rows by outcome (compared, dropped, unreachable, "
            "http_Nxx, invalid, failed).",
            ["outcome"],
            registry=r,
        )
        self.shadow_rows = Counter(
            f"{PREFIX}_shadow_rows",
            "Shadow mirroring: mirrored rows by the candidate's version and whether it agreed with this server.",
            ["candidate_version", "outcome"],
            registry=r,
        )
        self._request_children: dict[tuple[str, str, int], Any] = {}
        self._latency_children: dict[str, Any] = {}
        self._class_children: dict[Any, Any] = {}
        self._model_labels: tuple[str, str] = ("", "")
        self._outputs: Any = None
        self._model_errors: Any = None

    def set_model(self, name: str, version: str, flavor: str, load_seconds: float) -> None:
        self.model_info.labels(name, version, flavor).set(1)
        self.model_ready.set(1)
        self.load_seconds.set(load_seconds)
        self._model_labels = (name, version)
        self._outputs = self.outputs.labels(name, version)
        self._model_errors = self.model_errors.labels(name, version)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._request_children[key] = self.requests.labels(route, method, status)
        counter.inc()
        hist = self._latency_children.get(route)
        if hist is None:
            hist = self._latency_children[route] = self.latency.labels(route)
        hist.observe(seconds)

    def count_shadow_batch(self, outcome: str) -> None:
        self.shadow_batches.labels(outcome).inc()

    def count_shadow_rows(self, candidate_version: str, agree: int, disagree: int) -> None:
        self.shadow_rows.labels(candidate_version, "agree").inc(agree)
        self.shadow_rows.labels(candidate_version, "disagree").inc(disagree)

    def count_model_error(self) -> None:
        if self._model_errors is not None:
            self._model_errors.inc()

    def count_predictions(self, labels: list[Any]) -> None:
        if len(labels) == 1:
            label = labels[0]
            self._class_counter(label).inc()
            if isinstance(label, float):
                self._outputs.observe(label)
            return
        if labels and isinstance(labels[0], float):
            self._class_counter(labels[0]).inc(len(labels))
            observe = self._outputs.observe
            for value in labels:
                observe(value)
            return
        tally: dict[Any, int] = {}
        for label in labels:
            tally[label] = tally.get(label, 0) + 1
        for label, count in tally.items():
            self._class_counter(label).inc(count)

    def _class_counter(self, label: Any) -> Any:
        # Regressor outputs are continuous: counting them per value would explode cardinality.
        key = label if isinstance(label, str | int | bool) else ""
        child = self._class_children.get(key)
        if child is None:
            child = self._class_children[key] = self.predictions.labels(*self._model_labels, str(key))
        return child

    def add_drift(self, snapshot: Callable[[], DriftSnapshot | None]) -> None:
        self.registry.register(_DriftCollector(snapshot, lambda: self._model_labels))


class _DriftCollector(Collector):
    """Computes PSI at scrape time, so gauges are fresh without any background task.

    Every drift series carries the model's name and version: the operator's retrain loop reads
    these gauges from each pod's /metrics and must skip pods still serving another version.
    """

    def __init__(self, snapshot: Callable[[], DriftSnapshot | None], model: Callable[[], tuple[str, str]]) -> None:
        self._snapshot = snapshot
        self._model = model

    def describe(self) -> list[Any]:
        return []  # unknown until the model loads; skip auto-describe at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snap = self._snapshot()
        if snap is None:
            return
        model = list(self._model())
        labels = ["model_name", "model_version"]
        psi = GaugeMetricFamily(
            f"{PREFIX}_feature_drift_psi",
            "PSI of the recent input window against the training profile, per feature.",
            labels=[*labels, "feature"],
        )
        for feature, value in snap.features.items():
            psi.add_metric([*model, feature], value)
        yield psi
        for name, help_text, value in (
            ("drift_score", "Mean per-feature PSI (the retrain trigger).", snap.score),
            ("drift_window_size", "Rows currently in the drift window.", snap.window_size),
            ("drift_window_capacity", "Maximum rows kept in the drift window.", snap.capacity),
        ):
            gauge = GaugeMetricFamily(f"{PREFIX}_{name}", help_text, labels=labels)
            gauge.add_metric(model, value)
            yield gauge
