"""The serving entrypoint's MLflow HTTP defaults: short per-request retries, explicit values win."""

from __future__ import annotations

from modelyard_serving.__main__ import MLFLOW_HTTP_DEFAULTS, apply_mlflow_http_defaults


def test_defaults_fill_gaps_and_never_override() -> None:
    environ = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    apply_mlflow_http_defaults(environ)
    assert environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "5"
    assert environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == MLFLOW_HTTP_DEFAULTS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
    assert int(environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]) <= 2
