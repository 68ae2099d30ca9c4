"""What the PyTorch runtimes share: device and thread choice, calling a module on numpy inputs, and telling a
request's shape fault from the server's.

Inputs are passed positionally in signature order (a column signature: the packed [N, F] matrix); a tuple/list
result is named by the signature's outputs (`predict`, `predict_1`, ... when it has none). Where the signature
leaves an input's shape open (a plain `.pt` file declares none), the module is what checks it: torch's shape
complaint is then the client's error (400).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable

import numpy as np
import torch

from tickserve.predictors.base import TickPredictor
from tickserve.predictors.batching import Arrays
from tickserve.predictors.datatypes import V2_TO_NUMPY
from tickserve.predictors.signature import TensorSpec
from tickserve.v2.names import PACKED_FEATURES


def select_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def limit_threads(threads: int) -> None:
    """torch's pools are per process; the inter-op pool can be sized only before first use."""
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # already fixed by an earlier load in this process
        torch.set_num_interop_threads(1)


class TorchModulePredictor(TickPredictor):
    """A torch callable (`self.module`) on `self.device`, called under inference mode."""

    module: Callable[..., object]
    device: torch.device

    def output_specs(self) -> tuple[TensorSpec, ...]:
        return self.signature.outputs or (TensorSpec("predict", "FP32", None),)

    def predict_arrays(self, inputs: Arrays) -> Arrays:
        if self.signature.tabular:  # the module takes the packed [N, F] feature matrix
            arrays = [inputs[PACKED_FEATURES].astype(self.tabular_dtype(), copy=False)]
        else:
            arrays = [_writable(inputs[name]) for name in self.signature.input_names]
        tensors = [torch.from_numpy(array).to(self.device) for array in arrays]
        with torch.inference_mode():
            result = self.module(*tensors)
        results = list(result) if isinstance(result, (tuple, list)) else [result]
        names = [spec.name for spec in self.output_specs()]
        names += [f"predict_{i}" for i in range(len(names), len(results))]
        return {name: tensor.detach().cpu().numpy() for name, tensor in zip(names, results, strict=False)}

    def tabular_dtype(self) -> np.dtype:
        """The dtype the packed feature matrix is given to the module in."""
        return V2_TO_NUMPY["FP32"]

    def client_fault(self, error: Exception, inputs: Arrays) -> str | None:
        """torch's complaint about input shapes, when the codec could not check every input's shape (no declared
        shape or an open inner dimension). Otherwise the request fit the signature, and a shape failure is the
        model's (or signature's) fault."""
        if self.signature.checked or not isinstance(error, (RuntimeError, AssertionError, ValueError)):
            return None
        return shape_complaint(error)


# torch's wording for inputs of the wrong rank or size ("mat1 and mat2 shapes cannot be multiplied", "Expected 3D
# (unbatched) or 4D (batched) input", "input.size(-1) must be equal to input_size", "Sizes of tensors must match",
# an exported program's "Guard failed: x.size()[1] == 15"). Dtypes are not included: the codec admits only the
# declared datatype, so a dtype failure is the server's.
_SHAPE_WORDS = re.compile(r"shape|size|dimension|\bdims?\b|\b\d+D\b|must match", re.IGNORECASE)


def shape_complaint(error: Exception) -> str | None:
    """torch's complaint (the last line: TorchScript puts its traceback first) if it is about input shapes."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    complaint = lines[-1].removeprefix("RuntimeError: ") if lines else ""
    if isinstance(error, torch.OutOfMemoryError) or "out of memory" in complaint.lower():
        return None
    return complaint if _SHAPE_WORDS.search(complaint) else None


def _writable(array: np.ndarray) -> np.ndarray:
    """torch.from_numpy needs writable memory; binary request data is a read-only view of the body."""
    return array if array.flags.writeable else array.copy()
