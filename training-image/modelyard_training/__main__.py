"""`python -m modelyard_training`: read the config, run the mode, write the termination message,
exit with the contract code (0 ok, 2 invalid config/hyperparameters, 3 dataset, 4 MLflow, 1 other).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

from .config import parse_config
from .errors import EXIT_OK, InvalidConfig, TrainingError, TrainingFailure
from .result import failure_message, termination_log_path, write_termination_message

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


def apply_http_defaults(environ: MutableMapping[str, str]) -> None:
    for key, value in HTTP_DEFAULTS.items():
        environ.setdefault(key, value)


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
        # Imported here so a config error exits before the (slow) MLflow/scikit-learn imports.
        from .train import execute

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
    apply_http_defaults(os.environ)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s modelyard-training %(message)s", stream=sys.stdout)
    code, message = run(env)
    path = termination_log_path(env)
    if not write_termination_message(message, path):
        log.warning("could not write the termination message to %s", path)
    return code


if __name__ == "__main__":
    sys.exit(main())
