"""Failures the entrypoint reports, each tied to the exit code and reason in docs/contracts.md.

The exit code is what the Job's podFailurePolicy acts on: 2 and 3 fail the Job at once (retrying
cannot fix a bad spec or a missing dataset), 4 is retried per backoffLimit (MLflow may come back),
1 is everything unexpected.
"""

from __future__ import annotations

from typing import ClassVar

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INVALID = 2
EXIT_DATASET = 3
EXIT_MLFLOW = 4


class TrainingFailure(Exception):
    """Base for failures with a contract reason; the message is shown to the user as is."""

    reason: ClassVar[str] = "TrainingError"
    exit_code: ClassVar[int] = EXIT_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidConfig(TrainingFailure):
    reason = "InvalidConfig"
    exit_code = EXIT_INVALID


class InvalidHyperparameters(TrainingFailure):
    reason = "InvalidHyperparameters"
    exit_code = EXIT_INVALID


class DatasetUnavailable(TrainingFailure):
    reason = "DatasetUnavailable"
    exit_code = EXIT_DATASET


class MLflowUnavailable(TrainingFailure):
    reason = "MLflowUnavailable"
    exit_code = EXIT_MLFLOW


class TrainingError(TrainingFailure):
    reason = "TrainingError"
    exit_code = EXIT_ERROR
