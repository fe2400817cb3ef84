"""Makes chartlib importable as ``chartlib`` in every pytest import mode."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def _load_chartlib() -> None:
    if "chartlib" in sys.modules:
        return
    spec = importlib.util.spec_from_file_location("chartlib", Path(__file__).with_name("chartlib.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["chartlib"] = module
    spec.loader.exec_module(module)


_load_chartlib()
