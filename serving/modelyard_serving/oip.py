"""Open Inference Protocol v2 (the KServe / Triton / MLServer REST API) over the same model."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response
from starlette.types import Receive, Scope

from . import __version__
from .errors import InvalidInput, ModelNotFound
from .model_store import LoadedModel, Prediction
from .runtime import Runtime
from .schemas import ErrorResponse, InferenceRequest, InferenceResponse, ModelMetadata, request_body
from .tensors import rows_from_infer_body
from .transport import JSON, ApiKeyCheck, JsonHandler, dumps, json_response, read_body
from .validation import parse_json

_MODEL = "/v2/models/{model_name}"
_VERSION = "/v2/models/{model_name}/versions/{model_version}"
INFER_PATHS = (f"{_MODEL}/infer", f"{_VERSION}/infer")
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in (401, 404, 413, 422, 503)}


def _check_served(runtime: Runtime, name: str, version: str | None) -> None:
    """404 for any model (or version) other than the one this server was started for."""
    expected = runtime.expected_name
    if name != expected:
        raise ModelNotFound(f"model {name!r} is not served here (this server serves {expected!r})")
    model = runtime.model
    if version is not None and model is not None and version != model.version:
        raise ModelNotFound(f"version {version!r} of {name!r} is not served here (serving version {model.version!r})")


def infer_handler(runtime: Runtime, auth: ApiKeyCheck, max_body: int) -> JsonHandler:
    async def infer(scope: Scope, receive: Receive) -> bytes:
        auth(scope)
        params = scope["path_params"]
        _check_served(runtime, params["model_name"], params.get("model_version"))
        model = runtime.require_model()
        payload = parse_json(await read_body(scope, receive, max_body))
        rows = rows_from_infer_body(payload, model.inputs)
        result = await runtime.predict(model, rows)
        return dumps(_infer_response(model, result, payload))

    return infer


def build_oip_router(runtime: Runtime, auth: ApiKeyCheck, infer: JsonHandler) -> APIRouter:
    """Everything under /v2 except serving ``infer``, which the raw routes do (see transport.py);
    the infer operations here describe it in OpenAPI."""
    router = APIRouter(tags=["open inference protocol v2"])

    @router.get("/v2", summary="Server metadata")
    async def server_metadata() -> Response:
        return json_response({"name": "modelyard-serving", "version": __version__, "extensions": []})

    @router.get("/v2/health/live", summary="Server liveness")
    async def live() -> Response:
        return json_response({"live": True})

    @router.get("/v2/health/ready", summary="Server readiness (model loaded)")
    async def ready() -> Response:
        is_ready = runtime.model is not None
        return json_response({"ready": is_ready}, 200 if is_ready else 503)

    def model_ready(name: str, version: str | None) -> Response:
        _check_served(runtime, name, version)
        is_ready = runtime.model is not None
        return json_response({"name": name, "ready": is_ready}, 200 if is_ready else 503)

    def model_metadata(request: Request, name: str, version: str | None) -> Response:
        auth(request.scope)
        _check_served(runtime, name, version)
        return json_response(_metadata(runtime.require_model()))

    async def documented_infer(request: Request) -> Response:
        return Response(await infer(request.scope, request.receive), media_type=JSON)

    # Two paths each (with and without /versions/{v}); separate functions keep the OpenAPI
    # parameters exact instead of an optional model_version query parameter.
    @router.get(f"{_MODEL}/ready", summary="Model readiness", responses=_ERRORS)
    async def ready_latest(model_name: str) -> Response:
        return model_ready(model_name, None)

    @router.get(f"{_VERSION}/ready", summary="Model version readiness", responses=_ERRORS)
    async def ready_version(model_name: str, model_version: str) -> Response:
        return model_ready(model_name, model_version)

    meta: dict[str, Any] = {"response_model": ModelMetadata, "responses": _ERRORS}

    @router.get(_MODEL, summary="Model metadata", **meta)
    async def metadata_latest(model_name: str, request: Request) -> Response:
        return model_metadata(request, model_name, None)

    @router.get(_VERSION, summary="Model version metadata", **meta)
    async def metadata_version(model_name: str, model_version: str, request: Request) -> Response:
        return model_metadata(request, model_name, model_version)

    docs: dict[str, Any] = {
        "response_model": InferenceResponse,
        "responses": _ERRORS,
        "openapi_extra": request_body(InferenceRequest),
    }

    @router.post(INFER_PATHS[0], summary="Inference", **docs)
    async def infer_latest(model_name: str, request: Request) -> Response:
        return await documented_infer(request)

    @router.post(INFER_PATHS[1], summary="Inference on a model version", **docs)
    async def infer_version(model_name: str, model_version: str, request: Request) -> Response:
        return await documented_infer(request)

    return router


def _metadata(model: LoadedModel) -> dict[str, Any]:
    outputs = [{"name": "predict", "datatype": _label_datatype(model.classes), "shape": [-1]}]
    if model.has_proba and model.classes is not None:
        outputs.append({"name": "predict_proba", "datatype": "FP64", "shape": [-1, len(model.classes)]})
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": "sklearn",
        "inputs": model.inputs.describe(),
        "outputs": outputs,
    }


def _infer_response(model: LoadedModel, result: Prediction, payload: dict[str, Any]) -> Any:
    n = len(result.predictions)
    outputs: list[dict[str, Any]] = [
        {
            "name": "predict",
            "shape": [n],
            "data": result.predictions,
            "datatype": _label_datatype(result.predictions),
        }
    ]
    if result.probabilities is not None:
        outputs.append(
            {
                "name": "predict_proba",
                "shape": list(result.probabilities.shape),
                "datatype": "FP64",
                "data": result.probabilities.ravel(),
                "parameters": {"classes": model.classes},
            }
        )
    wanted = payload.get("outputs")
    if isinstance(wanted, list) and wanted:
        names = [w.get("name") if isinstance(w, dict) else w for w in wanted]
        unknown = [name for name in names if name not in {o["name"] for o in outputs}]
        if unknown:
            raise InvalidInput(f"unknown output(s) {unknown}; available: predict, predict_proba", field="outputs")
        outputs = [o for o in outputs if o["name"] in names]
    body = {"model_name": model.name, "model_version": model.version, "outputs": outputs}
    if isinstance(payload.get("id"), str):
        body["id"] = payload["id"]
    return body


def _label_datatype(labels: list[Any] | None) -> str:
    if not labels:
        return "FP64"
    if all(type(v) is bool for v in labels):
        return "BOOL"
    if all(type(v) is int for v in labels):
        return "INT64"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in labels):
        return "FP64"
    return "BYTES"
