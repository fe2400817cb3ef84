"""Operator settings (env prefix ``MODELYARD_``); see docs/contracts.md, "Operator"."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Volume sources a TrainingRun may use by default: the ones that stay inside what a namespace's
# own objects give access to. hostPath (the node's filesystem) and inline network volumes
# (nfs, iscsi, ...) are left out; secret volumes are further governed by allow_secret_refs.
DEFAULT_VOLUME_TYPES = (
    "configMap", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected",
    "secret",
)


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
    # Without a secret the receiver would accept forged deliveries; it only starts unsigned
    # when this is set explicitly (otherwise the operator relies on polling alone).
    webhook_insecure: bool = False
    metrics_port: int = 9090
    health_port: int = 8080
    # NoDecode: the env value is a plain comma list, not JSON.
    namespaces: Annotated[list[str], NoDecode] = Field(default_factory=list)
    drift_interval: float = Field(default=30.0, gt=0)
    # Tenant policy (policy.py). Prefixes should end in "/", ":" or "@" so that
    # "registry.example.com/team/" does not also admit "registry.example.com/team-evil/...".
    allowed_image_prefixes: Annotated[list[str], NoDecode] = Field(default_factory=list)
    allowed_volume_types: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_VOLUME_TYPES))
    allow_secret_refs: bool = False
    # Send a server-side apply even when the live child already matches. Off: a resync that
    # changes nothing writes nothing. On only to measure the difference (bench_operator.py).
    always_apply: bool = False

    @field_validator("namespaces", "allowed_image_prefixes", "allowed_volume_types",
                     mode="before")
    @classmethod
    def _split_namespaces(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("pod_mlflow_tracking_uri", "mlflow_credentials_secret", "webhook_url",
                     "mlflow_ui_url", "webhook_secret", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        # Helm renders unset optional values as empty strings.
        return None if value == "" else value

    @field_validator("allowed_image_prefixes")
    @classmethod
    def _prefix_ends_at_a_boundary(cls, value: list[str]) -> list[str]:
        for prefix in value:
            if not prefix.endswith(("/", ":", "@")):
                raise ValueError(f"image prefix {prefix!r} must end with '/', ':' or '@'")
        return value

    @model_validator(mode="after")
    def _webhook_registration_needs_a_receiver(self) -> Settings:
        if self.webhook_register and self.webhook_secret is None and not self.webhook_insecure:
            raise ValueError("MODELYARD_WEBHOOK_REGISTER=true needs MODELYARD_WEBHOOK_SECRET "
                             "(or MODELYARD_WEBHOOK_INSECURE=true to accept unsigned events)")
        return self

    @property
    def webhook_enabled(self) -> bool:
        """Whether the receiver starts: with a secret, or when unsigned is explicitly allowed."""
        return self.webhook_secret is not None or self.webhook_insecure

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
