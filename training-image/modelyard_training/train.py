"""The three modes of docs/contracts.md: `single` (train, register, promote), `trial` (one sweep
point, logged but not registered) and `select` (register the best trial once, promote).

Order of checks in every mode: hyperparameters first (no I/O), then MLflow, then the dataset.
Cheap permanent failures come first; checking MLflow before fetching data means a retried pod
can skip the work its earlier attempt already finished.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import mlflow
import mlflow.sklearn
import numpy as np
from mlflow import MlflowClient
from mlflow.data.pandas_dataset import from_pandas
from mlflow.entities.model_registry import ModelVersion
from mlflow.models import infer_signature
from mlflow.models.model import ModelInfo

from .champion import champion_scorer
from .config import RunRef, TrainingConfig, TrainingRunSpec
from .datasets import LoadedDataset, load_dataset, split
from .errors import InvalidConfig, TrainingError
from .estimators import build_estimator, effective_hyperparameters, fit, skops_trusted_types
from .evaluation import confusion_matrix_figure, evaluate
from .profile import build_profile
from .promotion import Decision, promote, record
from .result import TrainingResult
from .sweep import pick_best, trial_params
from .tracking import (
    TAG_MODEL_URI,
    TAG_SELECTED,
    TAG_TRIAL,
    ensure_experiment,
    finished_runs,
    mlflow_guard,
    register,
    run_tags,
    trial_outcomes,
    version_for_run,
)

log = logging.getLogger("modelyard_training")

MAX_PARAM_CHARS = 6000  # MLflow rejects longer param values
INPUT_EXAMPLE_ROWS = 5


@dataclass(frozen=True)
class TrainOutcome:
    run_id: str
    experiment_id: str
    model_uri: str
    metrics: dict[str, float]


def execute(
    config: TrainingConfig, *, trial_index: int | None = None, tracking_uri: str | None = None
) -> TrainingResult:
    if tracking_uri is not None:
        mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient()
    if config.mode == "trial":
        if trial_index is None:
            # A Job without completionMode: Indexed; retrying cannot fix it, hence a config error.
            raise InvalidConfig("JOB_COMPLETION_INDEX: required in mode 'trial' (an Indexed Job sets it)")
        return run_trial(config, client, trial_index)
    if config.mode == "select":
        return run_select(config, client)
    return run_single(config, client)


def run_single(config: TrainingConfig, client: MlflowClient) -> TrainingResult:
    spec, run = config.spec, config.run
    hyperparameters = spec.estimator.hyperparameters
    build_estimator(
        spec.estimator.type, effective_hyperparameters(spec.estimator.type, hyperparameters, spec.dataset.seed)
    )
    with mlflow_guard("checking MLflow"):
        experiment_id = ensure_experiment(client, spec.model.experiment_name)
        existing = version_for_run(client, spec.model.name, run.uid)
    if existing is not None:
        # A retried pod whose earlier attempt registered: reuse, so the run keeps one version.
        log.info(
            "version %s of %s already registered for this TrainingRun; reusing it", existing.version, spec.model.name
        )
        return _finish(config, client, _run_id(existing), experiment_id, str(existing.version), trial=None)
    data = load_dataset(spec.dataset, spec.estimator.task)
    outcome = train_once(spec, hyperparameters, run=run, experiment_id=experiment_id, dataset=data)
    with mlflow_guard("registering the model"):
        version = register(outcome.model_uri, spec.model.name, run, spec.model.tags)
    log.info("registered %s version %s", spec.model.name, version.version)
    return _finish(
        config, client, outcome.run_id, experiment_id, str(version.version), trial=None, metrics=outcome.metrics,
        data=data,
    )


def run_trial(config: TrainingConfig, client: MlflowClient, index: int) -> TrainingResult:
    spec, run = config.spec, config.run
    assert spec.sweep is not None  # config validation requires it in this mode
    params = {**spec.estimator.hyperparameters, **trial_params(spec.sweep, index, spec.dataset.seed)}
    log.info("trial %d: %s", index, params)
    build_estimator(spec.estimator.type, effective_hyperparameters(spec.estimator.type, params, spec.dataset.seed))
    with mlflow_guard("checking MLflow"):
        experiment_id = ensure_experiment(client, spec.model.experiment_name)
        done = [
            r
            for r in finished_runs(client, experiment_id, run.uid, f" and tags.`{TAG_TRIAL}` = '{index}'")
            if TAG_MODEL_URI in r.data.tags
        ]
    if done:
        log.info("trial %d already finished as run %s; reusing it", index, done[0].info.run_id)
        return TrainingResult(
            done[0].info.run_id, experiment_id, spec.model.name, None, dict(done[0].data.metrics), trial=index
        )
    outcome = train_once(spec, params, run=run, experiment_id=experiment_id, trial=index)
    return TrainingResult(outcome.run_id, experiment_id, spec.model.name, None, outcome.metrics, trial=index)


def run_select(config: TrainingConfig, client: MlflowClient) -> TrainingResult:
    spec, run = config.spec, config.run
    assert spec.sweep is not None
    objective = spec.sweep.objective_for(spec.estimator.task)
    with mlflow_guard("reading sweep trials"):
        experiment_id = ensure_experiment(client, spec.model.experiment_name)
        existing = version_for_run(client, spec.model.name, run.uid)
        if existing is not None:
            log.info(
                "version %s of %s already registered for this sweep; reusing it", existing.version, spec.model.name
            )
            trial_tag = client.get_run(_run_id(existing)).data.tags.get(TAG_TRIAL)
            trial = int(trial_tag) if trial_tag is not None else None
            return _finish(config, client, _run_id(existing), experiment_id, str(existing.version), trial=trial)
        outcomes = trial_outcomes(client, experiment_id, run.uid)
    log.info("found %d of %d trials finished", len({o.trial for o in outcomes}), spec.sweep.trials)
    best = pick_best(outcomes, objective)
    if best is None:
        raise TrainingError(
            f"no finished trial of {run.namespace}/{run.name} logged {objective.metric} in experiment "
            f"'{spec.model.experiment_name}'"
        )
    log.info(
        "best trial %d (run %s): %s=%.4g", best.trial, best.run_id, objective.metric, best.metrics[objective.metric]
    )
    with mlflow_guard("registering the best trial"):
        version = register(best.model_uri, spec.model.name, run, spec.model.tags)
        client.set_tag(best.run_id, TAG_SELECTED, "true")
    log.info("registered %s version %s", spec.model.name, version.version)
    return _finish(
        config, client, best.run_id, experiment_id, str(version.version), trial=best.trial, metrics=best.metrics
    )


def train_once(
    spec: TrainingRunSpec,
    params: Mapping[str, Any],
    *,
    run: RunRef,
    experiment_id: str,
    dataset: LoadedDataset | None = None,
    trial: int | None = None,
) -> TrainOutcome:
    """Fit `spec.estimator` with hyperparameters `params` and log params, dataset, metrics,
    confusion matrix, reference profile and model to one MLflow run. Does not register."""
    task = spec.estimator.task
    effective = effective_hyperparameters(spec.estimator.type, params, spec.dataset.seed)
    estimator = build_estimator(spec.estimator.type, effective)
    data = dataset if dataset is not None else load_dataset(spec.dataset, task)
    log.info("dataset %s: %d rows, %d features, target %s", data.name, len(data.frame), len(data.features), data.target)
    parts = split(data, spec.dataset.test_size, spec.dataset.seed, task)
    # Fit on a plain float64 array: predicting on arrays later then emits no feature-name warning.
    x_train, x_test = parts.x_train.to_numpy(np.float64), parts.x_test.to_numpy(np.float64)
    extra_tags = dict(spec.model.tags) | ({TAG_TRIAL: str(trial)} if trial is not None else {})
    run_name = run.name if trial is None else f"{run.name}-trial-{trial}"
    with (
        mlflow_guard("logging the training run"),
        mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=run_tags(run, extra_tags)) as active,
    ):
        mlflow.log_params(_loggable_params(spec, effective, data))
        _log_dataset(data)
        fit(estimator, spec.estimator.type, bool(params), x_train, parts.y_train)
        metrics = evaluate(estimator, task, x_test, parts.y_test)
        log.info("trained %s: %s", spec.estimator.type, ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        if task == "classification":
            figure = confusion_matrix_figure(parts.y_test, estimator.predict(x_test), estimator.classes_)
            mlflow.log_figure(figure, "confusion_matrix.png")
        profile = build_profile(parts.x_train)
        mlflow.log_dict(profile, "reference_profile.json")
        model = _log_model(estimator, parts.x_train, x_train, profile)
        model_uri = str(model.model_uri)
        # After the model and linked to it in the one request: MLflow copies metrics logged
        # before log_model onto the model with a read per metric plus a write (6 more round trips).
        mlflow.log_metrics(metrics, model_id=model.model_id)
        if trial is not None:
            mlflow.set_tag(TAG_MODEL_URI, model_uri)
    log.info("logged run %s", active.info.run_id)
    return TrainOutcome(active.info.run_id, experiment_id, model_uri, metrics)


def _finish(
    config: TrainingConfig,
    client: MlflowClient,
    run_id: str,
    experiment_id: str,
    version: str,
    *,
    trial: int | None,
    metrics: Mapping[str, float] | None = None,
    data: LoadedDataset | None = None,
) -> TrainingResult:
    spec = config.spec
    decision: Decision | None = None
    with mlflow_guard("promoting the version"):
        if metrics is None:
            metrics = client.get_run(run_id).data.metrics
        if spec.promotion is not None:
            scorer = champion_scorer(spec, data)
            decision = promote(client, spec.promotion, spec.model.name, version, metrics, scorer)
            record(client, run_id, decision)
            log.info(decision.message)
    promoted = decision is not None and decision.promoted
    target = spec.promotion if promoted else None
    return TrainingResult(
        run_id, experiment_id, spec.model.name, version, dict(metrics), promoted,
        target.alias if target is not None else None, trial,
        stage=target.stage if target is not None else None,
        promotion=decision.summary() if decision is not None else None,
    )


def _run_id(version: ModelVersion) -> str:
    if not version.run_id:
        raise TrainingError(f"model version {version.version} of {version.name} has no run; cannot report its metrics")
    return str(version.run_id)


def _loggable_params(spec: TrainingRunSpec, hyperparameters: Mapping[str, Any], data: LoadedDataset) -> dict[str, str]:
    params: dict[str, Any] = {"estimator": spec.estimator.type, **hyperparameters}
    dataset = spec.dataset
    params["dataset.source"] = data.source
    params["dataset.target"] = data.target
    if dataset.features:
        params["dataset.features"] = ",".join(dataset.features)
    params["dataset.testSize"] = dataset.test_size
    params["dataset.seed"] = dataset.seed
    params["dataset.rows"] = len(data.frame)
    return {key: str(value)[:MAX_PARAM_CHARS] for key, value in params.items()}


def _log_dataset(data: LoadedDataset) -> None:
    """The dataset input of the run: MLflow's digest of the rows, plus the file's md5 and, for
    DVC, the commit and remote, so a model version's lineage names its exact data."""
    with warnings.catch_warnings():
        # A plain path or "sklearn.datasets.load_x" resolves as a local source with a warning
        # about ambiguity; recording the string is all that is wanted.
        warnings.simplefilter("ignore", UserWarning)
        dataset = from_pandas(data.frame, source=data.source, targets=data.target, name=data.name)
        # Schema inference for the (integer) target column hints about missing values; harmless.
        mlflow.log_input(dataset, context="training", tags=data.lineage or None)


def _log_model(estimator: Any, x_frame: Any, x_array: np.ndarray, profile: dict[str, Any]) -> ModelInfo:
    with warnings.catch_warnings():
        # MLflow checks the input example by predicting on the DataFrame; the estimator was fitted
        # on an array, so scikit-learn warns about feature names. Expected and harmless.
        warnings.filterwarnings("ignore", message="X has feature names")
        # Integer class labels in the output schema are intended; the hint is about inputs.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
        # The signature comes from the DataFrame so it carries column names; outputs from the array.
        signature = infer_signature(x_frame, estimator.predict(x_array))
        info = mlflow.sklearn.log_model(
            estimator,
            name="model",
            signature=signature,
            input_example=x_frame.head(INPUT_EXAMPLE_ROWS),
            metadata={"modelyard_profile": profile},
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
            skops_trusted_types=skops_trusted_types(estimator),
            # Explicit requirements skip MLflow's inference, which loads the model in a
            # subprocess and costs ~15 s per run.
            pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_skops=True),
        )
    return info
