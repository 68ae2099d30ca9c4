"""Codecs between v2 tensors and the numpy arrays a framework takes, checked against the model's signature.

Every way a request can disagree with the signature raises `InvalidInput` (HTTP 400, gRPC INVALID_ARGUMENT)
with a message naming the tensor and what is wrong, before the request can join a batch.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping

import numpy as np
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferOutput, InferRequest, InferResponse

from tickserve.predictors.batching import Arrays
from tickserve.predictors.datatypes import V2_TO_NUMPY, v2_datatype
from tickserve.predictors.signature import Signature, TensorSpec
from tickserve.v2.names import PACKED_FEATURES


def tensor_array(tensor: InferInput) -> np.ndarray:
    """The tensor's data as a numpy array of its declared datatype and shape."""
    dtype = V2_TO_NUMPY.get(tensor.datatype)
    if dtype is None or tensor.datatype == "BYTES":
        raise InvalidInput(f"input '{tensor.name}': datatype {tensor.datatype!r} is not a numeric v2 datatype")
    shape = [int(d) for d in tensor.shape]
    if any(d < 0 for d in shape):
        raise InvalidInput(f"input '{tensor.name}': shape {shape} has a negative dimension")
    expected = math.prod(shape)  # Python ints: a client's astronomic shape must not wrap around
    raw = getattr(tensor, "_raw_data", None)  # binary extension / gRPC raw_input_contents: kserve keeps bytes here
    if raw is not None:
        if len(raw) != expected * dtype.itemsize:
            raise InvalidInput(
                f"input '{tensor.name}': {len(raw)} bytes of binary data, but shape {shape} of "
                f"{tensor.datatype} needs {expected * dtype.itemsize}"
            )
        return np.frombuffer(raw, dtype=dtype).reshape(shape)
    if tensor.data is None:
        raise InvalidInput(f"input '{tensor.name}': no data")
    try:
        array = np.asarray(tensor.data, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise InvalidInput(f"input '{tensor.name}': data is not {tensor.datatype}: {error}") from None
    if array.size != expected:
        raise InvalidInput(f"input '{tensor.name}': {array.size} values do not fill shape {shape}")
    return array.reshape(shape)


def decode_request(request: InferRequest, signature: Signature, max_rows: int) -> tuple[Arrays, int]:
    """Validate `request` against `signature`; return the model's input arrays and the number of rows."""
    if not request.inputs:
        raise InvalidInput("request has no inputs")
    names = [tensor.name for tensor in request.inputs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise InvalidInput(f"input(s) {', '.join(duplicates)} sent more than once")
    if signature.tabular:
        arrays = {PACKED_FEATURES: _decode_tabular(request.inputs, signature)}
    else:
        arrays = _decode_tensors(request.inputs, signature)
    rows = _check_rows(arrays, max_rows)
    return arrays, rows


def _decode_tabular(tensors: list[InferInput], signature: Signature) -> np.ndarray:
    """Tabular models take one [N, F] matrix in signature column order, sent packed or column by column."""
    columns = signature.input_names
    if any(tensor.name == PACKED_FEATURES for tensor in tensors):
        if len(tensors) != 1:
            raise InvalidInput(f"input '{PACKED_FEATURES}' must be the only input when the features are packed")
        return _packed_matrix(tensors[0], signature)
    _check_names([tensor.name for tensor in tensors], columns, packed_hint=True)
    by_name = {tensor.name: tensor for tensor in tensors}
    values = []
    for spec in signature.inputs:
        tensor = by_name[spec.name]
        _check_datatype(tensor, spec)
        array = tensor_array(tensor)
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1:
            raise InvalidInput(f"input '{spec.name}': shape {list(array.shape)}, a column must have shape [N]")
        values.append(array)
    lengths = {len(array) for array in values}
    if len(lengths) != 1:
        raise InvalidInput(f"feature columns have different lengths {sorted(lengths)}")
    return np.column_stack(values).astype(np.float64, copy=False)


def _packed_matrix(tensor: InferInput, signature: Signature) -> np.ndarray:
    width = len(signature.inputs)
    if tensor.datatype not in ("FP32", "FP64"):
        raise InvalidInput(f"input '{PACKED_FEATURES}': datatype {tensor.datatype}, expected FP32 or FP64")
    array = tensor_array(tensor)
    if array.ndim != 2 or array.shape[1] != width:
        raise InvalidInput(
            f"input '{PACKED_FEATURES}': shape {list(array.shape)}, expected [N, {width}] "
            f"(columns {', '.join(signature.input_names)})"
        )
    return array


def _decode_tensors(tensors: list[InferInput], signature: Signature) -> Arrays:
    _check_names([tensor.name for tensor in tensors], signature.input_names, packed_hint=False)
    by_name = {tensor.name: tensor for tensor in tensors}
    arrays: Arrays = {}
    for spec in signature.inputs:
        tensor = by_name[spec.name]
        _check_datatype(tensor, spec)
        array = tensor_array(tensor)
        _check_shape(spec, list(array.shape))
        arrays[spec.name] = array
    return arrays


def _check_names(sent: list[str], expected: list[str], *, packed_hint: bool) -> None:
    unknown = [name for name in sent if name not in expected]
    missing = [name for name in expected if name not in sent]
    if not unknown and not missing:
        return
    problems = []
    if unknown:
        problems.append(f"unknown input(s) {', '.join(repr(n) for n in unknown)}")
    if missing:
        problems.append(f"missing input(s) {', '.join(repr(n) for n in missing)}")
    hint = f"; or send one [N, {len(expected)}] tensor named '{PACKED_FEATURES}'" if packed_hint else ""
    raise InvalidInput(f"{'; '.join(problems)}: the signature expects {', '.join(expected)}{hint}")


def _check_datatype(tensor: InferInput, spec: TensorSpec) -> None:
    if tensor.datatype != spec.datatype:
        raise InvalidInput(f"input '{spec.name}': datatype {tensor.datatype}, the signature expects {spec.datatype}")


def _check_shape(spec: TensorSpec, shape: list[int]) -> None:
    if spec.shape is None:
        if not shape:
            raise InvalidInput(f"input '{spec.name}': a scalar has no batch dimension")
        return
    expected = list(spec.shape)
    fits = len(shape) == len(expected) and all(e in (-1, s) for e, s in zip(expected, shape, strict=True))
    if not fits:
        raise InvalidInput(f"input '{spec.name}': shape {shape}, the signature expects {expected} (-1 = any)")


def _check_rows(arrays: Arrays, max_rows: int) -> int:
    rows = {name: (array.shape[0] if array.ndim else 1) for name, array in arrays.items()}
    counts = set(rows.values())
    if len(counts) != 1:
        raise InvalidInput(f"inputs disagree on the batch size (first dimension): {rows}")
    count = counts.pop()
    if count == 0:
        raise InvalidInput("empty batch: the inputs have 0 rows")
    if count > max_rows:
        raise InvalidInput(f"batch of {count} rows exceeds max_request_rows={max_rows}; split the request")
    return count


def encode_response(
    request: InferRequest, outputs: Mapping[str, np.ndarray], model_name: str, model_version: str, track: str
) -> InferResponse:
    """A v2 response carrying the request's id (a new one when it had none), the model version and, as the
    `track` parameter, the rollout track that answered: behind one Service the stable and canary pods can both
    answer, and callers record which one did."""
    infer_outputs = []
    for name, array in outputs.items():
        output = InferOutput(name=name, shape=list(array.shape), datatype=v2_datatype(array.dtype), data=array)
        if request.from_grpc:
            # gRPC answers in raw_output_contents (any v2 client reads them); KServe's to_grpc cannot take numpy
            # data when the request itself was raw.
            output.set_data_from_numpy(np.ascontiguousarray(array), binary_data=True)
        infer_outputs.append(output)
    return InferResponse(
        response_id=request.id or str(uuid.uuid4()),
        model_name=model_name,
        model_version=model_version,
        parameters={"track": track},
        infer_outputs=infer_outputs,
        use_binary_outputs=request.use_binary_outputs,
        requested_outputs=request.request_outputs,
    )
