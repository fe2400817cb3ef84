"""Request and response shapes, for the OpenAPI document at /docs.

Requests are *not* validated through these models at run time (see validation.py for why);
they document the contract. Responses are built as plain dicts in exactly these shapes.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Scalar = float | int | bool | None


class PredictRequest(BaseModel):
    """Exactly one of ``instances`` (rows as lists, in signature order) or ``inputs``
    (records keyed by feature name)."""

    instances: list[list[Scalar]] | None = Field(
        default=None, examples=[[[5.1, 3.5, 1.4, 0.2]]], description="Rows in feature order."
    )
    inputs: list[dict[str, Scalar]] | None = Field(
        default=None,
        examples=[[{"sepal length (cm)": 5.1, "sepal width (cm)": 3.5}]],
        description="Rows keyed by the signature's feature names.",
    )


class PredictResponse(BaseModel):
    modelName: str
    modelVersion: str
    predictions: list[Any] = Field(description="One predicted label or value per row.")
    classes: list[Any] | None = Field(
        default=None, description="Classifier labels, in the column order of probabilities."
    )
    probabilities: list[list[float]] | None = Field(
        default=None, description="Per row, the probability of each entry of classes."
    )
    confidences: list[float] | None = Field(
        default=None, description="Per row, the probability of the predicted class (classifiers)."
    )


class DataFrameSplit(BaseModel):
    """pandas ``orient="split"``: column names once, then rows in that column order."""

    columns: list[str] | None = Field(
        default=None, description="Column names; rows are in signature order when omitted."
    )
    data: list[list[Scalar]] = Field(examples=[[[5.1, 3.5, 1.4, 0.2]]])
    index: list[Any] | None = Field(default=None, description="Row labels; accepted and ignored.")


class InvocationsRequest(BaseModel):
    """MLflow's scoring protocol, as ``mlflow models serve`` takes it: exactly one of
    ``dataframe_split``, ``dataframe_records``, ``instances`` or ``inputs``, plus optional
    ``params`` (accepted and ignored: scikit-learn models take no inference parameters)."""

    dataframe_split: DataFrameSplit | None = None
    dataframe_records: list[dict[str, Scalar]] | None = Field(
        default=None, description="Rows keyed by the signature's feature names."
    )
    instances: list[list[Scalar]] | list[dict[str, Scalar]] | None = Field(
        default=None, description="Rows in feature order, or records."
    )
    inputs: list[list[Scalar]] | list[dict[str, Scalar]] | dict[str, list[Scalar]] | None = Field(
        default=None, description="Rows, records, or columns keyed by feature name."
    )
    params: dict[str, Any] | None = None


class InvocationsResponse(BaseModel):
    predictions: list[Any] = Field(description="One predicted label or value per row.")


class ErrorResponse(BaseModel):
    error: str
    code: str
    field: str | None = None


class ReadyResponse(BaseModel):
    status: Literal["ready", "loading", "failed"]
    modelUri: str
    modelName: str | None = None
    modelVersion: str | None = None
    error: str | None = None
    attempts: int = 0


class DriftResponse(BaseModel):
    available: bool
    reason: str | None = None
    referenceVersion: str | None = None
    windowSize: int | None = None
    windowCapacity: int | None = None
    score: float | None = Field(default=None, description="Mean of the per-feature PSI values.")
    features: dict[str, float] | None = None


class TensorInput(BaseModel):
    name: str
    shape: list[int]
    datatype: str = Field(examples=["FP64"])
    data: list[Any]
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    """Open Inference Protocol v2: one tensor of shape [n, features], or one tensor per
    feature (named like the signature) of shape [n] or [n, 1]."""

    id: str | None = None
    inputs: list[TensorInput]
    outputs: list[dict[str, Any]] | None = None
    parameters: dict[str, Any] | None = None


class TensorOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]
    parameters: dict[str, Any] | None = None


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[TensorOutput]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with ``$defs`` references expanded in place, so it can be
    embedded in an operation's requestBody via ``openapi_extra``."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def expand(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return expand(defs[ref.removeprefix("#/$defs/")])
            return {key: expand(value) for key, value in node.items()}
        if isinstance(node, list):
            return [expand(item) for item in node]
        return node

    return dict(expand(schema))


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline_schema(model)}},
        }
    }
