"""Operator settings (env prefix ``MODELYARD_``); see docs/contracts.md, "Operator"."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _default_gpu_tolerations() -> list[dict[str, Any]]:
    return [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


class Settings(BaseSettings):
    """Everything the operator reads from its environment, validated once at startup."""

    model_config = SettingsConfigDict(env_prefix="MODELYARD_", extra="ignore")

    mlflow_tracking_uri: str = "http://mlflow:5000"
    # Pods often reach MLflow by another address than the operator (e.g. in-cluster DNS vs.
    # a port-forward, or the pod bridge IP in the local cluster).
    pod_mlflow_tracking_uri: str | None = None
    mlflow_credentials_secret: str | None = None
    # Base URL of the MLflow UI as people reach it (an ingress, a port-forward), for the links
    # in TrainingRun status. Unset: the tracking URI, which is right when both are the same.
    mlflow_ui_url: str | None = None
    training_image: str = "modelyard-training:0.1.0"
    serving_image: str = "modelyard-serving:0.1.0"
    # The non-root uid/gid every pod runs as: the USER of k8s/images/Dockerfile. Images of
    # your own that run as another uid set this (Pod Security "restricted" needs a numeric one).
    pod_uid: int = Field(default=10001, gt=0)
    gpu_node_selector: dict[str, str] = Field(
        default_factory=lambda: {"nvidia.com/gpu.present": "true"}
    )
    gpu_tolerations: list[dict[str, Any]] = Field(default_factory=_default_gpu_tolerations)
    default_cpu: str = "500m"
    default_memory: str = "1Gi"
    poll_interval: float = Field(default=30.0, gt=0)
    webhook_port: int = 8081
    webhook_secret: SecretStr | None = None
    webhook_url: str | None = None
    webhook_register: bool = False
    metrics_port: int = 9090
    health_port: int = 8080
    # NoDecode: the env value is a plain comma list, not JSON.
    namespaces: Annotated[list[str], NoDecode] = Field(default_factory=list)
    drift_interval: float = Field(default=30.0, gt=0)

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split_namespaces(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("pod_mlflow_tracking_uri", "mlflow_credentials_secret", "webhook_url",
                     "mlflow_ui_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        # Helm renders unset optional values as empty strings.
        return None if value == "" else value

    @property
    def ui_base_url(self) -> str:
        """Where the MLflow UI links in status point: the UI URL, else the tracking URI."""
        return (self.mlflow_ui_url or self.mlflow_tracking_uri).rstrip("/")

    @property
    def pod_tracking_uri(self) -> str:
        """MLflow URI injected into pods: the pod-specific one, else the operator's own."""
        return self.pod_mlflow_tracking_uri or self.mlflow_tracking_uri


@lru_cache(maxsize=1)
def load_settings() -> Settings:
    """Settings from the environment, parsed once per process."""
    return Settings()
