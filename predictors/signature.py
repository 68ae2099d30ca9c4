"""The model's v2 interface: input and output tensors, from the MLflow signature reconciled with the model itself.

Tabular (column) signatures keep their feature order: the metadata endpoint lists one FP64/FP32/... tensor of
shape [-1] per column, and requests may instead send one packed [N, F] tensor named `features`.

Tensor signatures are reconciled with what the loaded model declares (`reconcile`): MLflow's `infer_signature`
on a numpy array writes a tensor without a name, and the names, dtypes and shapes a model really takes (an ONNX
graph's inputs, an exported program's placeholders) are what inference must be called with. So the model's own
names win over the signature's (and over made-up ones such as `input`), and the metadata endpoint lists exactly
the names inference accepts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from tickserve.predictors.datatypes import MLFLOW_COLUMN_TO_V2, v2_datatype

logger = logging.getLogger(__name__)

UNNAMED_INPUT = "input"  # what an input without a name in the signature or the model is called


@dataclass(frozen=True)
class TensorSpec:
    """One named v2 tensor. `-1` marks a variable dimension (the first one is the batch); `shape=None` means
    the model does not declare its shape (a plain TorchScript file), so any rank is accepted."""

    name: str
    datatype: str
    shape: tuple[int, ...] | None

    def metadata(self) -> dict[str, object]:
        return {"name": self.name, "datatype": self.datatype, "shape": [-1] if self.shape is None else list(self.shape)}

    @property
    def checked(self) -> bool:
        """True when the codec can check every dimension a request sends (only the batch may vary)."""
        return self.shape is not None and -1 not in self.shape[1:]


@dataclass(frozen=True)
class Signature:
    """Inputs in the model's order. `tabular` means the inputs are feature columns of one matrix; `unnamed` that
    MLflow saved the tensors without names, so theirs (`input`, `input_1` ...) are made up."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...] = field(default=())
    tabular: bool = False
    unnamed: bool = False

    @property
    def input_names(self) -> list[str]:
        return [spec.name for spec in self.inputs]

    @property
    def checked(self) -> bool:
        """True when the codec checks every input's full shape, so a request that passed it fits the model."""
        return self.tabular or all(spec.checked for spec in self.inputs)


def tabular_signature(columns: list[tuple[str, str]], outputs: tuple[TensorSpec, ...] = ()) -> Signature:
    """Columns as (name, v2 datatype) in feature order."""
    return Signature(tuple(TensorSpec(name, datatype, (-1,)) for name, datatype in columns), outputs, tabular=True)


def from_mlflow(mlflow_signature: object | None) -> Signature | None:
    """Convert an `mlflow.models.ModelSignature`; None when the model was saved without one."""
    if mlflow_signature is None:
        return None
    inputs = mlflow_signature.inputs  # type: ignore[attr-defined]
    outputs = named(_mlflow_schema_specs(mlflow_signature.outputs), "predict")  # type: ignore[attr-defined]
    if inputs is None:
        return None
    if inputs.is_tensor_spec():
        specs = _mlflow_schema_specs(inputs)
        return Signature(named(specs, UNNAMED_INPUT), outputs, unnamed=not all(spec.name for spec in specs))
    columns = []
    for position, column in enumerate(inputs.inputs):
        name = column.name if column.name is not None else f"f{position}"
        columns.append((name, MLFLOW_COLUMN_TO_V2.get(str(column.type.name), "FP64")))
    return tabular_signature(columns, outputs)


def named(specs: tuple[TensorSpec, ...], default: str) -> tuple[TensorSpec, ...]:
    """Give unnamed specs `default`, `default_1`, ... by position."""
    return tuple(
        spec if spec.name else replace(spec, name=default if position == 0 else f"{default}_{position}")
        for position, spec in enumerate(specs)
    )


def reconcile(declared: Signature | None, native: Signature, *, native_types: bool, model: str = "") -> Signature:
    """The interface to serve: the MLflow signature (`declared`) matched to the model's own inputs (`native`).

    - No signature: the model's own interface.
    - A column signature: kept (the runtime packs the columns into the matrix the model takes).
    - A tensor signature with as many inputs as the model: paired by name when the names agree as a set, else by
      position, in the model's order. Each input takes the model's name, and the model's datatype and shape when
      the model declares them (`native_types`: ONNX, exported programs; a TorchScript module declares neither),
      with dimensions the model leaves open fixed by the signature.
    - A tensor signature that disagrees with the model on the number of inputs: the model's interface, with a
      warning (the signature is wrong; serving it would fail every request).
    """
    if declared is None:
        return replace(native, inputs=named(native.inputs, UNNAMED_INPUT))
    if declared.tabular:
        return declared
    if len(declared.inputs) != len(native.inputs):
        logger.warning(
            "model %s: its signature declares %d input(s) %s but the model takes %d %s; serving the model's inputs",
            model,
            len(declared.inputs),
            declared.input_names,
            len(native.inputs),
            native.input_names,
        )
        return replace(native, inputs=named(native.inputs, UNNAMED_INPUT), outputs=native.outputs or declared.outputs)
    by_name = {spec.name: spec for spec in declared.inputs}
    pairs = (
        [(by_name[own.name], own) for own in native.inputs]  # in the model's order: torch takes them by position
        if set(by_name) == set(native.input_names)
        else list(zip(declared.inputs, native.inputs, strict=True))
    )
    inputs = tuple(
        TensorSpec(
            name=own.name,
            datatype=own.datatype if native_types else spec.datatype,
            shape=_narrower(own.shape, spec.shape) if native_types else spec.shape,
        )
        for spec, own in pairs
    )
    return Signature(named(inputs, UNNAMED_INPUT), declared.outputs)


def _narrower(own: tuple[int, ...] | None, declared: tuple[int, ...] | None) -> tuple[int, ...] | None:
    """The model's shape, with the dimensions it leaves open (-1) taken from the signature where that fixes them
    (same rank): the codec then refuses a wrong width with a clear message before the framework call."""
    if own is None or declared is None or len(own) != len(declared):
        return own if own is not None else declared
    return tuple(d if d != -1 else s for d, s in zip(own, declared, strict=True))


def _mlflow_schema_specs(schema: object | None) -> tuple[TensorSpec, ...]:
    if schema is None:
        return ()
    specs = []
    for spec in schema.inputs:  # type: ignore[attr-defined]
        name = spec.name or ""
        if hasattr(spec, "shape"):  # TensorSpec
            specs.append(TensorSpec(name, v2_datatype(spec.type), tuple(int(d) for d in spec.shape)))
        else:  # ColSpec as an output: one value per row
            specs.append(TensorSpec(name, MLFLOW_COLUMN_TO_V2.get(str(spec.type.name), "FP64"), (-1,)))
    return tuple(specs)
