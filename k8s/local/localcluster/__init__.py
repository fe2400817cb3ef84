"""Local Kubernetes control plane, local node and MLflow for modelyard's dev loop and tests."""
