"""modelyard training entrypoint: train a scikit-learn model from a TrainingRun spec, log it to
MLflow, register and promote it. Run as `python -m modelyard_training` (see docs/contracts.md)."""

__version__ = "0.1.0"
