"""modelyard operator: kopf controllers for TrainingRun and ModelDeployment."""

__version__ = "0.1.0"

GROUP = "modelyard.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
FIELD_MANAGER = "modelyard"
