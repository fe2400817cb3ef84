"""Schemathesis fuzzing of the inference API from the server's own OpenAPI, in-process (ASGI),
against a real iris model: no generated request may produce a server error (5xx).

The app's lifespan runs (TestClient context), so the model is loaded and readiness is true; a
503 here would be a real failure, not a start-up artefact.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from modelyard_serving.app import create_app
from modelyard_serving.model_store import ModelStore

from .conftest import settings as serving_settings

# Inference and its metadata: /predict, /invocations and every Open Inference Protocol v2 route.
FUZZED = r"^/(predict|invocations|v2)"
MAX_EXAMPLES = 150
CASES: dict[str, int] = {}


@pytest.fixture(scope="module")
def fuzz_app(iris_store: ModelStore) -> Iterator[FastAPI]:
    app = create_app(serving_settings(model_uri=iris_store.model_uri), iris_store)
    with TestClient(app) as client:  # runs the lifespan: the model is in memory
        assert client.get("/readyz").status_code == 200
        yield app


@pytest.fixture(scope="module")
def api(fuzz_app: FastAPI) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_app).include(path_regex=FUZZED)


def _fuzz(operation: Any) -> None:
    # Driven through hypothesis directly: schemathesis' pytest plugin does not support this
    # pytest's node API, and one test per run keeps the count in one place.
    @given(case=operation.as_strategy())
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        response = case.call()
        key = f"{case.method} {case.path}"
        CASES[key] = CASES.get(key, 0) + 1
        assert response.status_code < 500, f"{key}: {response.status_code} {response.text[:500]}"

    run()


def test_no_server_errors_and_every_inference_route_is_reached(api: Any, request: pytest.FixtureRequest) -> None:
    CASES.clear()
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 9
    for operation in operations:
        _fuzz(operation)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    total = sum(CASES.values())
    if reporter is not None:
        reporter.write_line(f"\nschemathesis: {total} cases, 0 server errors: {dict(sorted(CASES.items()))}")
    routes = {key.split(" ", 1)[1] for key in CASES}
    assert {"/predict", "/invocations"} <= routes
    assert {"/v2", "/v2/models/{model_name}/infer", "/v2/models/{model_name}/versions/{model_version}/infer"} <= routes
