"""Shadow mirroring: sampled requests reach a real candidate server and agreement is counted,
while the client's answers never depend on the candidate."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient
from modelyard_serving.app import create_app
from modelyard_serving.mirror import agreement
from modelyard_serving.model_store import ModelStore
from prometheus_client.parser import text_string_to_metric_families

from .conftest import IRIS_ROW, serve, settings


@pytest.mark.parametrize(
    ("ours", "theirs", "classifier", "expected"),
    [
        ([0, 1, 2], [0, 1, 2], True, (3, 0)),
        ([0, 1, 2], [0, 2, 2], True, (2, 1)),
        (["a", "b"], ["a", "c"], True, (1, 1)),
        ([0, 1], [0], True, (0, 2)),  # a short answer agrees with nothing
        ([100.0, 0.0], [100.5, 0.0], False, (2, 0)),  # 0.5 % off, and exactly zero
        ([100.0, 10.0], [102.0, 10.0], False, (1, 1)),  # 2 % off > 1 % tolerance
        ([[1.0, 2.0]], [[1.0, 2.5]], False, (0, 1)),  # multi-output: the worst output decides
    ],
)
def test_agreement_by_class_or_relative_error(ours: list, theirs: list, classifier: bool,
                                              expected: tuple[int, int]) -> None:
    assert agreement(np.asarray(ours), theirs, classifier, tolerance=0.01) == expected


@contextmanager
def candidate_server(store: ModelStore) -> Iterator[str]:
    """A real uvicorn server around ``store`` on a loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = create_app(settings(model_uri=store.model_uri), store)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "candidate server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def shadow_counts(client: TestClient) -> dict[tuple[str, ...], float]:
    counts: dict[tuple[str, ...], float] = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for s in family.samples:
            if s.name == "modelyard_serving_shadow_rows_total":
                counts[("rows", s.labels["candidate_version"], s.labels["outcome"])] = s.value
            elif s.name == "modelyard_serving_shadow_batches_total":
                counts[("batches", s.labels["outcome"])] = s.value
    return counts


def wait_for(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_every_sampled_row_is_compared_with_the_candidate(iris_store: ModelStore) -> None:
    with candidate_server(iris_store) as url, serve(iris_store, shadow_url=url, shadow_percent=100) as stable:
        for _ in range(10):
            answer = stable.post("/predict", json={"instances": [IRIS_ROW, [6.7, 3.0, 5.2, 2.3]]})
            assert answer.status_code == 200
        version = answer.json()["modelVersion"]
        wait_for(lambda: shadow_counts(stable).get(("rows", version, "agree"), 0) == 20)
        counts = shadow_counts(stable)
        assert counts[("rows", version, "disagree")] == 0
        # Rows travel in batches: never more requests to the candidate than client requests.
        assert 1 <= counts[("batches", "compared")] <= 10


def test_an_unreachable_candidate_never_touches_the_client(iris_store: ModelStore) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with serve(iris_store, shadow_url=dead, shadow_percent=100) as stable:
        answers = [stable.post("/predict", json={"instances": [IRIS_ROW]}) for _ in range(20)]
        assert {a.status_code for a in answers} == {200}
        wait_for(lambda: shadow_counts(stable).get(("batches", "unreachable"), 0) >= 1)
        counts = shadow_counts(stable)
        assert not [k for k in counts if k[0] == "rows"]


def test_without_a_shadow_url_nothing_is_mirrored(iris_client: TestClient) -> None:
    assert iris_client.post("/predict", json={"instances": [IRIS_ROW]}).status_code == 200
    assert iris_client.app.state.runtime.mirror is None  # type: ignore[attr-defined]
    assert shadow_counts(iris_client) == {}
