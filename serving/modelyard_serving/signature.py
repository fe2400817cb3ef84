"""What a valid input row looks like, derived once from the MLflow signature and the estimator."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ColumnKind = Literal["float", "int", "bool"]

# MLflow column types the float64 predict path can represent exactly enough.
_COLUMN_KINDS: dict[str, ColumnKind] = {
    "double": "float",
    "float": "float",
    "long": "int",
    "integer": "int",
    "boolean": "bool",
}
_OIP_DATATYPES: dict[ColumnKind, str] = {"float": "FP64", "int": "INT64", "bool": "BOOL"}


class ModelLoadError(RuntimeError):
    """The model cannot be served (keeps the server not-ready, with this message)."""


@dataclass(frozen=True)
class InputSpec:
    """Feature order, kinds and NaN policy; ``names`` is None for unnamed tensor signatures."""

    names: tuple[str, ...] | None
    kinds: tuple[ColumnKind, ...]
    required: tuple[bool, ...]
    allow_nan: bool
    # Derived once in _make because the hot path reads them on every request.
    n_features: int = 0
    all_float: bool = True
    index: dict[str, int] = field(default_factory=dict)

    def label(self, position: int) -> str:
        """How error messages name a feature: its name, or its position when unnamed."""
        if self.names is not None:
            return self.names[position]
        return f"feature {position}"

    def describe(self) -> list[dict[str, Any]]:
        """Per-feature tensor metadata for OIP ``GET /v2/models/{name}``."""
        names = self.names or tuple(f"input-{i}" for i in range(self.n_features))
        return [
            {"name": name, "datatype": _OIP_DATATYPES[kind], "shape": [-1]}
            for name, kind in zip(names, self.kinds, strict=True)
        ]


def input_spec_from(inputs: Any, estimator: Any) -> InputSpec:
    """Build the spec from the signature's input ``mlflow.types.Schema`` (None without a
    signature) and check it against what the estimator was fitted on."""
    allow_nan = _estimator_allows_nan(estimator)
    fitted = getattr(estimator, "n_features_in_", None)
    if inputs is None:
        names = getattr(estimator, "feature_names_in_", None)
        if fitted is None:
            raise ModelLoadError("model has no signature and the estimator has no n_features_in_")
        n = int(fitted)
        kinds: tuple[ColumnKind, ...] = tuple("float" for _ in range(n))
        spec = _make(tuple(str(x) for x in names) if names is not None else None, kinds, (True,) * n, allow_nan)
    elif inputs.is_tensor_spec():
        spec = _from_tensor(inputs.inputs, fitted, allow_nan)
    else:
        spec = _from_columns(inputs.inputs, allow_nan)
    if fitted is not None and int(fitted) != spec.n_features:
        raise ModelLoadError(f"signature has {spec.n_features} inputs but the estimator was fitted on {fitted}")
    return spec


def _from_columns(columns: list[Any], allow_nan: bool) -> InputSpec:
    names: list[str] = []
    kinds: list[ColumnKind] = []
    required: list[bool] = []
    for position, col in enumerate(columns):
        type_name = getattr(col.type, "name", str(col.type))
        kind = _COLUMN_KINDS.get(type_name)
        if kind is None:
            raise ModelLoadError(
                f"input column {col.name or position!r} has type {type_name}; the native "
                "sklearn path serves numeric and boolean columns only"
            )
        names.append(col.name if col.name is not None else f"feature {position}")
        kinds.append(kind)
        required.append(bool(getattr(col, "required", True)))
    has_names = any(col.name is not None for col in columns)
    return _make(tuple(names) if has_names else None, tuple(kinds), tuple(required), allow_nan)


def _from_tensor(tensors: list[Any], fitted: Any, allow_nan: bool) -> InputSpec:
    if len(tensors) != 1:
        raise ModelLoadError("only a single 2-D input tensor is supported")
    tensor = tensors[0]
    shape = tuple(tensor.shape)
    width = shape[-1] if len(shape) == 2 else -1
    if width == -1:
        if fitted is None:
            raise ModelLoadError(f"cannot tell the feature count from tensor shape {shape}")
        width = int(fitted)
    dtype_kind = getattr(tensor.type, "kind", "f")
    kind: ColumnKind = "bool" if dtype_kind == "b" else "int" if dtype_kind in "iu" else "float"
    return _make(None, (kind,) * width, (True,) * width, allow_nan)


def _make(
    names: tuple[str, ...] | None,
    kinds: tuple[ColumnKind, ...],
    required: tuple[bool, ...],
    allow_nan: bool,
) -> InputSpec:
    index = {name: i for i, name in enumerate(names)} if names is not None else {}
    all_float = all(kind == "float" for kind in kinds)
    return InputSpec(names, kinds, required, allow_nan, len(kinds), all_float, index)


def _estimator_allows_nan(estimator: Any) -> bool:
    """NaN is accepted only when the estimator says it handles it (e.g. HistGradientBoosting)."""
    try:
        from sklearn.utils import get_tags

        return bool(get_tags(estimator).input_tags.allow_nan)
    except (ImportError, AttributeError, TypeError, ValueError):  # old sklearn, or not sklearn: be strict
        return False
