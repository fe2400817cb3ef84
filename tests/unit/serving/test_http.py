"""Health, readiness, load failures, API keys, body limits, docs and error shapes."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from modelyard_serving.app import create_app
from modelyard_serving.model_store import LoadedModel, ModelStore

from .conftest import IRIS_ROW, Registry, serve, settings, wait_ready

PREDICT = {"instances": [IRIS_ROW]}


class GatedStore(ModelStore):
    """A real store whose load waits until the test opens the gate."""

    def __init__(self, model_uri: str) -> None:
        super().__init__(model_uri)
        self.gate = threading.Event()

    def _load(self, started: float) -> LoadedModel:
        assert self.gate.wait(60)
        return super()._load(started)


def test_not_ready_until_the_model_is_loaded(registry: Registry) -> None:
    store = GatedStore(registry.iris)
    with serve(store) as client:
        assert client.get("/healthz").status_code == 200
        loading = client.get("/readyz")
        assert loading.status_code == 503
        assert loading.json()["status"] == "loading"
        assert client.get("/v2/health/ready").status_code == 503
        assert client.get("/v2/health/live").status_code == 200
        refused = client.post("/predict", json=PREDICT)
        assert refused.status_code == 503
        assert client.post("/invocations", json=PREDICT).status_code == 503
        assert refused.json()["code"] == "not_ready"
        assert refused.headers["retry-after"] == "1"

        store.gate.set()
        wait_ready(client)
        ready = client.get("/readyz").json()
        assert ready["status"] == "ready"
        assert (ready["modelName"], ready["modelVersion"]) == ("iris", "1")
        assert client.post("/predict", json=PREDICT).status_code == 200


@pytest.mark.parametrize(
    ("uri_attr", "expected_error"),
    [("corrupt", ""), (None, "no-such-model")],  # a corrupt file's message depends on the serializer,
)
def test_a_model_that_fails_to_load_never_becomes_ready(
    registry: Registry, uri_attr: str | None, expected_error: str, caplog: pytest.LogCaptureFixture
) -> None:
    uri = getattr(registry, uri_attr) if uri_attr else "models:/no-such-model/1"
    app = create_app(settings(model_uri=uri))
    with TestClient(app) as client:
        assert _wait_for_state(client, "failed"), client.get("/readyz").json()
        response = client.get("/readyz")
        assert response.status_code == 503
        body = response.json()
        assert body["error"] and expected_error in body["error"]
        assert body["attempts"] == 1  # load_retry_max_seconds=0: tried once
        assert client.get("/healthz").status_code == 200  # alive, so Kubernetes does not restart-loop it
        assert client.post("/predict", json=PREDICT).status_code == 503
        assert "modelyard_serving_model_load_failures_total 1.0" in client.get("/metrics").text
        assert "modelyard_serving_model_ready 0.0" in client.get("/metrics").text
    assert any(record.getMessage() == "model load failed" for record in caplog.records)


def _wait_for_state(client: TestClient, state: str, timeout: float = 120.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/readyz").json()["status"] == state:
            return True
        time.sleep(0.05)
    return False


def test_load_is_retried_so_a_transient_failure_heals(registry: Registry) -> None:
    class FlakyStore(ModelStore):
        def _load(self, started: float) -> LoadedModel:
            if self.attempts == 1:
                raise ConnectionError("registry unreachable")
            return super()._load(started)

    app = create_app(settings(model_uri=registry.iris, load_retry_max_seconds=0.05), FlakyStore(registry.iris))
    with TestClient(app) as client:
        wait_ready(client)
        assert client.get("/readyz").json()["attempts"] == 2


@pytest.fixture
def keyed_client(iris_store: ModelStore) -> Iterator[TestClient]:
    with serve(iris_store, api_key="s3cret") as client:
        yield client


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing API key"),
        ({"X-API-Key": "wrong"}, "invalid API key"),
        ({"Authorization": "Bearer wrong"}, "invalid API key"),
        ({"Authorization": "Basic czNjcmV0"}, "missing API key"),
    ],
)
def test_inference_needs_the_api_key(keyed_client: TestClient, headers: dict[str, str], message: str) -> None:
    for method, path, body in [
        ("POST", "/predict", PREDICT),
        ("POST", "/invocations", PREDICT),
        ("POST", "/v2/models/iris/infer", {"inputs": []}),
        ("GET", "/v2/models/iris", None),
        ("GET", "/drift", None),
    ]:
        response = keyed_client.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, (path, response.text)
        assert message in response.json()["error"]
        assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("headers", [{"X-API-Key": "s3cret"}, {"Authorization": "Bearer s3cret"}])
def test_either_header_carries_the_api_key(keyed_client: TestClient, headers: dict[str, str]) -> None:
    assert keyed_client.post("/predict", json=PREDICT, headers=headers).status_code == 200
    assert keyed_client.post("/invocations", json=PREDICT, headers=headers).status_code == 200
    assert keyed_client.get("/drift", headers=headers).json()["available"] is True


@pytest.mark.parametrize(
    "path",
    [
        "/healthz",
        "/readyz",
        "/metrics",
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/iris/ready",
        "/docs",
        "/openapi.json",
    ],
)
def test_probes_metrics_and_docs_stay_open_with_an_api_key(keyed_client: TestClient, path: str) -> None:
    assert keyed_client.get(path).status_code == 200


def test_oversized_body_is_413_by_content_length(iris_store: ModelStore) -> None:
    with serve(iris_store, max_body_bytes=100) as client:
        ok = client.post("/predict", json=PREDICT)
        big = client.post("/predict", json={"instances": [IRIS_ROW] * 10})
    assert ok.status_code == 200
    assert big.status_code == 413
    assert big.json()["code"] == "payload_too_large"
    assert "100-byte limit" in big.json()["error"]


def test_oversized_chunked_body_is_413_by_actual_size(iris_store: ModelStore) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the server must count
        yield b'{"instances": ['
        for _ in range(50):
            yield b"[5.1, 3.5, 1.4, 0.2],"
        yield b"[5.1, 3.5, 1.4, 0.2]]}"

    with serve(iris_store, max_body_bytes=200) as client:
        response = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_a_lying_content_length_is_rejected(iris_client: TestClient) -> None:
    response = iris_client.post("/predict", content=b"{}", headers={"content-length": "abc"})
    assert response.status_code in (400, 422)


def test_openapi_documents_the_request_bodies(iris_client: TestClient) -> None:
    spec = iris_client.get("/openapi.json").json()
    predict = spec["paths"]["/predict"]["post"]
    schema = predict["requestBody"]["content"]["application/json"]["schema"]
    assert {"instances", "inputs"} <= set(schema["properties"])
    assert {"200", "401", "413", "422", "503"} <= set(predict["responses"])
    invocations = spec["paths"]["/invocations"]["post"]
    schema = invocations["requestBody"]["content"]["application/json"]["schema"]
    assert {"dataframe_split", "dataframe_records", "instances", "inputs", "params"} <= set(schema["properties"])
    assert {"200", "401", "413", "415", "422", "503"} <= set(invocations["responses"])
    infer = spec["paths"]["/v2/models/{model_name}/infer"]["post"]
    assert "$defs" not in str(infer["requestBody"])
    assert iris_client.get("/docs").status_code == 200


def test_unknown_routes_and_methods_keep_the_error_shape(iris_client: TestClient) -> None:
    missing = iris_client.get("/nope")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    wrong = iris_client.get("/predict")
    assert wrong.status_code == 405 and wrong.json()["code"] == "method_not_allowed"


def test_inference_is_served_by_the_raw_routes_and_their_documented_twins_agree(iris_store: ModelStore) -> None:
    from modelyard_serving.transport import RawJsonEndpoint

    infer_body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": IRIS_ROW}]}
    answers = []
    for keep_raw in (True, False):
        app = create_app(settings(model_uri=iris_store.model_uri), iris_store)
        raw = [r for r in app.router.routes if isinstance(getattr(r, "endpoint", None), RawJsonEndpoint)]
        assert [r.path for r in raw] == [
            "/predict",
            "/v2/models/{model_name}/infer",
            "/v2/models/{model_name}/versions/{model_version}/infer",
            "/invocations",
        ]
        if not keep_raw:  # what the OpenAPI operations would do if they were the ones routed to
            app.router.routes[:] = [r for r in app.router.routes if r not in raw]
        with TestClient(app) as client:
            answers.append(
                [
                    client.post("/predict", json=PREDICT).json(),
                    client.post("/v2/models/iris/infer", json=infer_body).json(),
                    client.post("/v2/models/iris/versions/1/infer", json=infer_body).json(),
                    client.post("/predict", json={"instances": [[1.0]]}).json(),
                    client.post("/invocations", json={"dataframe_split": {"data": [IRIS_ROW]}}).json(),
                    client.post("/invocations", json={"instances": [[1.0]]}).json(),
                ]
            )
    assert answers[0] == answers[1]
