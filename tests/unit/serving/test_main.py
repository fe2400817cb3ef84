"""The serving entrypoint's process defaults (explicit values win) and its cheap imports."""

from __future__ import annotations

import gc
import os
import subprocess
import sys

import pytest
from modelyard_serving.__main__ import MLFLOW_HTTP_DEFAULTS, apply_env_defaults, apply_mlflow_http_defaults
from modelyard_serving.imports import frozen_imports


def test_defaults_fill_gaps_and_never_override() -> None:
    environ = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    apply_mlflow_http_defaults(environ)
    assert environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "5"
    assert environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == MLFLOW_HTTP_DEFAULTS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
    assert int(environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]) <= 2


def test_openblas_is_single_threaded_unless_the_pod_says_otherwise() -> None:
    environ: dict[str, str] = {}
    apply_env_defaults(environ)
    assert environ["OPENBLAS_NUM_THREADS"] == "1"
    assert environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"
    assert environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == MLFLOW_HTTP_DEFAULTS["MLFLOW_HTTP_REQUEST_TIMEOUT"]
    environ = {"OMP_NUM_THREADS": "4"}
    apply_env_defaults(environ)
    assert environ["OPENBLAS_NUM_THREADS"] == "4"  # OpenBLAS would follow OMP_NUM_THREADS itself
    environ = {"OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "4"}
    apply_env_defaults(environ)
    assert environ["OPENBLAS_NUM_THREADS"] == "2"


def test_the_entrypoint_imports_numpy_only_after_setting_the_defaults() -> None:
    """OpenBLAS reads its thread count once, when NumPy loads it."""
    code = "import sys, modelyard_serving.__main__; print('numpy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "False"


def test_frozen_imports_pause_the_collector_and_freeze_what_they_imported() -> None:
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    try:
        with frozen_imports():
            assert not gc.isenabled()
            kept = [[i] for i in range(1000)]
        assert gc.isenabled() and gc.get_freeze_count() >= frozen + len(kept)
        gc.disable()  # a caller that paused the collector itself keeps it paused
        with pytest.raises(ImportError), frozen_imports():
            import modelyard_serving.no_such_module  # type: ignore[import-not-found]  # noqa: F401
        assert not gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()


_ENTRYPOINT_ORDER = """
import sys, types
import modelyard_serving.__main__ as entry

def run(app, **options):
    names = list(sys.modules)
    print(names.index("scipy.special") < names.index("fastapi"), "numpy" in sys.modules)

sys.modules["uvicorn"] = types.SimpleNamespace(run=run)
entry.main()
"""


def test_the_entrypoint_imports_scipy_special_before_fastapi() -> None:
    """skops scans sys.modules up to scipy.special at import (imports.py): with FastAPI and the
    rest ahead of it, ``import skops.io`` took ~0.5 CPU s longer."""
    env = {**os.environ, "MODELYARD_MODEL_URI": "models:/never-loaded/1"}
    command = [sys.executable, "-c", _ENTRYPOINT_ORDER]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["True", "True"]
