"""The only module that talks to MLflow: registry reads and webhook registration.

Everything here is synchronous (MlflowClient is); callers on the event loop use
``asyncio.to_thread``. Errors are mapped to three typed outcomes so the controller can decide
what to do without knowing MLflow's error codes: the model (or pinned version) does not exist,
the alias/stage points nowhere, or the registry cannot be reached.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Protocol

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from modelyard_operator import metrics

logger = logging.getLogger(__name__)

WEBHOOK_NAME = "modelyard-operator"
WEBHOOK_EVENTS = (
    "model_version.created",
    "model_version_alias.created",
    "model_version_alias.deleted",
)
# MLflow's error codes for "no such thing"; a missing alias comes back as an invalid
# parameter rather than a 404.
_NOT_FOUND_CODES = {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}
_INVALID_CODES = {"INVALID_PARAMETER_VALUE"}


class RegistryError(Exception):
    """Base of the typed outcomes; ``reason`` is the condition reason shown to users."""

    reason = "RegistryError"


class ModelNotFound(RegistryError):
    reason = "ModelNotFound"


class SelectorNotSet(RegistryError):
    """The alias or stage exists as a concept but points at no version right now."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.reason = "AliasNotSet" if kind == "alias" else "StageEmpty"


class RegistryUnavailable(RegistryError):
    reason = "RegistryUnavailable"


class Selector(Protocol):
    """Which version of a model to serve: exactly one of alias, stage or version is set.

    A protocol, so this shared module does not depend on a controller's spec model.
    """

    @property
    def name(self) -> str: ...
    @property
    def alias(self) -> str | None: ...
    @property
    def stage(self) -> str | None: ...
    @property
    def version(self) -> str | None: ...


@dataclass(frozen=True)
class ResolvedVersion:
    name: str
    version: str
    run_id: str | None = None
    source: str | None = None

    @property
    def model_uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True)
class ModelSnapshot:
    """Everything one ``get_registered_model`` call tells about a model's movable pointers.

    One snapshot answers every alias and stage selector of that model, which is what lets the
    watcher poll once per distinct model instead of once per ModelDeployment.
    """

    name: str
    aliases: dict[str, str] = field(default_factory=dict)
    stages: dict[str, ResolvedVersion] = field(default_factory=dict)

    def version_for(self, ref: Selector) -> str:
        """The version ``ref`` selects, or SelectorNotSet (pinned versions pass through)."""
        if ref.version is not None:
            return ref.version
        if ref.alias is not None:
            if ref.alias not in self.aliases:
                raise SelectorNotSet(
                    f"alias {ref.alias!r} is not set on model {self.name!r}", "alias"
                )
            return self.aliases[ref.alias]
        stage = str(ref.stage)
        if stage not in self.stages:
            raise SelectorNotSet(f"no version of model {self.name!r} is in stage {stage}", "stage")
        return self.stages[stage].version


def configure_http(timeout: int = 5, max_retries: int = 1) -> None:
    """Make a dead MLflow fail in seconds instead of minutes.

    MlflowClient's defaults (120 s timeout, 7 retries with exponential backoff) would pin a
    reconcile for many minutes during an outage. The values are read from the environment on
    every request, and this process only talks to MLflow from here, so setting them
    process-wide is safe. Explicit user settings win.
    """
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(timeout))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(max_retries))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0.2")


def _code(error: MlflowException) -> str:
    return str(getattr(error, "error_code", ""))


