"""Micro-batching: concurrent requests share estimator calls, answers do not change, a lone
client does not wait, and one bad request in a batch fails alone."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import numpy as np
import pytest
from modelyard_serving.app import create_app
from modelyard_serving.batching import COMPANY_CREDIT, PROBE_EVERY, MicroBatcher
from modelyard_serving.errors import PredictionFailed
from modelyard_serving.model_store import ModelStore, Prediction

from .conftest import IRIS_ROW, Registry, settings


class Recorder:
    """predict_rows around the real iris model, recording how many rows each call had."""

    def __init__(self, store: ModelStore, refuse_negative: bool = False) -> None:
        assert store.model is not None
        self.model = store.model
        self.calls: list[int] = []
        self.refuse_negative = refuse_negative

    def __call__(self, rows: np.ndarray) -> Prediction:
        self.calls.append(len(rows))
        if self.refuse_negative and (rows < 0).any():
            raise PredictionFailed("negative measurements")
        return self.model.predict(rows)


def iris_rows(registry: Registry, n: int) -> list[np.ndarray]:
    data = registry.iris_data.to_numpy(np.float64)
    return [data[i % len(data) : i % len(data) + 1] for i in range(n)]


async def concurrently(batcher: MicroBatcher, rows: list[np.ndarray]) -> list[Any]:
    return await asyncio.gather(*(batcher.predict(r) for r in rows), return_exceptions=True)


async def find_company(batcher: MicroBatcher, registry: Registry) -> None:
    """A burst long enough for the periodic probe to find others waiting: batching mode on."""
    await concurrently(batcher, iris_rows(registry, 2 * PROBE_EVERY))


def test_concurrent_requests_share_estimator_calls_and_get_their_own_answers(
    iris_store: ModelStore, registry: Registry
) -> None:
    recorder = Recorder(iris_store)
    batcher = MicroBatcher(recorder, max_rows=64)
    rows = iris_rows(registry, 150)

    async def run() -> list[Any]:
        await find_company(batcher, registry)
        recorder.calls.clear()
        return await concurrently(batcher, rows)

    results = asyncio.run(run())
    assert len(recorder.calls) < len(rows) / 10, recorder.calls
    assert sum(recorder.calls) == len(rows) and max(recorder.calls) <= 64
    for request_rows, result in zip(rows, results, strict=True):
        alone = iris_store.model.predict(request_rows)  # type: ignore[union-attr]
        assert result.predictions == alone.predictions
        np.testing.assert_allclose(result.probabilities, alone.probabilities, rtol=1e-12)


def test_batches_stop_at_max_rows_and_big_requests_go_alone(iris_store: ModelStore, registry: Registry) -> None:
    recorder = Recorder(iris_store)
    batcher = MicroBatcher(recorder, max_rows=8)
    data = registry.iris_data.to_numpy(np.float64)
    requests = [data[:3], data[3:6], data[6:9], data[9:30], data[30:32]]

    async def run() -> list[Any]:
        await find_company(batcher, registry)
        recorder.calls.clear()
        return await concurrently(batcher, requests)

    results = asyncio.run(run())
    # 3+3 fit, a third 3 would exceed 8 and opens the next batch; 21 rows go alone.
    assert sorted(recorder.calls) == sorted([6, 21, 5])
    assert [len(r.predictions) for r in results] == [3, 3, 3, 21, 2]


def test_one_refused_request_fails_alone(iris_store: ModelStore, registry: Registry) -> None:
    recorder = Recorder(iris_store, refuse_negative=True)
    batcher = MicroBatcher(recorder, max_rows=64)
    rows = iris_rows(registry, 10)
    rows[4] = np.array([[-1.0, 3.0, 1.0, 0.2]])

    async def run() -> list[Any]:
        await find_company(batcher, registry)
        return await concurrently(batcher, rows)

    results = asyncio.run(run())
    assert isinstance(results[4], PredictionFailed)
    assert all(isinstance(r, Prediction) for i, r in enumerate(results) if i != 4)


def test_a_lone_client_never_waits_for_company(iris_store: ModelStore, registry: Registry) -> None:
    """One request at a time completes without yielding to the event loop, except the
    periodic probe, and a burst of batches is forgotten after COMPANY_CREDIT lone ones."""
    recorder = Recorder(iris_store)
    batcher = MicroBatcher(recorder, max_rows=64)
    row = np.array([IRIS_ROW])

    def finishes_without_yielding() -> bool:
        coroutine = batcher.predict(row)
        try:
            coroutine.send(None)
        except StopIteration:
            return True
        coroutine.close()
        return False

    async def run() -> tuple[list[bool], list[bool]]:
        lone = [finishes_without_yielding() for _ in range(3 * PROBE_EVERY)]
        await concurrently(batcher, [row] * 20)
        after_burst = []
        for _ in range(COMPANY_CREDIT + 2):
            after_burst.append(finishes_without_yielding())
            if not after_burst[-1]:
                await batcher.predict(row)  # lone again: its batch has no company
        return lone, after_burst

    lone, after_burst = asyncio.run(run())
    assert lone.count(False) == 3  # only the probes
    assert after_burst[0] is False and after_burst[-1] is True


def test_a_cancelled_leader_does_not_strand_the_others(iris_store: ModelStore, registry: Registry) -> None:
    recorder = Recorder(iris_store)
    batcher = MicroBatcher(recorder, max_rows=64, max_delay=0.05)  # a delay: always batches
    rows = iris_rows(registry, 5)

    async def run() -> list[Any]:
        tasks = [asyncio.create_task(batcher.predict(r)) for r in rows]
        await asyncio.sleep(0)  # every request has joined the leader's batch
        tasks[0].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(run())
    assert isinstance(results[0], asyncio.CancelledError)
    assert all(isinstance(r, Prediction) for r in results[1:])
    assert recorder.calls == [5]


@pytest.mark.parametrize("max_batch_size", [64, 1])
def test_concurrent_http_requests_answer_as_sequential_ones(
    iris_store: ModelStore, registry: Registry, max_batch_size: int
) -> None:
    """Through the whole app: /predict, /invocations and OIP infer under concurrency answer
    exactly what they answer one at a time; the batch histogram shows the sharing."""
    app = create_app(settings(model_uri=iris_store.model_uri, max_batch_size=max_batch_size), iris_store)
    assert iris_store.model is not None
    app.state.runtime.activate(iris_store.model)
    data = registry.iris_data.to_numpy(np.float64).tolist()
    requests = []
    for i, row in enumerate(data[:90]):
        if i % 3 == 0:
            requests.append(("/predict", {"instances": [row]}))
        elif i % 3 == 1:
            requests.append(("/invocations", {"dataframe_split": {"data": [row]}}))
        else:
            tensor = {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": row}
            requests.append(("/v2/models/iris/infer", {"inputs": [tensor]}))

    async def run() -> tuple[list[httpx.Response], list[httpx.Response], str]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            one_by_one = [await client.post(path, json=body) for path, body in requests]
            together = await asyncio.gather(*(client.post(path, json=body) for path, body in requests))
            metrics = (await client.get("/metrics")).text
        return one_by_one, list(together), metrics

    one_by_one, together, metrics = asyncio.run(run())
    for alone, shared in zip(one_by_one, together, strict=True):
        assert alone.status_code == shared.status_code == 200, shared.text
        assert_same_answer(alone.json(), shared.json())
    calls = _sample(metrics, "modelyard_serving_batch_requests_count")
    served = _sample(metrics, "modelyard_serving_batch_requests_sum")
    if max_batch_size == 1:
        assert calls == served == 0  # off: every request predicts alone, nothing is batched
    else:
        assert served == 2 * len(requests)
        assert calls < served * 0.75


def assert_same_answer(alone: Any, shared: Any) -> None:
    """Equal, floats up to rounding: BLAS may sum a stacked matrix in another order."""
    if isinstance(alone, dict):
        assert alone.keys() == shared.keys()
        for key in alone:
            assert_same_answer(alone[key], shared[key])
    elif isinstance(alone, list):
        assert len(alone) == len(shared)
        for a, b in zip(alone, shared, strict=True):
            assert_same_answer(a, b)
    elif isinstance(alone, float):
        assert shared == pytest.approx(alone, rel=1e-9, abs=1e-15)
    else:
        assert alone == shared


def _sample(metrics: str, name: str) -> float:
    return next(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(name + " "))
