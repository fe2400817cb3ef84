"""Server settings, read from ``MODELYARD_*`` environment variables (see docs/contracts.md)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServingSettings(BaseSettings):
    """Everything the model server can be configured with.

    MLflow itself is located through the standard ``MLFLOW_TRACKING_URI`` (and credential)
    variables, which mlflow reads on its own.
    """

    # protected_namespaces=(): our fields are legitimately called model_*.
    model_config = SettingsConfigDict(env_prefix="MODELYARD_", extra="ignore", protected_namespaces=())

    model_uri: str = Field(
        default="",
        description="Model to serve, e.g. models:/iris/3 (any URI mlflow can download).",
    )
    model_name: str | None = Field(
        default=None, description="Name reported to clients; parsed from model_uri when unset."
    )
    model_version: str | None = Field(
        default=None, description="Version reported to clients; parsed from model_uri when unset."
    )
    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=1, le=65535)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1, description="413 above this size.")
    api_key: SecretStr | None = Field(
        default=None, description="When set, inference routes need X-API-Key or a Bearer token."
    )
    drift_window: int = Field(default=10_000, ge=0, description="Rows kept for drift; 0 turns drift tracking off.")
    max_batch_size: int = Field(
        default=64,
        ge=1,
        description=(
            "Micro-batching: concurrent requests share one estimator call of up to this many rows; "
            "1 turns it off (every request predicts alone)."
        ),
    )
    max_batch_delay_ms: float = Field(
        default=0.0,
        ge=0,
        le=1000,
        description=(
            "How long the first request of a batch may wait for others to join. 0: never wait, "
            "batch only the requests already queued together."
        ),
    )
    log_level: str = "INFO"
    access_log: bool = Field(default=True, description="One JSON line per request on stderr.")
    shadow_url: str | None = Field(
        default=None,
        description=(
            "Shadow rollouts: base URL of the candidate to mirror sampled requests to (set by "
            "the operator on stable pods); unset turns mirroring off."
        ),
    )
    shadow_percent: float = Field(default=10.0, gt=0, le=100, description="Share of requests mirrored.")
    shadow_tolerance: float = Field(
        default=0.01, ge=0, description="Regressors: relative error within which outputs agree."
    )
    shadow_timeout_seconds: float = Field(default=2.0, gt=0, description="Timeout of one mirrored request.")
    load_retry_max_seconds: float = Field(
        default=60.0,
        ge=0,
        description=(
            "A failed load is retried with backoff up to this delay, so a registry outage at "
            "start-up heals by itself; 0 means try once and stay not-ready."
        ),
    )
