"""The termination message: contract shape, compact JSON, < 4 KiB."""

from __future__ import annotations

import json
from pathlib import Path

from modelyard_training.errors import DatasetUnavailable, InvalidHyperparameters
from modelyard_training.result import MAX_BYTES, TrainingResult, encode, failure_message, write_termination_message


def test_success_shape() -> None:
    result = TrainingResult("r1", "7", "iris", "3", {"accuracy": 0.97}, True, "champion", None)
    assert json.loads(encode(result.message())) == {
        "ok": True,
        "runId": "r1",
        "experimentId": "7",
        "modelName": "iris",
        "version": "3",
        "metrics": {"accuracy": 0.97},
        "promoted": True,
        "alias": "champion",
        "trial": None,
        "stage": None,
        "promotion": None,
    }


def test_failure_shape() -> None:
    message = failure_message(DatasetUnavailable("spec.dataset.uri: nope"))
    assert message == {"ok": False, "reason": "DatasetUnavailable", "message": "spec.dataset.uri: nope"}


def test_long_failure_message_is_truncated_under_the_cap() -> None:
    text = encode(failure_message(InvalidHyperparameters("é" * 10_000)))
    assert len(text.encode()) <= MAX_BYTES
    decoded = json.loads(text)
    assert decoded["reason"] == "InvalidHyperparameters" and decoded["message"].endswith("…(truncated)")


def test_metrics_are_dropped_until_it_fits() -> None:
    metrics = {f"metric_{i:04d}": i / 7 for i in range(400)}
    text = encode(TrainingResult("r", "1", "m", "1", metrics).message())
    decoded = json.loads(text)
    assert len(text.encode()) <= MAX_BYTES
    assert 0 < len(decoded["metrics"]) < 400 and decoded["ok"] is True


def test_write_reports_unwritable_paths(tmp_path: Path) -> None:
    target = tmp_path / "termination-log"
    assert write_termination_message({"ok": True}, target)
    assert json.loads(target.read_text()) == {"ok": True}
    assert not write_termination_message({"ok": True}, tmp_path / "missing-dir" / "log")
