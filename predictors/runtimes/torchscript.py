"""TorchScript: `torch.jit.load` on CUDA when present (CPU otherwise), run under inference mode.

Inputs are passed positionally in signature order; a tuple/list result is named by the signature's outputs
(`predict`, `predict_1`, ... when it has none). Where the signature leaves an input's shape open (a plain `.pt`
file declares none), the module is what checks it: torch's shape complaint is then the client's error (400).
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import numpy as np
import torch
from kserve.errors import InvalidInput
from tickserve.predictors.base import TickPredictor
from tickserve.predictors.batching import Arrays
from tickserve.predictors.signature import Signature, TensorSpec

from tickserve.v2.names import PACKED_FEATURES


def select_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def limit_threads(threads: int) -> None:
    """torch's pools are per process; the inter-op pool can be sized only before first use."""
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # already fixed by an earlier load in this process
        torch.set_num_interop_threads(1)


class TorchScriptPredictor(TickPredictor):
    module: torch.jit.ScriptModule

    def load_native(self, model_file: Path) -> None:
        limit_threads(self.threads)
        self.device = select_device()
        try:
            self.module = torch.jit.load(str(model_file), map_location=self.device).eval()
        except RuntimeError as error:
            raise ValueError(
                f"{model_file} is not a TorchScript module (save torch.jit.script/trace output): {error}"
            ) from error

    def native_signature(self) -> Signature:
        arguments = self.module.forward.schema.arguments[1:]  # skip self
        return Signature(inputs=tuple(TensorSpec(argument.name, "FP32", None) for argument in arguments))

    def output_specs(self) -> tuple[TensorSpec, ...]:
        return self.signature.outputs or (TensorSpec("predict", "FP32", None),)

    def predict_arrays(self, inputs: Arrays) -> Arrays:
        if self.signature.tabular:  # the module takes the packed [N, F] feature matrix
            arrays = [inputs[PACKED_FEATURES].astype(np.float32)]
        else:
            arrays = [_writable(inputs[name]) for name in self.signature.input_names]
        tensors = [torch.from_numpy(array).to(self.device) for array in arrays]
        with torch.inference_mode():
            try:
                result = self.module(*tensors)
            except RuntimeError as error:
                complaint = shape_complaint(error)
                if complaint is None or not self._shapes_left_open():
                    raise
                sent = ", ".join(
                    f"'{name}' {list(array.shape)}" for name, array in zip(self._arg_names(), arrays, strict=True)
                )
                raise InvalidInput(f"input(s) {sent} do not fit the model: {complaint}") from None
        results = list(result) if isinstance(result, (tuple, list)) else [result]
        names = [spec.name for spec in self.output_specs()]
        names += [f"predict_{i}" for i in range(len(names), len(results))]
        return {name: tensor.detach().cpu().numpy() for name, tensor in zip(names, results, strict=False)}

    def _arg_names(self) -> list[str]:
        return [PACKED_FEATURES] if self.signature.tabular else self.signature.input_names

    def _shapes_left_open(self) -> bool:
        """True when the codec could not check every input's shape: no declared shape or an open inner dimension.
        Otherwise the request fit the signature, and a shape failure is the model's (or signature's) fault."""
        if self.signature.tabular:  # the packed width is checked against the columns
            return False
        return any(spec.shape is None or -1 in spec.shape[1:] for spec in self.signature.inputs)


# torch's wording for inputs of the wrong rank or size ("mat1 and mat2 shapes cannot be multiplied", "Expected 3D
# (unbatched) or 4D (batched) input", "input.size(-1) must be equal to input_size", "Sizes of tensors must match").
# Dtypes are not included: the codec admits only the declared datatype, so a dtype failure is the server's.
_SHAPE_WORDS = re.compile(r"shape|size|dimension|\bdims?\b|\b\d+D\b|must match", re.IGNORECASE)


def shape_complaint(error: RuntimeError) -> str | None:
    """torch's complaint (the last line: TorchScript puts its traceback first) if it is about input shapes."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    complaint = lines[-1].removeprefix("RuntimeError: ") if lines else ""
    if isinstance(error, torch.OutOfMemoryError) or "out of memory" in complaint.lower():
        return None
    return complaint if _SHAPE_WORDS.search(complaint) else None


def _writable(array: np.ndarray) -> np.ndarray:
    """torch.from_numpy needs writable memory; binary request data is a read-only view of the body."""
    return array if array.flags.writeable else array.copy()
