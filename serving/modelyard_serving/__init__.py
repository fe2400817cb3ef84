"""modelyard model server: serves one MLflow-registered scikit-learn model over HTTP."""

__version__ = "0.1.0"
