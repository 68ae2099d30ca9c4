"""The held-out sample the parity gate and the benchmark run on: the user's data, else the model's input example.

`--data` is a .npy array of model inputs, or a parquet/CSV table whose feature columns, in file order, are the
model input flattened row-major (F columns for [-1, F], 60*F for a [-1, 60, F] window). Without `--data`, the
MLflow input example saved with the model is used; with neither there is nothing to export or compare with.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tickserve.predictors.optimize.source import Source


class MissingExample(ValueError):
    """No input example and no `--data`: export and the parity gate need real inputs."""


class SampleError(ValueError):
    """`--data` cannot be read as inputs of this model; the message says why."""


def inner_shape(source: Source, fallback: tuple[int, ...] | None) -> tuple[int, ...] | None:
    """The input's shape without the batch dimension, from the signature when it declares one."""
    if source.signature is not None:
        if source.signature.tabular:
            return (len(source.signature.inputs),)
        spec = source.signature.inputs[0]
        if spec.shape is not None and -1 not in spec.shape[1:]:
            return tuple(spec.shape[1:])
    return fallback


def load_sample(source: Source, data: Path | None, rows: int) -> np.ndarray:
    """At most `rows` FP32 input rows, shaped [N, *inner]."""
    if data is None:
        if source.example is None:
            raise MissingExample(
                f"{source.model_dir} has no MLflow input example; pass --data with held-out inputs (.npy, or a "
                "parquet/CSV of features) so the model can be exported and its variants compared"
            )
        sample = source.example
    else:
        sample = _read(data, inner_shape(source, source.example.shape[1:] if source.example is not None else None))
    if sample.ndim < 2 or len(sample) == 0:
        raise SampleError(f"the sample has shape {list(sample.shape)}; expected [rows, ...] with rows > 0")
    if not np.isfinite(sample).all():
        raise SampleError("the sample holds missing or non-finite values")
    return np.ascontiguousarray(sample[:rows], dtype=np.float32)


def _read(path: Path, inner: tuple[int, ...] | None) -> np.ndarray:
    try:
        if path.suffix == ".npy":
            array = np.load(path)
            return array if inner is None else array.reshape(len(array), *inner)
        if path.suffix in (".parquet", ".pq"):
            table = pq.read_table(path)
        elif path.suffix == ".csv":
            table = pacsv.read_csv(path)
        else:
            raise SampleError(f"{path}: --data must be .npy, .parquet or .csv")
    except (OSError, ValueError, pa.ArrowException) as error:
        if isinstance(error, SampleError):
            raise
        raise SampleError(f"{path}: {error}") from error
    try:
        matrix = np.column_stack([pc.cast(column, pa.float64()).to_numpy() for column in table.columns])
    except pa.ArrowException as error:
        raise SampleError(f"{path}: every column must be numeric: {error}") from error
    if inner is None:
        return matrix
    if matrix.shape[1] != math.prod(inner):
        raise SampleError(
            f"{path} has {matrix.shape[1]} columns; the model input {list(inner)} needs {math.prod(inner)} a row"
        )
    return matrix.reshape(len(matrix), *inner)