class Registry:
    """Thin typed wrapper over MlflowClient for the registry reads the operator needs."""

    def __init__(self, tracking_uri: str) -> None:
        configure_http()
        self.tracking_uri = tracking_uri
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def snapshot(self, name: str) -> ModelSnapshot:
        """Aliases and per-stage latest versions of ``name`` in one request."""
        metrics.REGISTRY_REQUESTS.labels(call="get_registered_model").inc()
        try:
            model = self._client.get_registered_model(name)
        except MlflowException as error:
            raise self._map(error, f"registered model {name!r} not found") from error
        except Exception as error:  # connection refused, timeouts, DNS: all "unreachable"
            raise self._unavailable(error) from error
        stages = {
            str(mv.current_stage): _resolved(mv)
            for mv in model.latest_versions or []
            if mv.current_stage in ("Staging", "Production")
        }
        aliases = {str(k): str(v) for k, v in (model.aliases or {}).items()}
        return ModelSnapshot(name=name, aliases=aliases, stages=stages)

    def _model_version(self, name: str, version: str) -> Any:
        metrics.REGISTRY_REQUESTS.labels(call="get_model_version").inc()
        try:
            return self._client.get_model_version(name, version)
        except MlflowException as error:
            raise self._map(error, f"version {version} of model {name!r} not found") from error
        except Exception as error:
            raise self._unavailable(error) from error

    def version(self, name: str, version: str) -> ResolvedVersion:
        """Details (source run) of one version; ModelNotFound if it does not exist."""
        return _resolved(self._model_version(name, version))

    def version_tags(self, name: str, version: str) -> dict[str, str]:
        """Tags of one version (read fresh: unlike the version's source, tags change)."""
        mv = self._model_version(name, version)
        return {str(k): str(v) for k, v in (mv.tags or {}).items()}

    def tag_version(self, name: str, version: str, key: str, value: str) -> None:
        """Set a tag on a version: the operator's one registry write besides revertAlias."""
        metrics.REGISTRY_REQUESTS.labels(call="set_model_version_tag").inc()
        try:
            self._client.set_model_version_tag(name, version, key, value)
        except MlflowException as error:
            raise self._map(error, f"version {version} of model {name!r} not found") from error
        except Exception as error:
            raise self._unavailable(error) from error

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point ``alias`` at ``version`` (rollback.revertAlias only)."""
        metrics.REGISTRY_REQUESTS.labels(call="set_registered_model_alias").inc()
        try:
            self._client.set_registered_model_alias(name, alias, version)
        except MlflowException as error:
            raise self._map(error, f"registered model {name!r} not found") from error
        except Exception as error:
            raise self._unavailable(error) from error

    def ensure_webhook(self, url: str, secret: str | None) -> str:
        """Register (or refresh) the operator's webhook in MLflow; idempotent by URL.

        An existing webhook for the same URL is updated rather than duplicated, because its
        secret cannot be read back and may have been rotated since it was created.
        """
        try:
            existing = self._find_webhook(url)
            events: list[Any] = list(WEBHOOK_EVENTS)
            if existing is None:
                hook = self._client.create_webhook(
                    name=WEBHOOK_NAME, url=url, events=events, secret=secret,
                    description="modelyard operator: wake ModelDeployments on registry changes",
                )
                logger.info("registered MLflow webhook %s -> %s", hook.webhook_id, url)
                return str(hook.webhook_id)
            self._client.update_webhook(
                existing, url=url, events=events, secret=secret, status="ACTIVE"
            )
            logger.info("refreshed MLflow webhook %s -> %s", existing, url)
            return existing
        except MlflowException as error:
            raise self._map(error, "webhook API not available") from error
        except Exception as error:
            raise self._unavailable(error) from error

    def _find_webhook(self, url: str) -> str | None:
        token: str | None = None
        while True:
            page = self._client.list_webhooks(max_results=100, page_token=token)
            for hook in page:
                if hook.url == url:
                    return str(hook.webhook_id)
            token = page.token
            if not token:
                return None

    def _map(self, error: MlflowException, not_found: str) -> RegistryError:
        code = _code(error)
        if code in _NOT_FOUND_CODES:
            return ModelNotFound(not_found)
        if code in _INVALID_CODES:
            return ModelNotFound(f"{not_found}: {error.message}")
        return self._unavailable(error)

    def _unavailable(self, error: Exception) -> RegistryUnavailable:
        metrics.REGISTRY_ERRORS.inc()
        logger.warning("MLflow registry at %s unavailable: %s", self.tracking_uri, error)
        return RegistryUnavailable(f"MLflow registry unavailable: {_short(error)}")


def _resolved(mv: Any) -> ResolvedVersion:
    return ResolvedVersion(
        name=str(mv.name), version=str(mv.version),
        run_id=str(mv.run_id) if mv.run_id else None,
        source=str(mv.source) if mv.source else None,
    )


def _short(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:300]
