"""The FastAPI application: ``create_app(settings, model_store)`` and the non-OIP routes.

Nothing happens at import. The model is loaded by a task the lifespan starts, so the process
answers /healthz immediately and /readyz turns 200 only once the model is in memory.
"""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response
from starlette.types import Receive, Scope

from . import __version__
from .errors import install_error_handlers
from .invocations import PATH as INVOCATIONS_PATH
from .invocations import build_invocations_router, invocations_handler
from .logging import AccessLog
from .model_store import ModelStore
from .oip import INFER_PATHS, build_oip_router, infer_handler
from .runtime import Runtime
from .schemas import (
    DriftResponse,
    ErrorResponse,
    PredictRequest,
    PredictResponse,
    ReadyResponse,
    request_body,
)
from .settings import ServingSettings
from .transport import (
    ApiKeyCheck,
    JsonHandler,
    ObservabilityMiddleware,
    RawRoutes,
    dumps,
    json_response,
    raw_json_route,
    read_body,
)
from .validation import parse_json, rows_from_predict_body

# Newer FastAPI instruments every request with OpenTelemetry when providers are configured and
# checks the global providers on each request to find out. modelyard exports Prometheus metrics
# and its own access log, so that would only duplicate them; it is switched off where it exists.
_FASTAPI_OPTIONS: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters
    else {}
)
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in (401, 413, 422, 503)}


def create_app(settings: ServingSettings, model_store: ModelStore | None = None) -> FastAPI:
    store = model_store or ModelStore(settings.model_uri, name=settings.model_name, version=settings.model_version)
    runtime = Runtime(settings, store)
    app = FastAPI(
        title="modelyard model server",
        version=__version__,
        description="Serves one MLflow-registered scikit-learn model.",
        lifespan=runtime.lifespan,
        **_FASTAPI_OPTIONS,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    access_log = AccessLog() if settings.access_log else None
    # Added first, so it runs inside the observability middleware: metrics and logs still see
    # every request it answers.
    app.add_middleware(RawRoutes, router=app.router)
    app.add_middleware(ObservabilityMiddleware, metrics=runtime.metrics, access_log=access_log)
    auth = ApiKeyCheck(settings.api_key.get_secret_value() if settings.api_key else None)
    predict = predict_handler(runtime, auth, settings.max_body_bytes)
    infer = infer_handler(runtime, auth, settings.max_body_bytes)
    invocations = invocations_handler(runtime, auth, settings.max_body_bytes)
    # The raw inference routes go first so they, not their documented twins, answer requests
    # (routes are tried in order); see transport.py for why they bypass FastAPI's layer.
    app.router.routes.append(raw_json_route("/predict", predict))
    for path in INFER_PATHS:
        app.router.routes.append(raw_json_route(path, infer))
    app.router.routes.append(raw_json_route(INVOCATIONS_PATH, invocations))
    app.include_router(_predict_docs_router(predict))
    app.include_router(build_invocations_router(invocations))
    app.include_router(_health_router(runtime, auth))
    app.include_router(build_oip_router(runtime, auth, infer))
    return app


def _health_router(runtime: Runtime, auth: ApiKeyCheck) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="Liveness: 200 while the process is up")
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @router.get(
        "/readyz",
        summary="Readiness: 200 only once the model is loaded",
        response_model=ReadyResponse,
        responses={503: {"model": ReadyResponse}},
    )
    async def readyz() -> Response:
        store, model = runtime.store, runtime.model
        body: dict[str, Any] = {
            "status": "ready" if model else store.state,
            "modelUri": store.model_uri,
            "modelName": model.name if model else None,
            "modelVersion": model.version if model else None,
            "error": store.error,
            "attempts": store.attempts,
        }
        return json_response(body, 200 if model else 503)

    @router.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # Behind the API key: drift describes the traffic. The operator reads the drift gauges on
    # /metrics instead, which stays open for scraping.
    @router.get(
        "/drift",
        summary="Input drift (PSI) against the training profile",
        response_model=DriftResponse,
        responses={401: {"model": ErrorResponse}},
    )
    async def drift(request: Request) -> Response:
        auth(request.scope)
        return json_response(runtime.drift_report())

    return router


def predict_handler(runtime: Runtime, auth: ApiKeyCheck, max_body: int) -> JsonHandler:
    async def predict(scope: Scope, receive: Receive) -> bytes:
        auth(scope)
        model = runtime.require_model()
        rows = rows_from_predict_body(parse_json(await read_body(scope, receive, max_body)), model.inputs)
        result = await runtime.predict(model, rows)
        body: dict[str, Any] = {
            "modelName": model.name,
            "modelVersion": model.version,
            "predictions": result.predictions,
        }
        if result.probabilities is not None:
            body["classes"] = model.classes
            body["probabilities"] = result.probabilities
            # The predicted class is the argmax, so its probability is the row maximum.
            body["confidences"] = result.probabilities.max(axis=1)
        return dumps(body)

    return predict


def _predict_docs_router(predict: JsonHandler) -> APIRouter:
    """The OpenAPI description of /predict; the raw route registered before it serves requests."""
    router = APIRouter(tags=["inference"])

    @router.post(
        "/predict",
        summary="Predict rows (instances as lists, or inputs as records)",
        response_model=PredictResponse,
        responses=_ERRORS,
        openapi_extra=request_body(PredictRequest),
    )
    async def documented_predict(request: Request) -> Response:
        return Response(await predict(request.scope, request.receive), media_type="application/json")

    return router
