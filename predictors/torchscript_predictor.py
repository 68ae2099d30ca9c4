"""TorchScript: `torch.jit.load` on CUDA when present (CPU otherwise), run under inference mode.

Inputs are passed positionally in signature order; a tuple/list result is named by the signature's outputs
(`predict`, `predict_1`, ... when it has none).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from .base import TickPredictor
from .batching import Arrays
from .signature import PACKED_FEATURES, Signature, TensorSpec


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
            result = self.module(*tensors)
        results = list(result) if isinstance(result, (tuple, list)) else [result]
        names = [spec.name for spec in self.output_specs()]
        names += [f"predict_{i}" for i in range(len(names), len(results))]
        return {name: tensor.detach().cpu().numpy() for name, tensor in zip(names, results, strict=False)}


def _writable(array: np.ndarray) -> np.ndarray:
    """torch.from_numpy needs writable memory; binary request data is a read-only view of the body."""
    return array if array.flags.writeable else array.copy()
