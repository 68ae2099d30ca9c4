"""How an MLflow signature and the model's own interface combine into the inputs served (`signature.reconcile`):
the model's names win, a column signature is kept, a signature that contradicts the model is ignored."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.models import ModelSignature, infer_signature
from mlflow.types import Schema
from mlflow.types import TensorSpec as MlflowTensor

from tickserve.predictors.signature import Signature, TensorSpec, from_mlflow, reconcile

X = np.zeros((3, 4), dtype=np.float64)
ONNX_X = Signature((TensorSpec("x", "FP32", (-1, 4)),))  # an ONNX graph / exported program taking `x`
SCRIPT_X = Signature((TensorSpec("x", "FP32", None),))  # a TorchScript forward(x): a name, no type or shape
OPEN = Signature((TensorSpec("x", "FP32", (-1, -1)),))  # a graph exported with a dynamic width
TWO = Signature((TensorSpec("a", "FP32", (-1, 2)), TensorSpec("b", "INT64", (-1,))))


def named_signature(*names: str) -> Signature:
    specs = [MlflowTensor(np.dtype(np.float64), (-1, 4), name) for name in names]
    signature = from_mlflow(ModelSignature(inputs=Schema(specs)))
    assert signature is not None
    return signature


def served(signature: Signature) -> list[tuple[str, str, list[int]]]:
    return [(spec.name, spec.datatype, list(spec.shape or [-1])) for spec in signature.inputs]


def test_an_unnamed_tensor_signature_is_marked_and_named_input() -> None:
    signature = from_mlflow(infer_signature(X, X[:, 0]))
    assert signature is not None and signature.unnamed
    assert served(signature) == [("input", "FP64", [-1, 4])]
    assert signature.outputs == (TensorSpec("predict", "FP64", (-1,)),)


@pytest.mark.parametrize(
    ("declared", "native", "native_types", "expected"),
    [
        pytest.param(None, ONNX_X, True, [("x", "FP32", [-1, 4])], id="no-signature"),
        pytest.param("unnamed", ONNX_X, True, [("x", "FP32", [-1, 4])], id="unnamed-vs-graph-name"),
        pytest.param(("window",), ONNX_X, True, [("x", "FP32", [-1, 4])], id="named-differently-model-wins"),
        pytest.param(("x",), ONNX_X, True, [("x", "FP32", [-1, 4])], id="same-name"),
        pytest.param("unnamed", SCRIPT_X, False, [("x", "FP64", [-1, 4])], id="torchscript-types-from-signature"),
        pytest.param(("x",), TWO, True, [("a", "FP32", [-1, 2]), ("b", "INT64", [-1])], id="count-mismatch"),
        pytest.param(("b", "a"), TWO, True, [("a", "FP32", [-1, 2]), ("b", "INT64", [-1])], id="paired-by-name"),
        pytest.param(("q", "r"), TWO, True, [("a", "FP32", [-1, 2]), ("b", "INT64", [-1])], id="paired-by-position"),
        pytest.param("unnamed", OPEN, True, [("x", "FP32", [-1, 4])], id="open-width-fixed-by-signature"),
    ],
)
def test_the_models_own_interface_wins(declared, native, native_types, expected) -> None:
    if declared == "unnamed":
        declared = from_mlflow(infer_signature(X))
    elif declared is not None:
        declared = named_signature(*declared)
    result = reconcile(declared, native, native_types=native_types)
    assert served(result) == expected
    assert not result.tabular


def test_a_column_signature_is_kept_in_column_order() -> None:
    import pandas as pd

    declared = from_mlflow(infer_signature(pd.DataFrame(X, columns=["d", "a", "c", "b"])))
    result = reconcile(declared, ONNX_X, native_types=True)
    assert result.tabular and result.input_names == ["d", "a", "c", "b"]
