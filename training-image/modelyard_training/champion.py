"""The current holder of an alias or stage (the "champion") and its score on the new test split.

The champion is evaluated in the training pod on exactly the split the challenger was scored
on: the same dataset, testSize and seed give the same rows, so the two numbers compare like
with like. A champion that cannot score those rows (other features, another task) is reported
with the reason instead of a number; promotion then refuses, because "better than something we
could not measure" would let a worse model through.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from .catalog import Task
from .config import CompareTo, Stage, TrainingRunSpec
from .datasets import LoadedDataset, Split, load_dataset, split

log = logging.getLogger("modelyard_training")

# MLflow answers a lookup of an unset alias with one of these.
_ALIAS_UNSET_CODES = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}


@dataclass(frozen=True)
class ChampionScore:
    """The champion's metrics on the challenger's test split, or why there are none."""

    version: str
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@contextmanager
def stage_api() -> Iterator[None]:
    """MLflow's stage API is deprecated (still supported in MLflow 3) and warns on every call;
    the user asked for stages, so the warning is noise in their training logs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def stage_holder(client: MlflowClient, model_name: str, stage: Stage) -> str | None:
    """The version in ``stage`` (the newest, should several be there), or None."""
    with stage_api():
        versions = client.get_latest_versions(model_name, stages=[stage])
    return str(max(versions, key=lambda v: int(v.version)).version) if versions else None


def current_holder(client: MlflowClient, model_name: str, target: CompareTo) -> str | None:
    """The version ``target`` points at right now, or None when it points nowhere."""
    if target.stage is not None:
        return stage_holder(client, model_name, target.stage)
    assert target.alias is not None
    try:
        return str(client.get_model_version_by_alias(model_name, target.alias).version)
    except MlflowException as exc:
        if exc.error_code in _ALIAS_UNSET_CODES:
            return None
        raise


def score_champion(model_name: str, version: str, task: Task, features: list[str], parts: Split) -> ChampionScore:
    """Load version ``version`` and evaluate it on ``parts.x_test``/``parts.y_test``."""
    import mlflow.artifacts
    import mlflow.sklearn
    from mlflow.models import Model

    from .evaluation import evaluate

    uri = f"models:/{model_name}/{version}"
    try:
        # One download for the signature and the model: given the URI, each would resolve it,
        # list the artifacts and download them again (6 more round trips).
        with tempfile.TemporaryDirectory() as tmp:
            local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp)
            signature = Model.load(local).signature
            estimator = mlflow.sklearn.load_model(local)
    except MlflowException as exc:
        return ChampionScore(version, error=f"cannot load {uri}: {exc.message}")
    except Exception as exc:  # noqa: BLE001 - another flavor, a broken artifact: not comparable
        return ChampionScore(version, error=f"cannot load {uri}: {type(exc).__name__}: {exc}")
    columns, problem = _columns(signature, features)
    if problem is not None:
        return ChampionScore(version, error=f"version {version} {problem}")
    if (task == "classification") != hasattr(estimator, "classes_"):
        return ChampionScore(version, error=f"version {version} is not a {task} model")
    x_test = parts.x_test[columns].to_numpy(np.float64)
    try:
        with warnings.catch_warnings():
            # A champion fitted on a DataFrame warns about the array's missing feature names.
            warnings.filterwarnings("ignore", message="X does not have valid feature names")
            metrics = evaluate(estimator, task, x_test, parts.y_test)
    except Exception as exc:  # noqa: BLE001 - e.g. a width mismatch the signature did not reveal
        return ChampionScore(version, error=f"version {version} cannot predict the test split: {exc}")
    shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
    log.info("champion version %s on this test split: %s", version, shown)
    return ChampionScore(version, metrics)


def _columns(signature: object, features: list[str]) -> tuple[list[str], str | None]:
    """The champion's input columns in its own order, or what does not match the new data."""
    inputs = getattr(signature, "inputs", None)
    if inputs is None:
        return features, None
    names = [str(n) for n in inputs.input_names()] if inputs.has_input_names() else []
    if not names:
        # An unnamed tensor signature: only the width can be checked.
        width = sum(int(np.prod([d for d in spec.shape if d != -1] or [1])) for spec in inputs.inputs)
        if width != len(features):
            return [], f"expects {width} features, the new data has {len(features)}"
        return features, None
    missing = [n for n in names if n not in features]
    extra = [f for f in features if f not in names]
    if missing or extra:
        shown = "; ".join(
            part
            for part in (
                f"expects features the new data lacks: {', '.join(missing[:10])}" if missing else "",
                f"was not trained on: {', '.join(extra[:10])}" if extra else "",
            )
            if part
        )
        return [], f"has a signature that does not match the new data ({shown})"
    return names, None


def champion_scorer(spec: TrainingRunSpec, data: LoadedDataset | None = None) -> Callable[[str], ChampionScore]:
    """A scorer for `promotion.promote`: the split is made once, on first use, from ``data`` (the
    dataset this pod already loaded) or by loading the spec's dataset (sweep `select`)."""
    parts: list[tuple[LoadedDataset, Split]] = []

    def score(version: str) -> ChampionScore:
        if not parts:
            loaded = data if data is not None else load_dataset(spec.dataset, spec.estimator.task)
            parts.append((loaded, split(loaded, spec.dataset.test_size, spec.dataset.seed, spec.estimator.task)))
        loaded, test = parts[0]
        return score_champion(spec.model.name, version, spec.estimator.task, loaded.features, test)

    return score
