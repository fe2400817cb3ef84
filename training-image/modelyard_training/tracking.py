"""Everything that talks to MLflow besides the run logging itself: connection defaults, error
mapping, experiments and the registry (idempotent registration). Promotion is in promotion.py."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import mlflow
import requests
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from .config import RunRef
from .errors import MLflowUnavailable, TrainingError, TrainingFailure
from .sweep import TrialOutcome

TAG_NAMESPACE = "modelyard.io/namespace"
TAG_TRAININGRUN = "modelyard.io/trainingrun"
TAG_UID = "modelyard.io/trainingrun-uid"
TAG_TRIAL = "modelyard.io/trial"
# Set on trial runs: the logged model's URI, so `select` registers exactly that model.
TAG_MODEL_URI = "modelyard.io/model-uri"
# Set by `select` on the trial run it registered, for people browsing the experiment.
TAG_SELECTED = "modelyard.io/selected"

_UNAVAILABLE_CODES = {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"}


@contextmanager
def mlflow_guard(action: str) -> Iterator[None]:
    """Map MLflow/transport failures to the contract: unreachable or erroring server -> exit 4."""
    try:
        yield
    except TrainingFailure:
        raise
    except requests.exceptions.RequestException as exc:
        raise MLflowUnavailable(f"{action}: MLflow is unreachable: {exc}") from exc
    except MlflowException as exc:
        # The REST client reports exhausted retries, refused connections and 5xx replies as
        # "API request to <url> failed ..."; those are outages, the rest are real errors.
        if exc.message.startswith("API request to") or exc.error_code in _UNAVAILABLE_CODES:
            raise MLflowUnavailable(f"{action}: {exc.message}") from exc
        raise TrainingError(f"{action}: {exc.message}") from exc


def run_tags(run: RunRef, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {TAG_NAMESPACE: run.namespace, TAG_TRAININGRUN: run.name, TAG_UID: run.uid, **(extra or {})}


def ensure_experiment(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return str(client.create_experiment(name))
        except MlflowException as exc:
            # Parallel sweep trials race to create the experiment; losing the race is fine.
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        raise TrainingError(
            f"spec.model.experiment: experiment '{name}' is deleted in MLflow; restore it or use another name"
        )
    return str(experiment.experiment_id)


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def version_for_run(client: MlflowClient, model_name: str, uid: str) -> ModelVersion | None:
    """The version this TrainingRun already registered, if any: what makes registration
    idempotent across pod retries and reruns of `select`."""
    versions = client.search_model_versions(f"name = {_quoted(model_name)} and tags.`{TAG_UID}` = {_quoted(uid)}")
    return min(versions, key=lambda v: int(v.version)) if versions else None


def register(model_uri: str, model_name: str, run: RunRef, model_tags: Mapping[str, str]) -> ModelVersion:
    tags = {**model_tags, **run_tags(run)}
    version = mlflow.register_model(model_uri, model_name, await_registration_for=60, tags=tags)
    client = MlflowClient()
    for key, value in model_tags.items():
        client.set_registered_model_tag(model_name, key, value)
    return version


def finished_runs(client: MlflowClient, experiment_id: str, uid: str, extra_filter: str = "") -> list[Any]:
    query = f"tags.`{TAG_UID}` = {_quoted(uid)} and attributes.status = 'FINISHED'{extra_filter}"
    runs: list[Any] = []
    token: str | None = None
    while True:
        page = client.search_runs([experiment_id], filter_string=query, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def trial_outcomes(client: MlflowClient, experiment_id: str, uid: str) -> list[TrialOutcome]:
    return [
        TrialOutcome(
            trial=int(r.data.tags[TAG_TRIAL]),
            run_id=r.info.run_id,
            metrics=dict(r.data.metrics),
            model_uri=r.data.tags[TAG_MODEL_URI],
        )
        for r in finished_runs(client, experiment_id, uid)
        if TAG_TRIAL in r.data.tags and TAG_MODEL_URI in r.data.tags
    ]
