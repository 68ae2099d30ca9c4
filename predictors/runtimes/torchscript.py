"""TorchScript: `torch.jit.load` on CUDA when present (CPU otherwise), run under inference mode.

A TorchScript module declares its inputs' names (forward's arguments) but not their types or shapes: those come
from the MLflow signature, and where it has none the module itself checks them (see `torch_module`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from tickserve.predictors.runtimes.torch_module import TorchModulePredictor, limit_threads, select_device
from tickserve.predictors.signature import Signature, TensorSpec


class TorchScriptPredictor(TorchModulePredictor):
    PLATFORM = "pytorch_torchscript"
    NATIVE_TYPES = False
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
