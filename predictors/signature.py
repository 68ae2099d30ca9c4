"""The model's v2 interface: input and output tensors, read from the MLflow signature or the model itself.

Tabular (column) signatures keep their feature order: the metadata endpoint lists one FP64/FP32/... tensor of
shape [-1] per column, and requests may instead send one packed [N, F] tensor named `features`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tickserve.predictors.datatypes import MLFLOW_COLUMN_TO_V2, v2_datatype


@dataclass(frozen=True)
class TensorSpec:
    """One named v2 tensor. `-1` marks a variable dimension (the first one is the batch); `shape=None` means
    the model does not declare its shape (a plain TorchScript file), so any rank is accepted."""

    name: str
    datatype: str
    shape: tuple[int, ...] | None

    def metadata(self) -> dict[str, object]:
        return {"name": self.name, "datatype": self.datatype, "shape": [-1] if self.shape is None else list(self.shape)}


@dataclass(frozen=True)
class Signature:
    """Inputs in the model's order. `tabular` means the inputs are feature columns of one matrix."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...] = field(default=())
    tabular: bool = False

    @property
    def input_names(self) -> list[str]:
        return [spec.name for spec in self.inputs]


def tabular_signature(columns: list[tuple[str, str]], outputs: tuple[TensorSpec, ...] = ()) -> Signature:
    """Columns as (name, v2 datatype) in feature order."""
    return Signature(tuple(TensorSpec(name, datatype, (-1,)) for name, datatype in columns), outputs, tabular=True)


def from_mlflow(mlflow_signature: object | None) -> Signature | None:
    """Convert an `mlflow.models.ModelSignature`; None when the model was saved without one."""
    if mlflow_signature is None:
        return None
    inputs = mlflow_signature.inputs  # type: ignore[attr-defined]
    outputs = _mlflow_schema_specs(mlflow_signature.outputs, default_name="predict")  # type: ignore[attr-defined]
    if inputs is None:
        return None
    if inputs.is_tensor_spec():
        return Signature(_mlflow_schema_specs(inputs, default_name="input"), outputs)
    columns = []
    for position, column in enumerate(inputs.inputs):
        name = column.name if column.name is not None else f"f{position}"
        columns.append((name, MLFLOW_COLUMN_TO_V2.get(str(column.type.name), "FP64")))
    return tabular_signature(columns, outputs)


def _mlflow_schema_specs(schema: object | None, default_name: str) -> tuple[TensorSpec, ...]:
    if schema is None:
        return ()
    specs = []
    for position, spec in enumerate(schema.inputs):  # type: ignore[attr-defined]
        name = spec.name or (default_name if position == 0 else f"{default_name}_{position}")
        if hasattr(spec, "shape"):  # TensorSpec
            specs.append(TensorSpec(name, v2_datatype(spec.type), tuple(int(d) for d in spec.shape)))
        else:  # ColSpec as an output: one value per row
            specs.append(TensorSpec(name, MLFLOW_COLUMN_TO_V2.get(str(spec.type.name), "FP64"), (-1,)))
    return tuple(specs)
