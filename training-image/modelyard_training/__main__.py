"""`python -m modelyard_training`: read the config, run the mode, write the termination message,
exit with the contract code (0 ok, 2 invalid config/hyperparameters, 3 dataset, 4 MLflow, 1 other).
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

from .config import parse_config
from .errors import EXIT_OK, InvalidConfig, TrainingError, TrainingFailure
from .result import TrainingResult, failure_message, termination_log_path, write_termination_message

log = logging.getLogger("modelyard_training")

# MLflow's own defaults (7 retries, exponential backoff, 120 s timeout) keep a pod hanging for
# minutes when the server is down. Fail within seconds instead and let the Job's backoffLimit do
# the retrying, where it is visible. Values set in the pod env win. MLflow reads these from the
# process environment on every request, so they are set there, once, by the process entrypoint.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def apply_env_defaults(environ: MutableMapping[str, str]) -> None:
    """HTTP_DEFAULTS plus quieter and cheaper library settings; OpenBLAS reads its own once, at
    import, so this runs before anything imports numpy. Values set in the pod env win here too."""
    for key, value in HTTP_DEFAULTS.items():
        environ.setdefault(key, value)
    # MLflow's run context imports GitPython to tag the commit; the image has no git, so
    # GitPython would print a 15-line warning into every training log.
    environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    # At the end of a run MLflow looks the run up again only to print its URL, which in a pod
    # is the in-cluster service address; our own log line names the run.
    environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # OpenBLAS starts a thread per node core and hands every BLAS call between them. The pod
    # requests half a core by default and the estimators make many tiny calls (L-BFGS on iris:
    # ~240), so the hand-offs cost more than the maths: that fit takes 0.27 CPU-s with threads,
    # 0.05 without. OpenBLAS itself falls back to OMP_NUM_THREADS, so a user's setting is kept.
    environ.setdefault("OPENBLAS_NUM_THREADS", environ.get("OMP_NUM_THREADS", "1"))


def read_config_text(environ: Mapping[str, str]) -> str:
    text = environ.get("MODELYARD_TRAINING_CONFIG")
    if text:
        return text
    path = environ.get("MODELYARD_TRAINING_CONFIG_FILE")
    if not path:
        raise InvalidConfig("set MODELYARD_TRAINING_CONFIG (JSON) or MODELYARD_TRAINING_CONFIG_FILE (a path)")
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise InvalidConfig(f"MODELYARD_TRAINING_CONFIG_FILE: cannot read {path}: {exc.strerror or exc}") from exc


def _trial_index(environ: Mapping[str, str]) -> int | None:
    raw = environ.get("JOB_COMPLETION_INDEX")
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise InvalidConfig(f"JOB_COMPLETION_INDEX: not an integer: {raw!r}") from exc


def _import_training() -> Callable[..., TrainingResult]:
    """Import scikit-learn, MLflow and the rest: most of a small run's CPU time. Called only
    once the config is valid, so a config error exits before paying for it."""
    if "modelyard_training.train" in sys.modules:  # an earlier call in this process (tests)
        from .train import execute

        return execute
    # The collector is paused meanwhile: ~2,600 modules make ~200,000 container objects and next
    # to no garbage, yet trigger full collections of them all (0.13 CPU-s each). Freezing them
    # afterwards keeps the run's own collections, and the one at exit, from scanning them again:
    # ~1 CPU-s less for iris.
    gc.disable()
    try:
        # scikit-learn goes first: skops, the model format, names each of ~900 NumPy/SciPy
        # ufuncs by scanning sys.modules in import order; with MLflow imported first, SciPy sits
        # ~1,300 modules further down that scan (0.7 CPU-s more per run).
        import sklearn.base  # noqa: F401

        from .train import execute
    finally:
        gc.freeze()
        gc.enable()
    return execute


def run(environ: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
    """The whole entrypoint minus process concerns; returns (exit code, termination message)."""
    started = time.monotonic()
    try:
        config = parse_config(read_config_text(environ))
        log.info(
            "config ok: mode=%s run=%s/%s estimator=%s",
            config.mode,
            config.run.namespace,
            config.run.name,
            config.spec.estimator.type,
        )
        tracking_uri = environ.get("MLFLOW_TRACKING_URI")
        if not tracking_uri:
            # Without it MLflow would log to the container filesystem, which vanishes with the pod.
            raise InvalidConfig("MLFLOW_TRACKING_URI is not set")
        execute = _import_training()
        result = execute(config, trial_index=_trial_index(environ), tracking_uri=tracking_uri)
    except TrainingFailure as failure:
        log.error("failed (%s, exit %d): %s", failure.reason, failure.exit_code, failure.message)
        return failure.exit_code, failure_message(failure)
    except Exception as exc:  # the contract's exit 1: report it rather than die with a traceback only
        log.exception("unexpected error")
        unexpected = TrainingError(f"{type(exc).__name__}: {exc}")
        return unexpected.exit_code, failure_message(unexpected)
    log.info(
        "done in %.1fs: run %s version %s promoted=%s",
        time.monotonic() - started,
        result.run_id,
        result.version,
        result.promoted,
    )
    return EXIT_OK, result.message()


def main(environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    apply_env_defaults(os.environ)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s modelyard-training %(message)s", stream=sys.stdout)
    code, message = run(env)
    path = termination_log_path(env)
    if not write_termination_message(message, path):
        log.warning("could not write the termination message to %s", path)
    return code


if __name__ == "__main__":
    sys.exit(main())
