"""HTTP plumbing shared by the routes: bounded body reads, API-key checks, JSON responses, and
the raw ASGI endpoint that serves the inference routes.

The inference routes (``/predict``, OIP ``infer``) are served by :class:`RawJsonEndpoint`, a
plain ASGI app mounted as a Starlette ``Route`` ahead of the documented FastAPI routes.
FastAPI's per-request machinery (dependency solving, the ``Request``/``Response`` objects, the
exit-stack and exception wrappers) costs more than validating and predicting a single iris
row; going around it is what lets the full server (validation, metrics, drift, access log)
outrun a bare FastAPI endpoint that only calls ``predict_proba``. Everything else about the
request still happens: the middleware stack, routing, and the exception handlers in errors.py.

:class:`RawRoutes` then goes around Starlette's routing too for the exact-path ones
(``/predict``, ``/invocations``): matching eight route regexes, FastAPI's exit stack and the
exception middleware cost ~30 us a request, more than parsing, validating, metrics and drift
together. It dispatches only to the route the router itself would pick, so the routes stay the
single source of truth.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.responses import Response
from starlette.routing import Match, Route, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import InvalidInput, PayloadTooLarge, ServingError, Unauthorized, UnsupportedMediaType, error_response
from .logging import AccessLog
from .metrics import ServingMetrics

JSON = "application/json"
_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY

# Where raw endpoints leave their route template for the metrics label.
ROUTE_KEY = "modelyard.route"
# Reads the request from (scope, receive) and returns the encoded 200 response body.
JsonHandler = Callable[[Scope, Receive], Awaitable[bytes]]


def dumps(content: Any) -> bytes:
    """orjson with numpy support: arrays are written directly, without .tolist()."""
    return orjson.dumps(content, option=_DUMPS_OPTIONS)


def json_response(content: Any, status_code: int = 200) -> Response:
    return Response(dumps(content), status_code, media_type=JSON)


def header(scope: Scope, name: bytes) -> str | None:
    """One request header (``name`` lower-case); ASGI servers deliver names lower-cased."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def require_json(scope: Scope) -> None:
    """415 unless the request says its body is JSON (``application/json``, any parameters)."""
    declared = header(scope, b"content-type")
    if declared == JSON:  # what clients send nearly always
        return
    media_type = (declared or "").partition(";")[0].strip().lower()
    if media_type != JSON:
        got = f"got {declared!r}" if declared else "none was sent"
        raise UnsupportedMediaType(f"Content-Type must be {JSON} ({got})", field="content-type")


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes.

    Content-Length is checked first so an honest oversized request is refused before it is
    read; the received size is checked too because chunked bodies (or a lying header) carry no
    trustworthy length.
    """
    declared = header(scope, b"content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise InvalidInput("Content-Length is not an integer", field="content-length") from None
        if length > limit:
            raise PayloadTooLarge(f"body of {length} bytes exceeds the {limit}-byte limit")
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):  # the common case: the whole body in one message
        if len(body) > limit:
            raise PayloadTooLarge(f"body exceeds the {limit}-byte limit")
        return body
    chunks, size = [body], len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidInput("client disconnected before sending the whole body", field="body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body exceeds the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


class ApiKeyCheck:
    """Accepts ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``; a no-op without a key."""

    def __init__(self, key: str | None) -> None:
        self._key = key.encode() if key else None

    def __call__(self, scope: Scope) -> None:
        if self._key is None:
            return
        presented = header(scope, b"x-api-key")
        if presented is None:
            scheme, _, token = (header(scope, b"authorization") or "").partition(" ")
            presented = token.strip() if scheme.lower() == "bearer" else None
        if presented is None:
            raise Unauthorized("missing API key: send X-API-Key or Authorization: Bearer")
        # Constant-time comparison so response timing does not leak the key prefix.
        if not hmac.compare_digest(presented.encode(), self._key):
            raise Unauthorized("invalid API key")


class RawJsonEndpoint:
    """ASGI app answering 200 with the bytes ``handler`` returns, or a :class:`ServingError` as
    the response errors.py's handler would make of it (this endpoint may be reached without the
    exception middleware, see :class:`RawRoutes`); anything else propagates to the app's
    handlers as from a FastAPI route. A class instance rather than a function, because
    Starlette wraps plain functions in its Request/Response layer."""

    def __init__(self, path: str, handler: JsonHandler) -> None:
        self.path = path
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[ROUTE_KEY] = self.path  # FastAPI sets scope["route"] only for its own routes
        try:
            body = await self.handler(scope, receive)
        except ServingError as exc:
            await error_response(exc)(scope, receive, send)
            return
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def raw_json_route(path: str, handler: JsonHandler) -> Route:
    return Route(path, RawJsonEndpoint(path, handler), methods=["POST"], include_in_schema=False)


class RawRoutes:
    """Pure ASGI middleware sending ``POST`` requests for an exact raw-route path straight to its
    :class:`RawJsonEndpoint`, past Starlette's routing, FastAPI's exit stack and the exception
    middleware; every other request goes on down the stack unchanged.

    The table is built with the stack (Starlette builds it at the first request), by asking each
    route in order whether it matches, as the router does: a path is taken over only when the
    router would pick that same raw route for it.
    """

    def __init__(self, app: ASGIApp, *, router: Router) -> None:
        self.app = app
        self.endpoints = _exact_raw_endpoints(router)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A root_path changes what the router matches against: leave those requests to it.
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            endpoint = self.endpoints.get(scope["path"])
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _exact_raw_endpoints(router: Router) -> dict[str, RawJsonEndpoint]:
    found: dict[str, RawJsonEndpoint] = {}
    for route in router.routes:
        endpoint = getattr(route, "endpoint", None)
        if not isinstance(endpoint, RawJsonEndpoint) or "{" in endpoint.path:
            continue
        probe: Scope = {"type": "http", "path": endpoint.path, "method": "POST", "root_path": ""}
        chosen = next((r for r in router.routes if r.matches(probe)[0] is Match.FULL), None)
        if chosen is route:
            found[endpoint.path] = endpoint
    return found


class ObservabilityMiddleware:
    """In-flight gauge, request count and latency by route *template* (bounded label
    cardinality), and the access log. Plain ASGI rather than BaseHTTPMiddleware, which adds a
    task and a streaming wrapper to every request."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: ServingMetrics,
        access_log: AccessLog | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # stays 500 if the app raises before sending anything

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        metrics = self.metrics
        metrics.in_flight += 1  # only the event loop thread runs this
        try:
            await self.app(scope, receive, send_with_status)
        finally:
            metrics.in_flight -= 1
            elapsed = time.perf_counter() - started
            route = scope.get(ROUTE_KEY) or getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe_request(route, scope["method"], status, elapsed)
            if self.access_log is not None:
                client = scope.get("client")
                self.access_log(scope["method"], scope["path"], route, status, elapsed, client[0] if client else None)
