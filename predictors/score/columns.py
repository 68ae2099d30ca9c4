"""Which file columns feed which model input: the contract between a feature file and a model's signature.

A tabular model (an MLflow column signature, e.g. LightGBM) takes its features by column name when the file
has every one of them, else by position when the file holds exactly as many feature columns as the signature.
A tensor model with one input of fixed inner shape, e.g. [-1, F] or [-1, 60, F], takes the file's feature
columns in file order, flattened row-major. Columns named in `keep` (ids such as symbol, ts) are copied to
the output and never fed to the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tickserve.predictors.datatypes import V2_TO_NUMPY
from tickserve.predictors.signature import Signature
from tickserve.v2.names import PACKED_FEATURES


class ColumnMismatch(ValueError):
    """The file's columns cannot feed the model; the message lists what the model needs and what the file has."""


@dataclass(frozen=True)
class InputLayout:
    """Feature columns in the order the model takes them, and how one [N, F] matrix becomes its input."""

    columns: tuple[str, ...]
    input_name: str
    inner_shape: tuple[int, ...]
    dtype: np.dtype

    def inputs(self, matrix: np.ndarray) -> dict[str, np.ndarray]:
        """The predictor's `predict_arrays` argument for a float64 [N, F] matrix of good rows."""
        array = matrix.astype(self.dtype, copy=False)
        return {self.input_name: array.reshape(len(array), *self.inner_shape)}


def layout(signature: Signature, file_columns: list[str], keep: tuple[str, ...]) -> InputLayout:
    """Match `file_columns` (minus `keep`) to `signature`; ColumnMismatch when they cannot be matched."""
    missing_keep = [name for name in keep if name not in file_columns]
    if missing_keep:
        raise ColumnMismatch(f"columns to keep {missing_keep} are not in the file (it has {file_columns})")
    candidates = [name for name in file_columns if name not in keep]
    if signature.tabular:
        wanted = signature.input_names
        if set(wanted) <= set(file_columns):
            columns = wanted
        elif len(candidates) == len(wanted):
            columns = candidates
        else:
            missing = [name for name in wanted if name not in file_columns]
            raise ColumnMismatch(
                f"the model takes {len(wanted)} features; the file lacks {missing[:10]}"
                f"{' ...' if len(missing) > 10 else ''} and has {len(candidates)} feature columns, so they cannot "
                "be taken in signature order either"
            )
        dtypes = {spec.datatype for spec in signature.inputs}
        dtype = V2_TO_NUMPY["FP32"] if dtypes == {"FP32"} else V2_TO_NUMPY["FP64"]
        return InputLayout(tuple(columns), PACKED_FEATURES, (len(columns),), dtype)
    if len(signature.inputs) != 1 or signature.inputs[0].shape is None or -1 in signature.inputs[0].shape[1:]:
        described = [spec.metadata() for spec in signature.inputs] or "no signature"
        raise ColumnMismatch(
            "batch scoring from a table needs a column signature or one input of fixed inner shape such as "
            f"[-1, F] or [-1, 60, F]; this model declares {described}"
        )
    spec = signature.inputs[0]
    inner = spec.shape[1:]
    width = math.prod(inner)
    if len(candidates) != width:
        raise ColumnMismatch(
            f"input '{spec.name}' {list(spec.shape)} takes {width} values a row; the file has {len(candidates)} "
            f"feature columns ({len(file_columns)} columns, keeping {list(keep)})"
        )
    return InputLayout(tuple(candidates), spec.name, inner, V2_TO_NUMPY.get(spec.datatype, np.dtype(np.float32)))
