"""Domain errors and the single place where they become HTTP responses.

Every error body has the same shape, ``{"error": "<message>", "code": "<code>"}`` plus
``"field"`` when one input field is to blame. ``error`` is a plain string so the body is also a
valid Open Inference Protocol v2 error.
"""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

log = logging.getLogger("modelyard_serving.errors")


class ServingError(Exception):
    """Base of every error a client can cause or observe; carries its HTTP status."""

    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def headers(self) -> dict[str, str] | None:
        return None


class InvalidInput(ServingError):
    """The request body does not match the model signature (or is not JSON at all)."""

    status_code = 422
    code = "invalid_input"


class PredictionFailed(InvalidInput):
    """The estimator rejected input that passed validation; still the input's fault."""

    code = "prediction_failed"


class PayloadTooLarge(ServingError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(ServingError):
    status_code = 415
    code = "unsupported_media_type"


class Unauthorized(ServingError):
    status_code = 401
    code = "unauthorized"

    def headers(self) -> dict[str, str] | None:
        return {"WWW-Authenticate": 'Bearer realm="modelyard"'}


class ModelNotFound(ServingError):
    status_code = 404
    code = "model_not_found"


class NotReady(ServingError):
    status_code = 503
    code = "not_ready"

    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": "1"}


def error_body(message: str, code: str, field: str | None = None) -> bytes:
    body: dict[str, str] = {"error": message, "code": code}
    if field is not None:
        body["field"] = field
    return orjson.dumps(body)


def error_response(exc: ServingError) -> Response:
    return Response(
        error_body(exc.message, exc.code, exc.field),
        status_code=exc.status_code,
        media_type="application/json",
        headers=exc.headers(),
    )


async def _on_serving_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServingError)
    return error_response(exc)


async def _on_request_validation(_: Request, exc: Exception) -> Response:
    # Only reached by routes that use FastAPI's own validation (path params); keep the shape.
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    field = ".".join(str(p) for p in first.get("loc", ())) or None
    return error_response(InvalidInput(str(first.get("msg", "invalid request")), field=field))


async def _on_http_exception(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return Response(
        error_body(str(exc.detail), code),
        status_code=exc.status_code,
        media_type="application/json",
        headers=exc.headers,
    )


async def _on_unexpected(_: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return Response(
        error_body("internal server error", "internal_error"),
        status_code=500,
        media_type="application/json",
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServingError, _on_serving_error)
    app.add_exception_handler(RequestValidationError, _on_request_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(Exception, _on_unexpected)
